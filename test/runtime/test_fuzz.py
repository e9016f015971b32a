"""Seeded fuzzing in CI: random camera messages and bundle.json mutations raise only the module's
own errors (scripts/fuzz_inputs.py holds the generators; its command line runs the long version)."""

import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (real ROS 2 message definitions and CDR): `pip install rosbags`; `make test` installs it",
)
pytest.importorskip("onnxruntime", reason="needs onnxruntime (the tiny bundle behind FrameProcessor)")

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fuzz_inputs", ROOT / "scripts" / "fuzz_inputs.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_inputs"] = fuzz
_spec.loader.exec_module(fuzz)

SEED = 17
CASES = 300


def _failures(summary):
    return [f"{f['family']} #{f['index']} {f['outcome']}: {f['what']}\n{f['detail'][-300:]}" for f in summary.failures]


def test_cases_are_reproducible_from_seed_and_index():
    a, b = fuzz.camera_case(SEED, 5), fuzz.camera_case(SEED, 5)
    assert a.what == b.what and bytes(a.msg.data) == bytes(b.msg.data)
    assert fuzz.bundle_case(SEED, 9).bundle_json == fuzz.bundle_case(SEED, 9).bundle_json


def test_generators_cover_the_cases_they_claim():
    whats = [fuzz.camera_case(SEED, i).what for i in range(CASES)]
    assert any("humble" in w for w in whats) and any("jazzy" in w for w in whats)
    for text in ("Image encoding=", "random bytes", "cut at byte", "bytes changed", "header claims", "intact"):
        assert any(text in w for w in whats), text
    from mtc_perception.imaging import ENCODINGS

    encodings = {w.split("encoding=")[1].split(" ")[0].strip("'") for w in whats if "encoding=" in w}
    assert encodings & set(ENCODINGS) and encodings - set(ENCODINGS)  # valid and invalid encodings
    assert sum(fuzz.is_bomb(fuzz.camera_case(SEED, i)) for i in range(CASES)) > 0
    bundles = [fuzz.bundle_case(SEED, i).what for i in range(CASES)]
    for text in ("deleted", "files.", "huge", "raw bundle.json text"):
        assert any(text in w for w in bundles), text


def test_header_rewriters_claim_the_size_asked_for():
    import cv2

    jpg = fuzz.jpeg_with_size(fuzz.FRAME_JPG.read_bytes(), 50, 70)
    png = fuzz.png_with_size(fuzz._frame_bytes("png"), 30, 20)
    assert cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (50, 70)
    ok = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)  # a PNG with the wrong size fails to decode
    assert ok is None or ok.shape[:2] == (30, 20)


def test_random_camera_messages_raise_only_image_error_and_never_crash_the_frame_processor():
    """Raw Images (valid and invalid encodings, sizes, steps, data lengths, big-endian flags) and
    CompressedImages (random, truncated, mutated, resized headers within OpenCV's own limit)."""
    s = fuzz.run_camera(SEED, range(CASES), processor=True, bombs=False)
    assert not s.failures, "\n".join(_failures(s))
    dec, proc = s.counts["camera.decode"], s.counts["camera.frame_processor"]
    assert dec["ok"] > 20 and dec["ImageError"] > 20  # both outcomes are exercised
    assert sum(dec.values()) == sum(proc.values())  # every decoded case also went through the node's core
    errors = sum(v for k, v in proc.items() if k.startswith("error:"))
    # every undecodable frame is a counted error; a decodable one may still be refused by the Perceptor (a 1x1 frame)
    assert errors + proc["ok"] == sum(proc.values()) and errors - dec["ImageError"] == dec["ok"] - proc["ok"] >= 0


def test_headers_claiming_huge_sizes_are_refused_in_bounded_memory():
    indices = [i for i in range(CASES * 4) if fuzz.is_bomb(fuzz.camera_case(SEED, i))][:12]
    assert len(indices) >= 6
    s = fuzz.run_bombs(SEED, indices)  # in a child process capped at fuzz.BOMB_MEMORY bytes
    assert sum(s.counts["camera.bomb"].values()) == len(indices)
    assert not s.failures, "\n".join(_failures(s))


def test_bundle_json_mutations_raise_only_bundle_error():
    s = fuzz.run_bundle(SEED, range(CASES))
    assert not s.failures, "\n".join(_failures(s))


def test_bundle_json_mutations_exercise_both_outcomes():
    s = fuzz.run_bundle(SEED, range(CASES))
    c = s.counts["bundle.load"]
    assert c["BundleError"] > CASES // 2 and c["ok"] > 0


def test_the_command_line_writes_counts_per_outcome(tmp_path):
    out = tmp_path / "fuzz" / "summary.json"
    rc = fuzz.main(["--cases", "20", "--seed", "3", "--out", str(out), "--no-processor"])
    d = json.loads(out.read_text())
    assert d["seed"] == 3 and d["cases_per_family"] == 20 and "--cases 20" in d["command"]
    assert sum(d["counts"]["bundle.load"].values()) == 20
    assert sum(sum(d["counts"][k].values()) for k in d["counts"] if k.startswith("camera.")) == 20
    assert rc == (1 if d["failures"] else 0) and d["failures"] >= len(d["failing_cases"])
    assert all(f["index"] < 20 and f["outcome"].startswith(("raised:", "bad-result:")) for f in d["failing_cases"])
