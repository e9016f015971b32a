"""Issue 17, `mtc bench` under hostile conditions: nothing measured is lost (``--out`` checked first,
report before plots, SIGINT/SIGTERM at every phase with real signals, the output bag closed), every
bad frame named, extreme frame shapes within a fixed pixel budget, a model failing every frame."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (ROS 2 message definitions, CDR, rosbag2 files): a required dependency, see import_guards.REQUIRED",
)
pytest.importorskip(
    "onnxruntime", reason="needs onnxruntime (runs the tiny bundle): a required dependency, see import_guards.REQUIRED"
)

from bag_helpers import check_accounting
from bag_helpers import report_json as _json

from mtc_perception.bags import (
    DEFAULT_START_NS,
    RecordingWriter,
    SourceFrame,
    WriteConfig,
    camera_message,
    header,
    typestore,
    write_bag,
)
from mtc_perception.bench import plots as P
from mtc_perception.bench import replay as R
from mtc_perception.bench.report import files as F
from mtc_perception.cli import main as mtc

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "data" / "tiny_bundle"


def _bag(path, n=6, shape=(48, 64), storage="mcap"):
    frames = [np.full((*shape, 3), 20 * i, np.uint8) for i in range(n)]
    write_bag(path, [SourceFrame(str(i), f) for i, f in enumerate(frames)], WriteConfig(storage=storage))
    return path


def _args(bag, out, *extra):
    return ["bench", "--bag", str(bag), "--teacher", str(TINY), "--student", str(TINY), "--out", str(out)] + [
        "--no-progress",
        "--warmup",
        "0",
        *extra,
    ]


def _rows(out):
    with open(Path(out) / "frames.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def bag(tmp_path):
    return _bag(tmp_path / "bag")


# --- --out is checked before anything runs -------------------------------------------------------


def _no_replay(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the recording was opened although --out is unusable")

    monkeypatch.setattr(R, "BagReader", boom)


def test_out_that_is_a_file_exits_2_before_replaying(tmp_path, bag, monkeypatch, logs):
    _no_replay(monkeypatch)
    f = tmp_path / "taken"
    f.write_text("x")
    assert mtc(_args(bag, f)) == 2
    assert f"--out {f} is a file" in logs.text and f.read_text() == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_out_that_is_not_writable_exits_2_before_replaying(tmp_path, bag, monkeypatch, logs):
    _no_replay(monkeypatch)
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        assert mtc(_args(bag, d / "rep")) == 2
    finally:
        d.chmod(0o700)
    assert f"--out {d / 'rep'} is not a writable directory" in logs.text


def test_out_below_a_file_exits_2_before_replaying(tmp_path, bag, monkeypatch, logs):
    _no_replay(monkeypatch)
    f = tmp_path / "taken"
    f.write_text("x")
    assert mtc(_args(bag, f / "rep")) == 2
    assert f"--out {f / 'rep'} is not a writable directory" in logs.text


# --- report first, plots after; a plot failure is named, never fatal, never linked --------------


def test_report_is_written_before_the_plots_and_a_failing_plot_is_named(tmp_path, bag, monkeypatch):
    out = tmp_path / "rep"
    seen = {}

    def broken_cdf(path, latencies):
        seen["report_before_plots"] = (out / "report.json").is_file() and (out / "frames.csv").is_file()
        raise MemoryError("no room for a plot")

    monkeypatch.setattr(P, "latency_cdf", broken_cdf)
    monkeypatch.setattr(P.cv2 if hasattr(P, "cv2") else __import__("cv2"), "imencode", lambda *a, **k: (False, None))
    assert mtc(_args(bag, out)) == 0
    assert seen == {"report_before_plots": True}
    rep = _json(out)
    plots = rep["meta"]["plots"]
    assert plots["latency_cdf"] == {"error": "MemoryError: no room for a plot"}
    assert "could not encode" in plots["mosaic"]["error"] and not (out / "disagreement_mosaic.jpg").exists()
    md = (out / "report.md").read_text()
    assert "](latency_cdf.png)" not in md and "](disagreement_mosaic.jpg)" not in md  # named, not linked
    assert "latency_cdf: not written (MemoryError: no room for a plot)" in md
    if "agreement" in plots and isinstance(plots["agreement"], str):  # matplotlib installed
        assert "![agreement over time](agreement.png)" in md and (out / "agreement.png").is_file()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temp file


# --- SIGINT / SIGTERM at every phase (real signals, delivered to this process) ------------------


def _kill(sig):
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs at the next bytecode anyway


def _handlers():
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_signal_while_hashing_writes_the_report_all_skipped(tmp_path, bag, monkeypatch):
    before = _handlers()
    real = R.md5_of
    monkeypatch.setattr(R, "md5_of", lambda p: (_kill(signal.SIGTERM), real(p))[1])
    out = tmp_path / "rep"
    assert mtc(_args(bag, out)) == 143
    assert _handlers() == before  # restored after the run
    rep = _json(out)
    check_accounting(rep, 6)
    meta = rep["meta"]
    assert meta["interrupted"] is True and meta["signal"] == "SIGTERM" and meta["interrupted_during"] == "hashing"
    assert meta["bag"]["md5"] is None
    assert rep["models"]["teacher"]["frames"] == {"total": 6, "processed": 0, "failed": 0, "skipped": 6}


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_a_frame_counts_the_frame_in_flight(tmp_path, bag, monkeypatch, sig, code):
    calls = []
    real = R.infer

    def infer(p, image):
        calls.append(1)
        if len(calls) == 5:  # frame 2, the first model
            _kill(sig)
        return real(p, image)

    monkeypatch.setattr(R, "infer", infer)
    out = tmp_path / "rep"
    assert mtc(_args(bag, out, "--output-bag")) == code
    rep = _json(out)
    check_accounting(rep, 6)
    for m in rep["models"].values():
        assert m["frames"] == {"total": 6, "processed": 2, "failed": 0, "skipped": 4}
    assert rep["meta"]["frames"]["given"] == 3 and rep["meta"]["interrupted_during"] == "the replay"
    rows = _rows(out)
    assert [r["index"] for r in rows] == ["0", "1", "2"]
    assert rows[2]["teacher_status"] == "skipped" and "while this frame was processed" in rows[2]["teacher_error"]
    assert signal.Signals(sig).name in rows[2]["student_error"]
    # the output bag was closed: metadata written, readable, the two scored frames in it
    from rosbags.highlevel import AnyReader

    assert (out / "replay_bag" / "metadata.yaml").is_file()
    with AnyReader([out / "replay_bag"], default_typestore=typestore()) as r:
        counts = {c.topic: c.msgcount for c in r.connections}
    assert counts["/camera/image_raw"] == 2 and counts["/student/detections"] == 2


def test_signal_from_the_per_frame_callback(tmp_path, bag):
    def on_frame(n):
        if n == 4:
            _kill(signal.SIGTERM)

    res = R.run_bench(R.BenchConfig(bag, TINY, TINY, tmp_path / "rep", plots=False, progress=False), on_frame=on_frame)
    assert res.exit_code == 143
    rep = _json(tmp_path / "rep")
    check_accounting(rep, 6)
    assert rep["models"]["teacher"]["frames"] == {"total": 6, "processed": 4, "failed": 0, "skipped": 2}


def test_signal_while_the_report_is_written_is_deferred(tmp_path, bag, monkeypatch):
    real = F.frames_csv

    def csv_and_ctrl_c(b):
        _kill(signal.SIGINT)
        return real(b)

    monkeypatch.setattr(F, "frames_csv", csv_and_ctrl_c)
    out = tmp_path / "rep"
    assert mtc(_args(bag, out)) == 130
    rep = _json(out)
    check_accounting(rep, 6)
    assert rep["models"]["student"]["frames"]["processed"] == 6  # everything was measured
    assert rep["meta"]["interrupted_during"] == "the report" and rep["meta"]["signal"] == "SIGINT"
    assert len(_rows(out)) == 6 and "Interrupted (SIGINT)" in (out / "report.md").read_text()


def test_signal_while_the_models_load_exits_without_a_report(tmp_path, bag, monkeypatch, logs):
    before = _handlers()
    real = R.Replay._load_models

    def load(self):
        _kill(signal.SIGTERM)
        return real(self)

    monkeypatch.setattr(R.Replay, "_load_models", load)
    out = tmp_path / "rep"
    assert mtc(_args(bag, out)) == 143
    assert not (out / "report.json").exists() and "interrupted before anything was measured" in logs.text
    assert _handlers() == before


def test_an_unexpected_error_mid_replay_still_writes_the_report(tmp_path, bag, monkeypatch, logs):
    real, calls = R.decode, []

    def decode(msg):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("a bug in the harness")
        return real(msg)

    monkeypatch.setattr(R, "decode", decode)
    out = tmp_path / "rep"
    assert mtc(_args(bag, out, "--output-bag")) == R.EXIT_INTERNAL == 1
    rep = _json(out)
    check_accounting(rep, 6)
    assert rep["models"]["teacher"]["frames"] == {"total": 6, "processed": 2, "failed": 0, "skipped": 4}
    assert "RuntimeError: a bug in the harness" in rep["meta"]["error"]
    assert "a bug in the harness" in _rows(out)[2]["teacher_error"]
    assert "the replay stopped after 3 frames: RuntimeError: a bug in the harness" in logs.text
    assert (out / "replay_bag" / "metadata.yaml").is_file()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from mtc_perception.bench import replay as R
    phase, args = sys.argv[1], sys.argv[2:]
    real_md5, real_infer, n = R.md5_of, R.infer, [0]
    def slow(what):
        print(what, flush=True)
        time.sleep(60)
    if phase == "hashing":
        R.md5_of = lambda p: (slow("HASHING"), real_md5(p))[1]
    else:
        def infer(p, image):
            n[0] += 1
            if n[0] == 3:
                slow("FRAME")
            return real_infer(p, image)
        R.infer = infer
    from mtc_perception.cli import main
    sys.exit(main(args))
    """
)


