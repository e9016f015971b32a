"""Offline replay benchmark (``mtc bench``): every camera frame of a rosbag2 recording through the
teacher and any number of students, speed and accuracy side by side, into the benchmark report
(:mod:`mtc_perception.bench.report`); each student is compared with the teacher.

Per frame: the message is read and deserialized (harness ``read``), converted to a BGR image once
(harness ``decode``; it is also each model's ``stage_ms.decode``, since a node pays it per model),
then the models take turns on it (teacher first, then the students in order), each through its
:class:`~mtc_perception.perceptor.Perceptor`; its latency is decode + the Perceptor's wall time. Decoding, inference and the output bag's messages are the
node's own functions (:mod:`mtc_perception.frame`, :func:`mtc_perception.messages.perception_messages`).

The run's steps are the methods of :class:`Replay`: open the recording and pick the topics
(:meth:`Replay.__init__` with :mod:`.recording`), load the models, the per-frame loop
(:meth:`Replay.run`: :meth:`Replay.frame` and :meth:`Replay.label`, scored by the
:class:`~mtc_perception.bench.report.ReportBuilder`), the output bag (:mod:`.output_bag`) and
the report (:meth:`Replay.write_report`). Label topics (``<gt_prefix>/detections``, ``drivable_mask``,
``lane_mask``) are paired with frames by header stamp for ground-truth metrics.

Bad recordings: a missing camera topic is a :class:`~mtc_perception.bags.TopicNotFound` listing
the topics there are; a damaged file is read up to its last good message, the report is written
and the error is in ``meta.error`` (exit code 2); a frame that does not decode is failed for every
model and the run goes on (every failed frame is named: ``frames.csv``'s ``<model>_status`` and
``<model>_error``, the report's count per kind of error with its first frames, the log's first
:data:`LOG_FAILURES`); a camera topic whose connections have different types (``Image`` and
``CompressedImage``) is decoded message by message by each one's own type.

Nothing measured is lost: ``--out`` is checked before anything runs (:func:`check_out`, exit code
2); SIGINT and SIGTERM (:class:`Signals`, installed for the run and restored after) stop the hash
or the replay and the report of what was measured is written, the frame in flight counted as
skipped with the reason (``meta.interrupted``, ``meta.signal``, ``meta.interrupted_during``; exit
code 130 for SIGINT, 143 for SIGTERM); a signal while the report is written is deferred until it is
complete; the output bag is closed (its metadata written) on every path. Frames never reached are
skipped, so ``processed + failed + skipped == total``. A signal before the models are loaded ends
the run with no report (nothing was measured yet), with the same exit codes.

Exit codes (:meth:`Replay.exit_code`), the project's convention (0 done, 2 bad input, 1 an
internal error): 2 for ``--out``, a damaged recording, no frame decodable, and a model that failed
every frame that decoded (a broken bundle is bad input; the report is written and the log names
the model and its first error); 1 the replay stopped on an unexpected error (the report of what
was measured is written, the traceback logged, ``meta.error``); 130 / 143 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bags import BagError, BagMessage, BagReader, md5_of
from ..frame import decode, infer
from ..host import host_info
from ..messages import GT_PREFIX, stamp_to_ns
from .names import check_names
from .output_bag import OUTPUT_BAG, OutputBag, prepare_output_bag
from .recording import choose_topic, label_topics, label_value, recording_meta
from .report import ModelInfo, ModelOutput, ReportBuilder, write_report
from .report.files import rewrite_report

log = logging.getLogger(__name__)

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 2, 130, 143
EXIT_INTERNAL = 1  # the replay stopped on an unexpected error (the report is written)
#: a model failed every frame that decoded: a broken bundle is bad input (the report is written)
EXIT_MODEL_FAILED = EXIT_BAD_INPUT
#: failed frames named one by one in the log; the rest are counted at the end (all are in frames.csv)
LOG_FAILURES = 10

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_MODEL_FAILED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "OUTPUT_BAG",
    "BenchConfig",
    "BenchResult",
    "Interrupted",
    "Replay",
    "Signals",
    "check_out",
    "exit_code_of",
    "choose_topic",
    "run_bench",
    "summary_text",
]


@dataclass(frozen=True)
class BenchConfig:
    """One replay run. ``topic`` None picks the camera topic (see :func:`choose_topic`).

    The models (:attr:`models`): the teacher (``teacher_name``, the reference), then ``student``
    (named ``student``: the one-student form) if given, then ``students`` ((name, bundle) pairs).
    Names are checked here (:func:`~mtc_perception.bench.names.check_names`: tokens, none twice);
    at least one student."""

    bag: Path
    teacher: Path
    student: Path | None
    out: Path
    backend: str = "auto"
    topic: str | None = None
    threads: int | None = None
    max_frames: int | None = None
    output_bag: bool = False
    conf: float = 0.25
    iou: float = 0.45
    gt_prefix: str = GT_PREFIX
    distro: str = "humble"
    plots: bool = True
    mosaic: int = 6
    warmup: int = 3
    md5: bool = True
    progress: bool = True
    students: tuple[tuple[str, Path], ...] = ()
    teacher_name: str = "teacher"

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise BagError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.threads is not None and self.threads < 1:
            raise BagError(f"--threads must be >= 1, got {self.threads}")
        if self.student is None and not self.students:
            raise ValueError("no student: give at least one --student [NAME=]BUNDLE_DIR to compare with the teacher")
        check_names(n for n, _ in self._pairs())

    def _pairs(self) -> list[tuple[str, Path]]:
        pairs = [(self.teacher_name, Path(self.teacher))]
        if self.student is not None:
            pairs.append(("student", Path(self.student)))
        return pairs + [(n, Path(p)) for n, p in self.students]

    @property
    def models(self) -> dict[str, Path]:
        """Name -> bundle directory: the teacher first, then the students in order."""
        return dict(self._pairs())

    def to_dict(self) -> dict[str, Any]:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        d["students"] = {n: str(p) for n, p in self.students}
        d["models"] = {n: str(p) for n, p in self.models.items()}
        return d


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a run (``signum``); a KeyboardInterrupt, so it stops what Ctrl-C stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code_of(signum: int | None) -> int:
    """130 for SIGINT (or a plain KeyboardInterrupt), 143 for SIGTERM."""
    return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


class Signals:
    """SIGINT and SIGTERM for one run (a context manager: installed on entry, the previous handlers
    restored on exit; only in the main thread, elsewhere a no-op). The first signal is kept in
    ``signum``. It raises :class:`Interrupted` where it lands, except inside :meth:`protect` (raised
    when the protected block ends) and once :attr:`deferred` is set (the report is being written:
    recorded, never raised)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False
        self._depth = 0
        self._pending = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        if self.deferred:
            log.warning("%s: finishing the report first", signal.Signals(signum).name)
            return
        if self._depth:
            self._pending = True
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def protect(self) -> Iterator[None]:
        """A block a signal must not cut in two (scoring a frame, writing the output bag)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending and not self.deferred:
            self._pending = False
            assert self.signum is not None  # set with _pending
            raise Interrupted(self.signum)


def check_out(out: Path) -> None:
    """``--out`` is (or can be made) a writable directory, before anything is measured; else a
    :class:`BagError` naming it."""
    if out.exists() and not out.is_dir():
        raise BagError(f"--out {out} is a file, not a directory: choose a directory for the report (or move the file)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mtc-bench-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BagError(
            f"--out {out} is not a writable directory ({e.strerror or e}): choose another --out or fix its permissions"
        ) from None


@dataclass
class BenchResult:
    report: dict[str, Any]
    paths: dict[str, Path]
    exit_code: int


class _Progress:
    """tqdm when it is installed, else a log line every few seconds."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar = None
        self.total, self.enabled, self.n = total, enabled, 0
        self._last = time.monotonic()
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="frame", desc="bench", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, text: str) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.enabled and time.monotonic() - self._last > 5.0:
            self._last = time.monotonic()
            log.info("frame %d/%s %s", self.n, self.total if self.total is not None else "?", text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Replay:
    """One replay run, step by step. ``harness`` collects the harness' own time (ms) by kind."""

    def __init__(
        self,
        cfg: BenchConfig,
        reader: BagReader,
        harness: dict[str, float],
        started: float,
        signals: Signals | None = None,
    ) -> None:
        self.cfg, self.reader, self.harness = cfg, reader, harness
        self.signals = signals or Signals()
        # the recording: camera topic, label topics, output bag
        self.topic = choose_topic(reader, cfg.topic)
        self.info = reader.topics[self.topic]
        self.gt, warnings = label_topics(reader, cfg.gt_prefix)
        self.part_of = {v: k for k, v in self.gt.items()}
        self.output_bag = prepare_output_bag(cfg.out) if cfg.output_bag else None
        # the models
        self.perceptors, self.load_s = self._load_models()
        teacher = cfg.teacher_name
        self.class_names = tuple(self.perceptors[teacher].class_names)
        for n, p in self.perceptors.items():
            if tuple(p.class_names) != self.class_names:
                warnings.append(
                    f"{teacher} classes {list(self.class_names)} differ from {n} classes "
                    f"{list(p.class_names)}; detection agreement compares class ids"
                )
        self.md5: str | None = None
        # the scoring
        self.builder = ReportBuilder(
            [ModelInfo.from_bundle(n, p.bundle, p.backend) for n, p in self.perceptors.items()],
            gt_parts=tuple(self.gt),
            mosaic=cfg.mosaic,
            started=started,
        )
        self.builder.harness_ms = harness
        self.builder.warnings.extend(warnings)
        self.counts: dict[str, Any] = {
            "in_bag": self.info.count,
            "read": 0,
            "decode_failed": 0,
            "limit": cfg.max_frames,
        }
        self.interrupted = self.stopped_at_limit = False
        self.interrupted_during: str | None = None
        self.in_flight: tuple[int, int] | None = None  # (index, stamp) of the frame being processed
        self.crashed: str | None = None  # what stopped the replay, when not the recording or a signal
        self.failures = 0  # failed (frame, model) pairs, for the rate-limited log
        self.other_type_frames = 0  # frames of another message type than the topic's, not in the output bag
        self.last_good: tuple[int, int] | None = None
        self.unknown_classes = 0

    def _interrupt(self, during: str) -> None:
        self.signals.deferred = True  # from here on the run only reports
        self.interrupted, self.interrupted_during = True, during
        how = signal.Signals(self.signals.signum).name if self.signals.signum else "Ctrl-C"
        log.warning(
            "%s during %s after %d frames; writing the report for what was measured",
            how,
            during,
            self.counts["read"],
        )

    def hash(self) -> None:
        """The md5 of the recording for ``meta.bag`` (unless ``--no-md5``); a signal stops it and the run."""
        if not self.cfg.md5:
            return
        t = time.perf_counter()
        try:
            self.md5 = md5_of(self.cfg.bag)
        except KeyboardInterrupt:
            self._interrupt("hashing")
        finally:
            self.harness["hash"] = (time.perf_counter() - t) * 1e3

    def _load_models(self) -> tuple[dict[str, Any], float]:
        from ..perceptor import Perceptor

        cfg = self.cfg
        t_load = time.perf_counter()
        opts = {"threads": cfg.threads} if cfg.threads else {}
        perceptors = {
            name: Perceptor(path, backend=cfg.backend, conf=cfg.conf, iou=cfg.iou, **opts)
            for name, path in cfg.models.items()
        }
        for p in perceptors.values():
            if cfg.warmup > 0:
                p.warmup(cfg.warmup)
        return perceptors, time.perf_counter() - t_load

    # -- the per-frame loop ----------------------------------------------------------------------
    def run(self, on_frame: Callable[[int], None] | None = None) -> None:
        """Every message of the camera and label topics, in order, until the end, ``max_frames``
        or Ctrl-C (a KeyboardInterrupt, also from ``on_frame``)."""
        cfg, expected, out = self.cfg, self.info.count, None
        progress = _Progress(
            min(expected, cfg.max_frames or expected) if expected is not None else cfg.max_frames, cfg.progress
        )
        try:
            if self.output_bag is not None:
                with self.signals.protect():
                    out = OutputBag(
                        self.output_bag, self.reader.storage, cfg.distro, self.topic, self.info.msgtype, self.perceptors
                    )
            it = iter(self.reader.messages([self.topic, *self.gt.values()]))
            while True:
                t0 = time.perf_counter()
                m = next(it, None)
                if m is None:
                    self.harness["read"] += (time.perf_counter() - t0) * 1e3
                    break
                if m.topic != self.topic:
                    self.label(m, t0)
                    continue
                if cfg.max_frames is not None and self.counts["read"] >= cfg.max_frames:
                    self.stopped_at_limit = True
                    break
                self.in_flight = (self.counts["read"], m.log_time_ns)  # from here on the frame is counted
                self.counts["read"] += 1
                progress.update(self.frame(m, t0, out))
                if on_frame is not None:
                    on_frame(self.counts["read"])
        except KeyboardInterrupt:
            self._interrupt("the replay")
            how = signal.Signals(self.signals.signum).name if self.signals.signum else "Ctrl-C"
            self._skip_in_flight(f"interrupted ({how}) while this frame was processed")
        except Exception as e:  # a bug or an unexpected library error: the report of what was measured first
            self.signals.deferred = True
            self.crashed = f"{type(e).__name__}: {e}"
            log.exception("the replay stopped after %d frames: %s", self.counts["read"], self.crashed)
            self._skip_in_flight(f"the replay stopped on this frame: {self.crashed}")
        finally:
            self.signals.deferred = True  # nothing may cut the close short; the caller writes the report next
            progress.close()
            if out is not None:  # on every path: a bag without metadata is unreadable
                t3 = time.perf_counter()
                out.close()
                self.harness["output_bag"] += (time.perf_counter() - t3) * 1e3

    def _skip_in_flight(self, reason: str) -> None:
        """The frame read but not scored when the run stopped: skipped for every model, with ``reason``."""
        if self.in_flight is None:
            return
        index, stamp = self.in_flight
        self.builder.add_frame(stamp, {n: ModelOutput(reason=reason) for n in self.perceptors}, index=index)
        self.builder.warnings.append(f"frame {index} was in flight when the run stopped: skipped ({reason})")
        self.in_flight = None

    def label(self, m: BagMessage, t0: float) -> None:
        """A label message -> the builder's ground truth (a bad one is counted, not fatal)."""
        part = self.part_of[m.topic]
        try:
            msg = self.reader.deserialize(m)
            t1 = time.perf_counter()
            self.harness["read"] += (t1 - t0) * 1e3
            stamp, value, unknown = label_value(part, msg, self.class_names)
            self.unknown_classes += unknown
            self.harness["decode"] += (time.perf_counter() - t1) * 1e3
        except Exception as e:  # noqa: BLE001 - a bad label must not stop the run
            with self.signals.protect():
                self.builder.add_label_error(part, f"{m.topic} at log time {m.log_time_ns}: {type(e).__name__}: {e}")
            return
        with self.signals.protect():
            self.builder.add_ground_truth(stamp, part, value)

    def frame(self, m: BagMessage, t0: float, out: OutputBag | None) -> str:
        """A camera message through every model in turn (decoded once), scored and written to the
        output bag; returns the progress text."""
        index = self.counts["read"] - 1
        stamp = m.log_time_ns
        try:
            msg = self.reader.deserialize(m)
            stamp = stamp_to_ns(msg.header.stamp)
        except Exception as e:  # noqa: BLE001 - a CDR error: this frame fails, the run goes on
            return self._failed_frame(stamp, index, f"undecodable message: {type(e).__name__}: {e}")
        self.harness["read"] += (time.perf_counter() - t0) * 1e3
        decoded = decode(msg)
        self.harness["decode"] += decoded.decode_ms
        if decoded.image is None:
            return self._failed_frame(stamp, index, decoded.error)
        outputs: dict[str, ModelOutput] = {}
        for n, p in self.perceptors.items():
            r = infer(p, decoded.image)
            if r.error:
                outputs[n] = ModelOutput(error=r.error)
                self._log_failure(index, stamp, f"{n}: {r.error}")
                continue
            timings = {**r.perception.timings, "decode": decoded.decode_ms}
            outputs[n] = ModelOutput(r.perception, r.latency_ms + decoded.decode_ms, timings)
        with self.signals.protect():
            self.builder.add_frame(stamp, outputs, image=decoded.image, index=index)
            self.in_flight = None
            self.last_good = (index, stamp)
            if out is not None:
                t3 = time.perf_counter()
                raw = m.raw if m.msgtype == self.info.msgtype else None
                self.other_type_frames += raw is None
                out.write(m.log_time_ns, raw, msg.header, outputs)
                self.harness["output_bag"] += (time.perf_counter() - t3) * 1e3
        return " ".join(f"{n} {o.latency_ms:.0f}ms" for n, o in outputs.items() if o.latency_ms is not None)

    def _failed_frame(self, stamp: int, index: int, err: str) -> str:
        with self.signals.protect():
            self.counts["decode_failed"] += 1
            self._log_failure(index, stamp, err)
            self.builder.add_frame(stamp, {n: ModelOutput(error=err) for n in self.perceptors}, index=index)
            self.in_flight = None
        return "decode failed"

    def _log_failure(self, index: int, stamp: int, err: str) -> None:
        """The first :data:`LOG_FAILURES` failures one by one; the rest are counted in :meth:`write_report`."""
        self.failures += 1
        if self.failures <= LOG_FAILURES:
            log.warning("frame %d (stamp %d): %s; counted as failed", index, stamp, err)
            if self.failures == LOG_FAILURES:
                log.warning("further failed frames are not logged one by one; all are in frames.csv")

    # -- the report ------------------------------------------------------------------------------
    def error(self) -> str | None:
        """What damaged the recording (or stopped the replay) and how far it was read, or None."""
        if self.crashed:
            return f"the replay stopped: {self.crashed} — {self.builder.given} frames were reported"
        if not self.reader.error:
            return None
        where = (
            f"frames up to #{self.last_good[0]} (stamp {self.last_good[1]}) were read"
            if self.last_good
            else "no frame could be read"
        )
        return f"{self.reader.error} — {where}"

    def write_report(self) -> tuple[dict[str, Any], dict[str, Path]]:
        """Frames never reached, warnings and ``meta`` into the builder; the report's files."""
        cfg, b = self.cfg, self.builder
        total = max(self.info.count or 0, b.given)
        not_reached = total - b.given
        signame = signal.Signals(self.signals.signum).name if self.signals.signum else None
        if self.failures > LOG_FAILURES:
            log.warning(
                "%d more failed frames not logged; every frame's status and error: %s",
                self.failures - LOG_FAILURES,
                cfg.out / "frames.csv",
            )
        if self.other_type_frames:
            b.warnings.append(
                f"{self.other_type_frames} frames of {self.topic} are not {self.info.msgtype} (the topic mixes "
                "message types); they were decoded by their own type, and the output bag has their outputs only"
            )
        if not_reached:
            reason = (
                f"interrupted ({signame or 'Ctrl-C'}) during {self.interrupted_during}"
                if self.interrupted
                else f"--max-frames {cfg.max_frames}"
                if self.stopped_at_limit
                else f"the replay stopped: {self.crashed}"
                if self.crashed
                else "the recording is damaged"
                if self.reader.error
                else "not read"
            )
            b.add_not_reached(not_reached, reason)
        if self.unknown_classes:
            b.warnings.append(
                f"{self.unknown_classes} labelled boxes have a class name the models do not know "
                f"({list(self.class_names)}); they are not scored"
            )
        b.meta.update(
            {
                "tool": "mtc bench (offline replay)",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": host_info(),
                "bag": recording_meta(cfg.bag, self.reader, self.topic, self.gt, self.md5),
                "frames": self.counts,
                "config": cfg.to_dict(),
                "interrupted": self.interrupted,
                "signal": signame,
                "interrupted_during": self.interrupted_during,
                "error": self.error(),
                "load_s": self.load_s,
            }
        )
        self.signals.deferred = True  # a signal from here on is recorded; the report is finished first
        paths = write_report(b, cfg.out, plots=cfg.plots)
        if self.output_bag is not None:
            paths["output_bag"] = self.output_bag
        rep = b.last_report
        if rep is None:  # written just now
            raise RuntimeError("the report was not written")
        if self.signals.signum is not None and not self.interrupted:  # arrived while the report was written
            self.interrupted, self.interrupted_during = True, "the report"
            name = signal.Signals(self.signals.signum).name
            rep["meta"].update({"interrupted": True, "signal": name, "interrupted_during": "the report"})
            rep["meta"]["warnings"].append(f"{name} while the report was written: deferred until it was complete")
            rewrite_report(b, cfg.out)
        return rep, paths

    def exit_code(self, rep: dict[str, Any], paths: dict[str, Path]) -> int:
        """130 / 143 interrupted (SIGINT / SIGTERM); 1 the replay stopped on an unexpected error; 2 a
        damaged recording, no frame decodable or a model that failed every frame that decoded; 0
        otherwise."""
        processed = sum(m["frames"]["processed"] for m in rep["models"].values())
        if self.interrupted or self.signals.signum is not None:
            return exit_code_of(self.signals.signum)
        error = self.error()
        if self.crashed:
            log.error("%s; the report covers what was measured: %s", error, paths["report_json"])
            return EXIT_INTERNAL
        if error:
            log.error("recording damaged: %s; the report covers what was read: %s", error, paths["report_json"])
            return EXIT_BAD_INPUT
        if self.counts["read"] and not processed:
            log.error(
                "no frame of %s could be processed (%d failed to decode); see %s",
                self.topic,
                self.counts["decode_failed"],
                paths["report_md"],
            )
            return EXIT_BAD_INPUT
        decoded = self.counts["read"] - self.counts["decode_failed"]
        broken = [n for n, m in rep["models"].items() if decoded and not m["frames"]["processed"]]
        for n in broken:
            first = rep["models"][n]["errors"][0]["first"] if rep["models"][n]["errors"] else "no output"
            log.error(
                "%s failed every frame (%d decoded); first error: %s; see %s", n, decoded, first, paths["report_md"]
            )
        return EXIT_MODEL_FAILED if broken else EXIT_OK


def run_bench(cfg: BenchConfig, on_frame: Callable[[int], None] | None = None) -> BenchResult:
    """Run the replay benchmark and write the report into ``cfg.out``. ``on_frame(n)`` is called
    after the n-th camera frame (progress hooks; a KeyboardInterrupt raised there stops the run
    as Ctrl-C does)."""
    started = time.perf_counter()
    harness = {"read": 0.0, "decode": 0.0, "hash": 0.0, "output_bag": 0.0}
    check_out(cfg.out)
    with Signals() as signals:
        t = time.perf_counter()
        reader = BagReader(cfg.bag, cfg.distro)
        harness["read"] += (time.perf_counter() - t) * 1e3
        try:
            replay = Replay(cfg, reader, harness, started, signals)
            try:
                replay.hash()
                if not replay.interrupted:
                    replay.run(on_frame)
            except KeyboardInterrupt:  # between the steps
                replay._interrupt("the replay")
            rep, paths = replay.write_report()
        finally:
            signals.deferred = True
            reader.close()
        return BenchResult(rep, paths, replay.exit_code(rep, paths))


def summary_text(rep: dict[str, Any]) -> str:
    """A few lines for the terminal: speed, agreement and the frame accounting."""

    def g(v: Any) -> str:
        return f"{v:.3f}" if v is not None else "–"

    lines = []
    width = max(8, *(len(n) for n in rep["models"]))
    for n, m in rep["models"].items():
        lat, f = m["latency_ms"], m["frames"]
        mean = f"{lat['mean']:.1f}" if lat["mean"] is not None else "–"
        p99 = f"{lat['p99']:.1f}" if lat["p99"] is not None else "–"
        fps = f"{m['throughput_fps']:.1f}" if m["throughput_fps"] else "–"
        lines.append(
            f"{n:>{width}} ({m.get('precision') or 'fp32'}): latency mean {mean} ms, p99 {p99} ms, {fps} fps; "
            f"frames {f['processed']} processed, {f['failed']} failed, {f['skipped']} skipped of {f['total']}"
        )
    agreements = rep.get("agreements") or (
        {rep["agreement"]["model"]: rep["agreement"]} if rep.get("agreement") else {}
    )
    for a in agreements.values():
        lines.append(
            f"agreement ({a['model']} vs {a['reference']}, {a['frames']} frames): mAP50 {g(a['detection']['map50'])}, "
            f"recall {g(a['detection']['recall'])}, drivable mIoU {g(a['drivable']['miou'])}, lane IoU {g(a['lane']['iou'])}"
        )
    s = rep["meta"].get("harness_share", {})
    if s.get("read_decode_report") is not None:
        lines.append(
            f"harness: read + decode + report {100 * s['read_decode_report']:.1f} %, md5 of the recording "
            f"{100 * (s.get('hash') or 0):.1f} %, everything {100 * s['all_harness']:.1f} % of "
            f"{rep['meta']['harness_ms']['wall'] / 1e3:.1f} s"
        )
    return "\n".join(lines)
