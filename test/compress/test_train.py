"""Training end to end on a tiny synthroad split: checkpoints, metrics log, resume, DDP."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from compress.checkpoint import load_checkpoint, load_model
from compress.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def _cfg(root, out, **kw):
    base = dict(
        data=str(root),
        out=str(out),
        model_size="tiny",
        img_size=(128, 96),
        epochs=1,
        batch_size=4,
        workers=0,
        eval_interval=1,
        anchors="auto",
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_checkpoints_and_resumes(synth_root, tmp_path):
    s = train(_cfg(synth_root, tmp_path / "run", epochs=1), progress=False)
    assert Path(s["best"]).is_file() and Path(s["last"]).is_file()
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["epoch"] == 1 and "val" in recs[0] and recs[0]["loss"]["total"] > 0
    assert 0.0 <= recs[0]["val"]["detection"]["map50"] <= 1.0
    assert recs[-1]["summary"]["epochs_run"] == 1
    ck = load_checkpoint(s["last"])
    assert ck["train_state"]["epoch"] == 0 and ck["train_config"]["model_size"] == "tiny"
    # anchors were fitted to the data and travel with the checkpoint
    from compress.models import YOLOP_ANCHORS

    fitted = ck["model_config"]["anchors"]
    assert len(fitted) == 3 and fitted != [list(map(float, a)) for a in YOLOP_ANCHORS]
    areas = [a[0] * a[1] for a in fitted]
    assert areas == sorted(areas)  # small anchors on the fine scale
    # resume continues at epoch 2 with the same architecture and optimizer state
    s2 = train(_cfg(synth_root, tmp_path / "run", epochs=2), resume=s["last"], progress=False)
    assert s2["epochs_run"] == 1
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs if "epoch" in r] == [1, 2]
    m, ck2 = load_model(s2["last"])
    assert ck2["train_state"]["epoch"] == 1 and ck2["train_state"]["step"] == 2 * (16 // 4)


def test_ddp_two_processes_on_cpu(synth_root, tmp_path):
    """torchrun with 2 gloo processes: each trains on its own shard and the weights stay identical."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "compress.cli",
        "-q",
        "train",
        "--data",
        str(synth_root),
        "--out",
        str(out),
        "--model-size",
        "tiny",
        "--img-size",
        "128x96",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--max-train-batches",
        "2",
        "--eval-max-batches",
        "1",
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    summary = [json.loads(x)["summary"] for x in (out / "metrics.jsonl").read_text().splitlines() if "summary" in x][0]
    assert summary["world_size"] == 2
    ranks = sorted(summary["ranks"], key=lambda d: d["rank"])
    assert [d["rank"] for d in ranks] == [0, 1]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # gradients were all-reduced
    assert all(d["images_seen"] == 4 for d in ranks)  # 2 batches x 2 images per process
    assert torch.load(out / "last.pt", weights_only=True)["train_state"]["step"] == 2


def test_eval_command_writes_metrics_json(synth_root, tmp_path):
    from compress.cli import main

    s = train(_cfg(synth_root, tmp_path / "run"), progress=False)
    out = tmp_path / "eval.json"
    assert main(["-q", "eval", "--ckpt", s["best"], "--workers", "0", "--batch-size", "4", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["data"] == str(synth_root) and res["images"] == 8 and res["img_size"] == [128, 96]
    assert res["params"] > 0 and 0.0 <= res["lane"]["iou"] <= 1.0 and "conventions" in res
    assert res["detection"]["protocol"] == "default" and res["detection"]["ap_method"] == "yolov5"
    yolop = tmp_path / "eval_yolop.json"
    args = ["-q", "eval", "--ckpt", s["best"], "--workers", "0", "--batch-size", "4", "--protocol", "yolop"]
    assert main([*args, "--out", str(yolop)]) == 0
    det = json.loads(yolop.read_text())["detection"]
    assert det["protocol"] == "yolop" and det["ap_method"] == "yolop" and det["images"] == 8
    assert "protocol yolop" in json.loads(yolop.read_text())["conventions"]
    # BDD100K as downloaded: the official label file and folders by flag (no symlinks, no config)
    from conftest_data import to_official

    det = tmp_path / "det_val.json"
    det.write_text(json.dumps(to_official(synth_root, "val")))
    official = tmp_path / "eval_official.json"
    flags = ["--label-json", str(det), "--image-dir", str(synth_root / "images" / "val")]
    flags += ["--drivable-dir", str(synth_root / "da_seg_annotations" / "val")]
    flags += ["--lane-dir", str(synth_root / "ll_seg_annotations" / "val")]
    assert main([*args[:-2], *flags, "--out", str(official)]) == 0
    off = json.loads(official.read_text())
    assert off["images"] == 8 and off["detection"]["num_gt"] == res["detection"]["num_gt"]
    assert off["detection"]["map50"] == pytest.approx(res["detection"]["map50"])  # the same labels, read the other way
    assert main([*args[:-2], "--label-json", str(tmp_path / "nope.json"), "--out", str(official)]) == 2
    assert main(["-q", "eval", "--ckpt", str(tmp_path / "missing.pt")]) == 2
