import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch

from compress.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from compress.models import ModelConfig, build_model


def test_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(size="tiny", anchors=((2, 3, 4, 5, 6, 7), (8, 9, 10, 11, 12, 13), (14, 15, 16, 17, 18, 19)))
    m = build_model(cfg).eval()
    p = save_checkpoint(tmp_path / "m.pt", m, metrics={"map50": 0.5}, epoch=3)
    raw = torch.load(p, weights_only=True)  # must not need unpickling of any object
    assert raw["epoch"] == 3 and raw["metrics"]["map50"] == 0.5
    m2, ckpt = load_model(p)
    assert m2.cfg.anchors == cfg.anchors and m2.cfg.size == "tiny"
    assert m2.cfg.widths == {k: v.out_channels for k, v in m.named_modules() if isinstance(v, torch.nn.Conv2d)}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x).drivable, m2.eval()(x).drivable)


def test_pickled_module_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "mtc-checkpoint", "model": build_model(ModelConfig(size="tiny"))}, p)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(p)


def test_other_architecture_is_refused(tmp_path):
    m = build_model(ModelConfig(size="tiny"))
    p = save_checkpoint(tmp_path / "m.pt", m)
    ckpt = torch.load(p, weights_only=True)
    ckpt["model_config"]["size"] = "yolop"  # deeper CSP stages than the weights have
    torch.save(ckpt, p)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_model(p)
    ckpt["model_config"]["size"] = "tiny"
    ckpt["model_config"]["widths"]["backbone.stem.conv"] += 8  # a layer width the weights lack
    torch.save(ckpt, p)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_model(p)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an mtc checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