@pytest.mark.parametrize("phase, sig, code", [("hashing", signal.SIGINT, 130), ("replay", signal.SIGTERM, 143)])
def test_a_subprocess_signalled_from_outside(tmp_path, bag, phase, sig, code):
    out = tmp_path / "rep"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = subprocess.Popen(
        [sys.executable, "-c", _CHILD, phase, *_args(bag, out, "--output-bag")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = p.stdout.readline().strip()
        assert line in ("HASHING", "FRAME"), p.stderr.read()
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == code, err
    rep = _json(out)
    check_accounting(rep, 6)
    assert rep["meta"]["signal"] == signal.Signals(sig).name
    assert (out / "replay_bag" / "metadata.yaml").is_file() or phase == "hashing"
    if phase == "replay":  # frame 1 (the second) was in flight: skipped, frame 0 processed
        assert rep["models"]["teacher"]["frames"] == {"total": 6, "processed": 1, "failed": 0, "skipped": 5}
        assert _rows(out)[1]["teacher_status"] == "skipped"
    assert "Traceback" not in err


# --- fixed pixel budgets ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 10000), (10000, 2)])
def test_extreme_frames_give_a_bounded_mosaic_and_a_report(tmp_path, shape):
    bag = _bag(tmp_path / "bag", n=3, shape=shape)
    out = tmp_path / "rep"
    assert mtc(_args(bag, out)) == 0
    rep = _json(out)
    check_accounting(rep, 3)
    assert rep["models"]["teacher"]["frames"]["processed"] == 3
    assert rep["meta"]["plots"]["mosaic"] == "disagreement_mosaic.jpg"
    import cv2

    m = cv2.imread(str(out / "disagreement_mosaic.jpg"))
    assert m.shape == (3 * (24 + P.TILE[1]), 2 * P.TILE[0] + 4, 3)


@pytest.mark.parametrize("shape", [(2, 10000), (10000, 2), (1, 1)])
def test_mosaic_memory_is_bounded_whatever_the_frame_shape(shape):
    from mtc_perception.perceptor import Perception

    h, w = shape
    img = np.full((h, w, 3), 90, np.uint8)
    p = Perception(
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.float32),
        np.zeros(0, np.int64),
        np.zeros((h, w), np.uint8),
        np.zeros((h, w), np.uint8),
        class_names=("vehicle",),
    )
    a = {"det_f1": 1.0, "drivable_iou": 1.0, "lane_iou": 1.0}
    worst = [(i, i, img, p, p, a) for i in range(P.MAX_MOSAIC_ROWS + 5)]
    tracemalloc.start()
    try:
        m = P.mosaic_image(worst, ("teacher", "student"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert m.shape == (P.MAX_MOSAIC_ROWS * (24 + P.TILE[1]), 2 * P.TILE[0] + 4, 3)
    assert m.size <= 4_000_000 * 3 and peak < 64 * 2**20


# --- every bad frame named -------------------------------------------------------------------------


def _mixed_bad_bag(path):
    """Twelve CompressedImage frames: 0, 4, 8 valid; 1 3 5 7 9 11 garbage of varying size; 2 6 10 empty."""
    rng = np.random.default_rng(0)
    with RecordingWriter(path, "sqlite3") as w:
        topic = "/camera/image_raw/compressed"
        w.add_topic(topic, "sensor_msgs/msg/CompressedImage")
        for i in range(12):
            hdr = header(w.ts, DEFAULT_START_NS + i, "cam")
            msg = camera_message(w.ts, hdr, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "compressed")
            if i % 2:
                msg.data = np.frombuffer(b"\xff\xd8 not a jpeg" + b"x" * i, np.uint8)
            elif i % 4 == 2:
                msg.data = np.zeros(0, np.uint8)
            w.write(topic, DEFAULT_START_NS + i, msg)
    return path


def test_every_bad_frame_is_named(tmp_path, logs):
    bag = _mixed_bad_bag(tmp_path / "bag")
    out = tmp_path / "rep"
    assert mtc(_args(bag, out)) == 0
    rep = _json(out)
    check_accounting(rep, 12)
    errs = rep["models"]["teacher"]["errors"]
    assert [(e["count"], e["frames"]) for e in errs] == [(6, [1, 3, 5, 7, 9]), (3, [2, 6, 10])]
    assert "not a decodable image" in errs[0]["first"] and "is empty" in errs[1]["first"]
    rows = _rows(out)
    for r in rows:
        i = int(r["index"])
        bad = i % 4 != 0
        assert r["student_status"] == ("failed" if bad else "processed")
        assert bool(r["student_error"]) == bad and r["teacher_error"] == r["student_error"]
    md = (out / "report.md").read_text()
    assert "## Failed frames" in md and "| teacher | 6 | 1, 3, 5, 7, 9 |" in md and "| student | 3 | 2, 6, 10 |" in md
    for i in (1, 2, 3, 5, 6, 7, 9):  # more than three frames named in the log
        assert f"frame {i} (stamp {DEFAULT_START_NS + i})" in logs.text


def test_the_log_is_rate_limited_and_counts_the_rest(tmp_path, logs, monkeypatch):
    monkeypatch.setattr(R, "LOG_FAILURES", 4)
    bag = _mixed_bad_bag(tmp_path / "bag")
    assert mtc(_args(bag, tmp_path / "rep")) == 0
    assert "frame 5 (stamp" in logs.text and "frame 6 (stamp" not in logs.text  # 1 2 3 5 named
    assert "5 more failed frames not logged" in logs.text


@pytest.mark.parametrize("storage", ["SQLITE3", "MCAP"])
def test_mixed_image_and_compressed_image_on_one_topic(tmp_path, storage):
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    rng = np.random.default_rng(1)
    path = tmp_path / "bag"
    topic = "/camera/image_raw"
    with Writer(path, version=8, storage_plugin=StoragePlugin[storage]) as w:
        raw = w.add_connection(topic, "sensor_msgs/msg/Image", typestore=ts)
        comp = w.add_connection(topic, "sensor_msgs/msg/CompressedImage", typestore=ts)
        for i in range(6):
            t = DEFAULT_START_NS + i * 100_000_000
            img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            kind, conn = ("compressed", comp) if i % 2 else ("raw", raw)
            msg = camera_message(ts, header(ts, t, "cam"), img, kind)
            w.write(conn, t, ts.serialize_cdr(msg, conn.msgtype))
    out = tmp_path / "rep"
    assert mtc(_args(path, out, "--topic", topic, "--output-bag")) == 0
    rep = _json(out)
    check_accounting(rep, 6)
    for m in rep["models"].values():
        assert m["frames"] == {"total": 6, "processed": 6, "failed": 0, "skipped": 0} and m["errors"] == []
    assert any("mixes message types" in w for w in rep["meta"]["warnings"])
    # the output bag holds the frames of the topic's own type only (bytes of another type would be garbage)
    with AnyReader([out / "replay_bag"], default_typestore=ts) as r:
        counts = {c.topic: c.msgcount for c in r.connections}
        frames = [r.deserialize(raw, c.msgtype) for c, _, raw in r.messages() if c.topic == topic]
    assert counts["/student/detections"] == 6 and len(frames) == 3 and all(f.encoding == "bgr8" for f in frames)


# --- a model that fails every frame ------------------------------------------------------------------


def test_a_model_failing_every_frame_exits_2_with_the_report(tmp_path, bag, monkeypatch, logs):
    real = R.infer
    state = {"n": 0}

    def broken(image):
        raise RuntimeError("broken student")

    def infer(p, image):  # the student is the second model of each frame; frame.infer catches its error
        state["n"] += 1
        return real(broken if state["n"] % 2 == 0 else p, image)

    monkeypatch.setattr(R, "infer", infer)
    out = tmp_path / "rep"
    assert mtc(_args(bag, out)) == R.EXIT_MODEL_FAILED == 2
    rep = _json(out)
    check_accounting(rep, 6)
    assert rep["models"]["student"]["frames"] == {"total": 6, "processed": 0, "failed": 6, "skipped": 0}
    assert rep["models"]["teacher"]["frames"]["processed"] == 6
    assert "student failed every frame" in logs.text and "broken student" in logs.text
    assert json.loads((out / "report.json").read_text()) == rep
