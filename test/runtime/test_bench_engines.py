"""Issue 18: `mtc bench-engines` compares every bundle with the first (the reference), shows each
bundle's precision, and `--profile` gives each bundle's time per op type from ONNX Runtime's
profiler in a pass after the timed runs."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "onnxruntime", reason="needs onnxruntime (runs the tiny bundle): a required dependency, see import_guards.REQUIRED"
)

from mtc_perception.bench.profile import parse_trace
from mtc_perception.cli import main as mtc

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "data" / "tiny_bundle"
TINY_CONVS = 94  # Conv nodes in the tiny bundle's model.onnx


@pytest.fixture
def frames(tmp_path):
    import cv2

    d = tmp_path / "frames"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return d


def _int8(tmp_path):
    import shutil

    d = tmp_path / "tiny_int8"
    shutil.copytree(TINY, d)
    spec = json.loads((d / "bundle.json").read_text())
    spec["versions"]["precision"] = "int8"
    (d / "bundle.json").write_text(json.dumps(spec))
    return d


def _run(frames, out, *bundles, extra=()):
    args = ["bench-engines", "--frames", str(frames), "--size", "160x120", "--threads", "1", "--out", str(out)]
    for b in bundles:
        args += ["--bundle", b]
    return mtc([*args, *extra])


def test_profile_per_op_type_against_the_reference(tmp_path, frames):
    out = tmp_path / "out"
    assert _run(frames, out, str(TINY), f"int8={_int8(tmp_path)}", extra=["--profile", "--max-frames", "3"]) == 0
    rep = json.loads((out / "engines.json").read_text())
    assert rep["meta"]["reference"] == "tiny_bundle" and rep["meta"]["profile"] is True  # named after its directory
    ref, q = rep["models"]["tiny_bundle"], rep["models"]["int8"]
    assert ref["precision"] == "fp32" and q["precision"] == "int8"
    assert ref["speedup_vs_first"] == 1.0 and ref["infer_speedup_vs_first"] == 1.0
    assert q["speedup_vs_first"] == pytest.approx(q["throughput_fps"] / ref["throughput_fps"])
    for r in (ref, q):
        assert "profiling" not in r["backend"]  # the timed sessions ran without the profiler
        prof = r["profile"]
        assert "profiling" in prof["backend"] and prof["frames"] == prof["runs"] == 3
        ops = prof["ops"]
        assert "Conv" in ops and ops["Conv"]["share"] > 0.2
        assert sum(o["ms"] for o in ops.values()) == pytest.approx(prof["node_ms"], rel=1e-9)
        assert sum(o["share"] for o in ops.values()) == pytest.approx(1.0, abs=1e-9)
        assert sum(o["nodes"] for op, o in ops.items() if "Conv" in op) == TINY_CONVS
        assert all(o["calls"] == o["nodes"] for o in ops.values())  # each node once per frame
        assert 0 < prof["node_ms"] <= prof["run_ms"]
        assert list(ops) == sorted(ops, key=lambda k: -ops[k]["ms"])  # largest first
    md = (out / "engines.md").read_text()
    assert "| int8 | int8 |" in md and "| tiny_bundle | fp32 |" in md and "against tiny_bundle, the reference" in md
    assert "## Time per op type" in md and "### int8 (int8):" in md and "| Conv | 94 | 94 |" in md


def test_without_profile_there_is_none_and_names_must_differ(tmp_path, frames, logs):
    out = tmp_path / "out"
    assert _run(frames, out, f"a={TINY}", f"b={TINY}", extra=["--max-frames", "1"]) == 0
    rep = json.loads((out / "engines.json").read_text())
    assert list(rep["models"]) == ["a", "b"] and not any("profile" in r for r in rep["models"].values())
    assert "Time per op type" not in (out / "engines.md").read_text()
    assert _run(frames, tmp_path / "dup", str(TINY), str(TINY)) == 2  # both named tiny_bundle
    assert "['tiny_bundle'] are given more than once" in logs.text and not (tmp_path / "dup").exists()


def _ev(cat, name, ts, dur, op=None):
    e = {"cat": cat, "name": name, "ts": ts, "dur": dur, "ph": "X"}
    if op:
        e["args"] = {"op_name": op, "provider": "CPUExecutionProvider"}
    return e


def test_parse_trace_counts_the_last_runs_only():
    events = [_ev("Session", "session_initialization", 0, 50)]
    for k, t in enumerate((100, 200, 300)):  # run 0 is a warm-up: excluded with runs=2
        slow = 10 if k == 0 else 1
        events += [
            _ev("Session", "model_run", t, 50),
            _ev("Node", "conv1_kernel_time", t + 1, 20 * slow, "Conv"),
            _ev("Node", "conv1_fence_before", t + 1, 0, "Conv"),  # not a kernel time
            _ev("Node", "conv2_kernel_time", t + 21, 10 * slow, "Conv"),
            _ev("Node", "act_kernel_time", t + 31, 10 * slow, "QuickGelu"),
        ]
    p = parse_trace(events, runs=2)
    assert p["runs"] == 2 and p["run_ms"] == pytest.approx(0.05) and p["node_ms"] == pytest.approx(0.04)
    assert p["node_share_of_run"] == pytest.approx(0.8) and p["providers"] == ["CPUExecutionProvider"]
    assert p["ops"] == {
        "Conv": {"ms": pytest.approx(0.03), "share": pytest.approx(0.75), "nodes": 2, "calls": 2.0},
        "QuickGelu": {"ms": pytest.approx(0.01), "share": pytest.approx(0.25), "nodes": 1, "calls": 1.0},
    }
    assert parse_trace(events)["ops"]["Conv"]["ms"] == pytest.approx((300 + 30 + 30) / 3 / 1e3)
    with pytest.raises(ValueError, match="3 model runs, fewer than the 4 profiled frames"):
        parse_trace(events, runs=4)
