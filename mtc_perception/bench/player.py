"""The live benchmark's player, without rclpy: the ``benchmark_node``'s parameters, which topics the
perception nodes get, and everything the node does over time — wait for the nodes, play the
recording at its recorded pace (or watch ``ros2 bag play`` do it), feed the frames and the labels
to :class:`~mtc_perception.bench.live.LiveBench`, drain the outputs and write the report.

The node (``mtc_perception/nodes/benchmark_node.py``) only wires this to rclpy: a publisher's
``publish`` and subscription counts, subscriptions that call :meth:`BenchPlayer.output`,
:meth:`BenchPlayer.seen` and :meth:`BenchPlayer.diagnostics`, and a timer that asks
:meth:`BenchPlayer.external_done`. Time and sleeping are injectable (``now``, ``sleep``), so
pacing, timeouts and the drain are tested without waiting.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bags import DISTROS, BagMessage, BagReader, md5_of
from ..frame import decode
from ..host import host_info
from ..messages import GT_PREFIX, header_stamp, model_topics, restamp, stamp_to_ns, transport_of
from ..node_core.params import ParamError, ParamSpec, check_params
from .live import LiveBench
from .r2b import CpuSampler
from .r2b import key as r2b_key
from .recording import choose_topic, label_topics, label_value, recording_meta
from .replay import summary_text
from .report import ModelInfo

log = logging.getLogger(__name__)

#: ``player`` values: the benchmark node plays the bag, or ``ros2 bag play`` does
PLAYERS = ("internal", "external")
#: old names still accepted (with a warning) -> the current one
PLAYER_ALIASES = {"ros2bag": "external"}
#: every ``player`` value the node and ``benchmark.launch.py`` accept (the launch file's choices)
PLAYER_VALUES = PLAYERS + tuple(PLAYER_ALIASES)
#: ``nodes`` values -> the perception nodes (roles) that run, the reference first
NODE_ROLES = {"both": ("teacher", "student"), "teacher": ("teacher",), "student": ("student",)}
#: message definitions the bag can be read with (rosbags typestores)
DISTRO_CHOICES = tuple(DISTROS)

PLAYER_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("bag", "", "string", "rosbag2 recording (directory or .mcap/.db3) to play. Required."),
    ParamSpec(
        "topic",
        "",
        "string",
        "Camera topic in the bag (empty: /camera/image_raw, its /compressed twin, or the only image topic).",
    ),
    ParamSpec(
        "teacher_bundle", "", "string", "The teacher's bundle (for the report's params / MACs / classes). Required."
    ),
    ParamSpec("student_bundle", "", "string", "The student's bundle. Required."),
    ParamSpec("teacher_ns", "teacher", "string", "Namespace of the teacher's perception node (the reference)."),
    ParamSpec("student_ns", "student", "string", "Namespace of the student's perception node."),
    ParamSpec("out", "runs/bench/live", "string", "Report directory: report.json, report.md, frames.csv, plots."),
    ParamSpec(
        "player",
        "internal",
        "string",
        "internal: this node plays the bag (publishes the recorded bytes at the recorded pace x rate); "
        "external: `ros2 bag play` does, and this node watches the camera topic (the old name ros2bag "
        "is taken as external, with a warning).",
        choices=PLAYERS,
    ),
    ParamSpec(
        "rate",
        1.0,
        "double",
        "Playback speed factor of the internal player (1.0: the recorded pace).",
        range=(1e-3, 1e3),
    ),
    ParamSpec(
        "fixed_rate",
        0.0,
        "double",
        "0: play at the recorded pace x rate; > 0: publish the camera frames at exactly this many Hz, "
        "whatever their recorded times (ros2_benchmark's fixed-rate playback).",
        range=(0.0, 1e4),
    ),
    ParamSpec(
        "loops",
        1,
        "integer",
        "Play the camera frames this many times (internal player). Every repetition gets new header stamps "
        "(moved past the recording's span), so each frame sent is matched to its own answers.",
        range=(1, 100000),
    ),
    ParamSpec(
        "nodes",
        "both",
        "string",
        "Which perception nodes run and are measured: both (the teacher and the student side by side), "
        "teacher or student (one model alone on the machine).",
        choices=("both", "teacher", "student"),
    ),
    ParamSpec(
        "distro",
        "",
        "string",
        "Message definitions used to read the bag (humble or jazzy). Empty: the ROS_DISTRO environment "
        "variable of the running ROS 2 (humble where it is unset).",
        ("", *DISTRO_CHOICES),
    ),
    ParamSpec(
        "start_timeout",
        60.0,
        "double",
        "Seconds to wait for both perception nodes to subscribe before playing.",
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "drain",
        5.0,
        "double",
        "Seconds to wait for outstanding outputs after the last frame (and, with the external player, the "
        "idle time after which the bag is taken as finished).",
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "gt_prefix",
        GT_PREFIX,
        "string",
        "Label topics of the bag (PREFIX/detections, PREFIX/drivable_mask, PREFIX/lane_mask).",
    ),
)


@dataclass(frozen=True)
class PlayerParams:
    bag: str
    topic: str
    teacher_bundle: str
    student_bundle: str
    teacher_ns: str
    student_ns: str
    out: str
    player: str
    rate: float
    fixed_rate: float
    loops: int
    nodes: str
    distro: str
    start_timeout: float
    drain: float
    gt_prefix: str


def player_mode(value: str) -> str:
    """``internal`` or ``external``; the old launch value ``ros2bag`` is taken as ``external`` with a
    deprecation warning."""
    if value in PLAYER_ALIASES:
        log.warning("player %r is deprecated: use player:=%s", value, PLAYER_ALIASES[value])
        return PLAYER_ALIASES[value]
    return value


def distro_from_env(environ: Mapping[str, str]) -> str:
    """The ``distro`` of an empty ``distro`` parameter: ``ROS_DISTRO`` of the running ROS 2
    (``humble`` where it is unset, e.g. outside ROS). A distro without message definitions here is
    an error that names the fix, never a silent humble."""
    env = environ.get("ROS_DISTRO", "").strip().lower()
    if not env:
        return "humble"
    if env not in DISTRO_CHOICES:
        raise ParamError(
            f"ROS_DISTRO={env!r} has no message definitions here (rosbags typestores: {list(DISTRO_CHOICES)}); "
            "pass the closest one explicitly, e.g. distro:=jazzy"
        )
    return env


def validate_player_params(values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> PlayerParams:
    """The benchmark node's parameters checked against :data:`PLAYER_PARAMETERS`
    (:func:`~mtc_perception.node_core.params.check_params`); the recording and both bundles are required.
    An empty ``distro`` comes from ``environ`` (default: the process environment), see :func:`distro_from_env`."""
    values = dict(values)
    if isinstance(values.get("player"), str):
        values["player"] = player_mode(values["player"])
    out = check_params(PLAYER_PARAMETERS, values)
    if not out["distro"]:
        out["distro"] = distro_from_env(os.environ if environ is None else environ)
    for req in ("bag", "teacher_bundle", "student_bundle"):
        if not out[req]:
            raise ParamError(
                f"parameter {req!r} is empty: `ros2 launch mtc_perception benchmark.launch.py bag:=B "
                "teacher_bundle:=T student_bundle:=S`"
            )
    return PlayerParams(**out)


def node_inputs(topic: str, msgtype: str) -> tuple[str, str]:
    """(``image_topic``, ``input_transport``) that make a perception node subscribe to the
    recording's camera ``topic`` of type ``msgtype`` (image_transport naming: a compressed topic is
    ``<image_topic>/compressed``)."""
    transport = transport_of(msgtype)
    if transport == "raw":
        return topic, transport
    if not topic.endswith("/compressed"):
        raise ValueError(
            f"{topic} holds CompressedImage but does not end in /compressed, where the perception node "
            "listens with input_transport:=compressed; re-record with `mtc bag --transport compressed`"
        )
    return topic[: -len("/compressed")], transport


class BenchPlayer:
    """One live benchmark run. ``logger``: anything with ``info``/``warning``/``error`` (the node's
    rclpy logger; Python logging by default)."""

    def __init__(
        self,
        params: PlayerParams,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        logger: Any = None,
    ) -> None:
        from ..bundle import Bundle

        self.p = params
        self.now, self.sleep = now, sleep
        self.log = logger if logger is not None else log
        self.reader = BagReader(params.bag, params.distro)
        self.topic = choose_topic(self.reader, params.topic or None)
        info = self.reader.topics[self.topic]
        self.msgtype = info.msgtype
        self.gt, warnings = label_topics(self.reader, params.gt_prefix)
        models = [
            ModelInfo.from_bundle(getattr(params, f"{role}_ns"), Bundle.load(getattr(params, f"{role}_bundle")), "node")
            for role in NODE_ROLES[params.nodes]
        ]
        self.external = params.player == "external"
        if self.external and (params.loops != 1 or params.fixed_rate > 0):
            raise ParamError(
                "loops and fixed_rate pace the internal player; with player:=external `ros2 bag play` sets the "
                "pace (its --rate, --loop): leave loops:=1 fixed_rate:=0"
            )
        self.bench = LiveBench(
            models,
            total=int(info.count or 0) * params.loops,
            gt_parts=tuple(self.gt),
            meta={
                "tool": "benchmark_node (live, ROS 2)",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": host_info(),
                "bag": recording_meta(Path(params.bag).resolve(), self.reader, self.topic, self.gt, md5_of(params.bag)),
                "player": "ros2 bag play" if self.external else "benchmark_node (rosbags -> rclpy, recorded bytes)",
                "config": dataclasses.asdict(params),
            },
        )
        self.bench.builder.warnings.extend(warnings)
        self.lock = threading.Lock()  # the player thread, the subscriptions and the timer all feed the bench
        self.t0 = now()
        self.last_seen: float | None = None
        self.draining = False
        self.finished = threading.Event()
        self.report: dict[str, Any] | None = None
        self.cpu = CpuSampler()
        self.resolution = ""  # WxH of the first frame sent (r2b's DATA_RESOLUTION)

    # -- what the node wires ---------------------------------------------------------------------
    @property
    def output_topics(self) -> dict[tuple[str, str], str]:
        """(model, part) -> the topic a perception node publishes it on."""
        return {(m.name, part): t for m in self.bench.models for part, t in model_topics(m.name).items()}

    def describe(self) -> str:
        info = self.reader.topics[self.topic]
        return (
            f"benchmark: {self.topic} [{self.msgtype}] of {self.p.bag} ({info.count} frames) -> "
            f"/{self.p.teacher_ns} and /{self.p.student_ns}; labels: {sorted(self.gt) or 'none'}; "
            f"player {self.p.player}"
        )

    # -- frames out ------------------------------------------------------------------------------
    def decode(self, raw: bytes) -> tuple[int, Any]:
        """(stamp, BGR image or None) of a recorded camera message. The image (through the node's
        decode) only where the report draws it — the disagreement mosaic of a run with a candidate —
        and for the first frame (its resolution); otherwise only the stamp is read from the bytes,
        so the player's own work at 30 Hz stays small beside the nodes it measures."""
        if len(self.bench.models) < 2 and self.resolution:
            return header_stamp(raw), None
        msg = self.reader.ts.deserialize_cdr(raw, self.msgtype)
        image = decode(msg).image
        if not self.resolution and image is not None:
            self.resolution = f"{image.shape[1]}x{image.shape[0]}"
        return stamp_to_ns(msg.header.stamp), image if len(self.bench.models) > 1 else None

    def wait_for_nodes(
        self,
        subscribers: Callable[[], int],
        publishers: Callable[[str], int],
        ok: Callable[[], bool] = lambda: True,
        n_models: int | None = None,
    ) -> None:
        """Until both perception nodes subscribe to the camera topic and publish their outputs (or
        ``start_timeout``): the first frames' answers would be lost otherwise."""
        n_models = len(self.bench.models) if n_models is None else n_models
        end = self.now() + self.p.start_timeout
        while ok() and subscribers() < n_models and self.now() < end:
            self.sleep(0.1)
        if subscribers() < n_models:
            self.log.error(
                f"only {subscribers()} of {n_models} perception nodes subscribe to "
                f"{self.topic} after {self.p.start_timeout} s; playing anyway"
            )
        outputs = list(self.output_topics.values())
        while ok() and self.now() < end and any(publishers(t) == 0 for t in outputs):
            self.sleep(0.1)
        self.sleep(0.5)

    def play(self, publish: Callable[[bytes], None], ok: Callable[[], bool] = lambda: True) -> dict[str, Any] | None:
        """Publish every camera frame (the recorded CDR bytes; from the second loop on with their
        stamps moved, :func:`~mtc_perception.messages.restamp`) at the recorded pace x ``rate`` or at
        ``fixed_rate`` Hz, ``loops`` times, hand the labels to the report, then :meth:`drain`."""
        self.t0 = self.now()
        self.cpu.start()
        gt_by_topic = {t: part for part, t in self.gt.items()}
        due: float | None = None  # when the next frame goes out
        prev_log: int | None = None
        offset = 0  # ns added to every stamp of this loop
        span: tuple[int, int] | None = None  # (first, last) camera stamp of the recording
        per_loop = 0  # camera frames in one pass
        loop_gap: float | None = None  # the pause before the first frame of a repeated pass (s)
        for loop in range(self.p.loops):
            for m in self.reader.messages([self.topic, *gt_by_topic]):
                if not ok():
                    break
                if m.topic != self.topic:
                    self.label(gt_by_topic[m.topic], m, offset)
                    continue
                if due is None:
                    due = self.now()
                elif self.p.fixed_rate > 0:
                    due += 1.0 / self.p.fixed_rate
                else:  # the recorded gap; before a repeated pass, the recording's mean gap
                    gap = loop_gap if loop_gap is not None else (m.log_time_ns - (prev_log or m.log_time_ns)) / 1e9
                    due += max(gap, 0.0) / self.p.rate
                loop_gap = None
                prev_log = m.log_time_ns
                delay = due - self.now()
                if delay > 0:
                    self.sleep(delay)
                raw = bytes(m.raw)
                if offset:
                    raw, _ = restamp(raw, offset)
                stamp, img = self.decode(raw)  # stamp (and mosaic image) first: the answer can be back within ms
                if loop == 0:
                    span = (stamp, stamp) if span is None else (min(span[0], stamp), max(span[1], stamp))
                    per_loop += 1
                with self.lock:
                    self.bench.frame_sent(stamp, self.now(), img)
                publish(raw)
            if not ok() or span is None:
                break
            loop_gap = (span[1] - span[0]) / 1e9 / (per_loop - 1) if per_loop > 1 else 0.1
            offset = (loop + 1) * (span[1] - span[0] + 1_000_000_000)
        if self.reader.error:
            self.log.error(f"the recording stopped early: {self.reader.error}")
        return self.drain()

    def label(self, part: str, m: BagMessage, offset_ns: int = 0) -> None:
        try:
            msg = self.reader.ts.deserialize_cdr(bytes(m.raw), m.msgtype)
            stamp, value, _ = label_value(part, msg, self.bench.builder.class_names)
            stamp += offset_ns
        except Exception as e:  # noqa: BLE001 - a bad label is reported, not fatal
            self.bench.builder.add_label_error(part, f"{type(e).__name__}: {e}")
            return
        with self.lock:
            self.bench.ground_truth(stamp, part, value)

    # -- the external player ---------------------------------------------------------------------
    def seen(self, raw: bytes) -> None:
        """A camera frame as the nodes got it from ``ros2 bag play``."""
        t = self.now()
        stamp, img = self.decode(raw)
        with self.lock:
            if self.bench.sent == 0:
                self.t0 = t
            self.bench.frame_sent(stamp, t, img)
        self.last_seen = t

    def external_done(self) -> bool:
        """True once (then the caller runs :meth:`drain`): every frame of the recording was seen,
        or none for ``drain`` seconds."""
        if self.draining or self.last_seen is None:
            return False
        if self.bench.sent >= self.bench.total or self.now() - self.last_seen > self.p.drain:
            self.draining = True
            return True
        return False

    # -- outputs in ------------------------------------------------------------------------------
    def output(self, model: str, part: str, msg: Any) -> None:
        with self.lock:
            self.bench.output(model, part, stamp_to_ns(msg.header.stamp), msg, self.now())

    def diagnostics(self, statuses: Iterable[Any]) -> None:
        """``/diagnostics`` statuses: the perception nodes' own counters go into the report."""
        for st in statuses:
            for m in self.bench.models:
                if st.name.startswith(f"/{m.name}/"):
                    self.bench.node_diagnostics(m.name, {kv.key: kv.value for kv in st.values})

    # -- end -------------------------------------------------------------------------------------
    def drain(self) -> dict[str, Any] | None:
        """Wait up to ``drain`` seconds for outstanding outputs, then write the report."""
        end = self.now() + self.p.drain
        while self.now() < end:
            with self.lock:
                if self.bench.complete():
                    break
            self.sleep(0.05)
        self.sleep(0.5)  # a last /diagnostics
        rep = self._write()
        if rep is not None:
            self.log.info(f"report written to {self.p.out}:\n{summary_text(rep)}")
        self.finished.set()  # after the log line: the node ends when this is set
        return rep

    def r2b_meta(self) -> dict[str, Any]:
        """ros2_benchmark's ``BenchmarkMetadata`` of this run."""
        import platform

        u = platform.uname()
        bag = self.bench.builder.meta.get("bag", {})
        mode = f"fixed rate {self.p.fixed_rate:g} Hz" if self.p.fixed_rate > 0 else f"timeline x{self.p.rate:g}"
        meta = {
            "NAME": "mtc_perception live benchmark",
            "TEST_DATETIME": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "DEVICE_HOSTNAME": u.node,
            "DEVICE_ARCH": u.machine,
            "DEVICE_OS": f"{u.system} {u.release} {u.version}",
            "BENCHMARK_MODE": ("external player, " if self.external else "") + mode + f", {self.p.loops} loop(s)",
            "INPUT_DATA_PATH": str(Path(self.p.bag).resolve()),
            "INPUT_DATA_HASH": bag.get("md5"),
            "INPUT_DATA_SIZE": bag.get("size_bytes"),
            "DATA_RESOLUTION": self.resolution,
            "CONFIG": dataclasses.asdict(self.p),
        }
        return {f"{r2b_key('BenchmarkMetadata', k)}": v for k, v in meta.items()}

    def finish(self, reason: str = "") -> dict[str, Any] | None:
        """Write the report now (frames not yet answered count as skipped, ``reason`` says why);
        None when it was already written."""
        rep = self._write(reason)
        self.finished.set()
        return rep

    def _write(self, reason: str = "") -> dict[str, Any] | None:
        with self.lock:
            if self.report is not None:
                return None
            self.report = self.bench.finish(
                self.p.out,
                self.now() - self.t0,
                reason=reason,
                resource=self.cpu.stop(),
                r2b_meta=self.r2b_meta(),
            )
        return self.report
