"""YOLOP's weights in (compress.importers.yolop): key mapping, round trip, errors, and an imported
network as a first-class teacher (pruned by every criterion, exported)."""

import json
from pathlib import Path

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch
from helpers import fake_batch, randomize_bn, task_loss_fn

from compress.checkpoint import load_model, save_checkpoint
from compress.importers.yolop import (
    YolopImportError,
    export_state_dict,
    import_state_dict,
    import_yolop,
    read_state_dict,
)
from compress.models import ModelConfig, build_model, count_params
from compress.models.config import YOLOP_ANCHORS
from compress.prune import CRITERIA, PruneConfig, prune, spec_for

DATA = Path(__file__).resolve().parents[1] / "data"
# YOLOP's own state-dict keys and shapes, written from its MCnet by scripts/yolop_parity.py --write-keys
UPSTREAM = json.loads((DATA / "yolop_state_dict_keys.json").read_text())["keys"]
YOLOP_CFG = ModelConfig(size="yolop", layout="yolop", act="hardswish", input_norm="imagenet")
TINY_CFG = ModelConfig(size="tiny", layout="yolop", act="hardswish", input_norm="imagenet")


def _upstream_like_state_dict(seed=0):
    """A state dict with exactly YOLOP's key names and shapes (from the recorded manifest), random
    values, and YOLOP's anchors in its two buffers (grid units and pixels)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in UPSTREAM.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.1
    pixels = torch.tensor(YOLOP_ANCHORS).view(3, 3, 2)
    sd["model.24.anchors"] = pixels / torch.tensor([8.0, 16.0, 32.0]).view(3, 1, 1)
    sd["model.24.anchor_grid"] = pixels.view(3, 1, 3, 1, 1, 2).clone()
    return sd


def test_the_yolop_layout_has_exactly_yolops_tensors():
    model = build_model(YOLOP_CFG)
    ours = {k: list(v.shape) for k, v in export_state_dict(model).items()}
    assert ours == UPSTREAM  # every name and every shape, nothing more, nothing less
    assert count_params(model) == 7_940_846  # YOLOP's "7.9M"


def test_a_state_dict_with_yolops_keys_imports_exactly(tmp_path):
    sd = _upstream_like_state_dict()
    torch.save({"epoch": 240, "state_dict": sd}, tmp_path / "End-to-end.pth")  # the layout YOLOP's training writes
    model, out = import_yolop(tmp_path / "End-to-end.pth", tmp_path / "teacher.pt")
    assert model.cfg.layout == "yolop" and model.cfg.num_classes == 1 and model.cfg.strides == (8, 16, 32)
    assert model.cfg.anchors == tuple(tuple(float(v) for v in a) for a in YOLOP_ANCHORS)
    back = export_state_dict(model)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k].to(sd[k].dtype), sd[k]), k
    loaded, ckpt = load_model(out)  # an ordinary mtc checkpoint from here on
    assert ckpt["imported"]["from"] == "yolop" and ckpt["train_config"]["img_size"] == [640, 384]
    x = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        a, b = model.eval()(x), loaded.eval()(x)
    assert all(torch.equal(p, q) for p, q in zip(a.det, b.det)) and torch.equal(a.lane, b.lane)


def test_round_trip_of_a_narrow_network_with_other_classes(tmp_path):
    """A fine-tune with 10 classes, other anchors and any widths imports as it is."""
    torch.manual_seed(1)
    anchors = ((2, 4, 6, 8, 10, 12), (14, 16, 18, 20, 22, 24), (30, 40, 50, 60, 70, 80))
    cfg = TINY_CFG.replace(num_classes=10, class_names=tuple(f"c{i}" for i in range(10)), anchors=anchors)
    src = randomize_bn(build_model(cfg)).eval()
    sd = {f"module.{k}": v for k, v in export_state_dict(src).items()}  # DataParallel prefix
    torch.save(sd, tmp_path / "ft.pth")  # a bare state dict
    got = import_state_dict(read_state_dict(tmp_path / "ft.pth"), class_names=cfg.class_names)
    assert got.cfg.num_classes == 10 and got.cfg.class_names == cfg.class_names
    assert got.cfg.anchors == tuple(tuple(float(v) for v in a) for a in anchors)
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        a, b = src(x), got(x)
        assert all(torch.equal(p, q) for p, q in zip(a.det, b.det))
        assert torch.equal(a.drivable, b.drivable) and torch.equal(a.lane, b.lane)
        # the one logit the project uses decides exactly as YOLOP's argmax over its two sigmoid channels
        _, da, ll = got.upstream(x)
        assert torch.equal(b.drivable[:, 0] > 0, da.argmax(1) == 1) and torch.equal(b.lane[:, 0] > 0, ll.argmax(1) == 1)


def test_the_network_normalizes_its_input_as_yolop_does():
    m = randomize_bn(build_model(TINY_CFG)).eval()
    plain = build_model(TINY_CFG.replace(input_norm="unit")).eval()
    plain.load_state_dict(m.state_dict())
    x = torch.rand(1, 3, 64, 64)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        assert torch.allclose(m(x).lane, plain((x - mean) / std).lane, atol=1e-5)


def test_another_architecture_is_refused(tmp_path):
    p = save_checkpoint(tmp_path / "mtc.pt", build_model(ModelConfig(size="tiny")))
    sd = torch.load(p, weights_only=True)["state_dict"]
    with pytest.raises(YolopImportError, match="another architecture"):
        import_state_dict(sd, source="mtc.pt")
    with pytest.raises(YolopImportError, match="no state dict"):
        torch.save({"epoch": 3}, tmp_path / "empty.pth")
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(YolopImportError, match="do not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_missing_extra_and_misshapen_keys_are_each_listed():
    sd = _upstream_like_state_dict()
    del sd["model.33.conv.weight"], sd["model.4.m.2.cv1.conv.weight"]
    sd["model.50.conv.weight"] = torch.zeros(1)
    sd["model.25.bn.weight"] = torch.zeros(5)
    with pytest.raises(YolopImportError) as e:
        import_state_dict(sd, source="broken.pth")
    msg = str(e.value)
    for key in ("model.33.conv.weight", "model.4.m.2.cv1.conv.weight", "model.50.conv.weight", "model.25.bn.weight"):
        assert key in msg
    assert "broken.pth" in msg and "missing" in msg and "unexpected" in msg and "wrong shape" in msg


def test_another_depth_is_refused():
    """Depths other than YOLOP's 1.0 and its 0.33 variants, or a mix, do not fit silently."""
    sd = _upstream_like_state_dict()
    mixed = {k: v for k, v in sd.items() if not k.startswith(("model.4.m.1.", "model.4.m.2."))}
    with pytest.raises(YolopImportError, match=r"unexpected: \['model\.6\.m\.1"):
        import_state_dict(mixed)  # block 4 at depth 0.33, block 6 still at 1.0
    two = {k: v for k, v in sd.items() if not k.startswith("model.4.m.2.")}
    with pytest.raises(YolopImportError, match="block 4 .* has 2 bottlenecks"):
        import_state_dict(two)


def test_a_pickled_object_is_refused_without_running_it(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("this ran",))

    torch.save({"state_dict": Boom()}, tmp_path / "evil.pth")
    with pytest.raises(YolopImportError, match="weights_only"):
        read_state_dict(tmp_path / "evil.pth")


def _imported_tiny(tmp_path):
    torch.manual_seed(0)
    torch.save({"state_dict": export_state_dict(randomize_bn(build_model(TINY_CFG)))}, tmp_path / "y.pth")
    model, path = import_yolop(tmp_path / "y.pth", tmp_path / "teacher.pt", img_size=(128, 96))
    return model, path


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_an_imported_network_is_pruned_by_every_criterion(name, tmp_path):
    model, _ = _imported_tiny(tmp_path)
    model.train()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        ref = model.eval()(x)
    model.train()
    cfg = PruneConfig(criterion=name, budget="params", target=0.3, round_to=4, img_size=(128, 96), batches=1)
    rep = prune(model, spec_for(model), cfg, batches=lambda: [fake_batch()], loss_fn=task_loss_fn(model))
    assert rep.params_reduction >= 0.3
    with torch.no_grad():
        out = model.eval()(x)
    assert [o.shape for o in out.det] == [o.shape for o in ref.det]
    assert out.drivable.shape == ref.drivable.shape and out.lane.shape == ref.lane.shape
    # the output convs keep YOLOP's two channels and its Focus stem still reads 12
    assert model.drivable.out.conv.out_channels == 2 and model.backbone.stem.conv.conv.in_channels == 12
    reloaded, _ = load_model(save_checkpoint(tmp_path / "pruned.pt", model))
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x).lane, out.lane)


def test_an_imported_network_exports_to_onnx_with_parity(tmp_path):
    import cv2
    import numpy as np

    from compress.export import ExportConfig, export_bundle

    _, path = _imported_tiny(tmp_path)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.jpg"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    for rewrite in (True, False):  # the decoder rewrite handles YOLOP's two-channel Conv output too
        spec = export_bundle(
            path,
            tmp_path / f"bundle_{rewrite}",
            ExportConfig(img_size=(128, 96), parity_frames=2, frames=str(frames), rewrite=rewrite),
        )
        for k, v in spec.parity.max_abs_diff_normalized.items():
            assert v < 1e-4, (rewrite, k, v)


def test_the_import_command_refuses_a_file_that_does_not_fit(tmp_path, caplog):
    from compress.cli import main

    torch.save({"state_dict": {"backbone.stem.conv.weight": torch.zeros(8, 3, 6, 6)}}, tmp_path / "other.pth")
    assert (
        main(["-q", "import", "yolop", "--weights", str(tmp_path / "other.pth"), "--out", str(tmp_path / "t.pt")]) == 2
    )
    assert "another architecture" in caplog.text and "other.pth" in caplog.text
    assert not (tmp_path / "t.pt").exists()


def test_a_ten_class_fine_tune_is_read_with_bdds_classes(tmp_path, synth_root, caplog):
    """An imported 10-class file takes BDD100K's class names; eval on data read with another class
    count refuses (its class ids would be scored against other classes' boxes) and names --classes."""
    from compress.cli import main
    from compress.data.bdd import BDD10_CLASSES

    torch.manual_seed(0)
    cfg = TINY_CFG.replace(num_classes=10, class_names=tuple(f"c{i}" for i in range(10)))
    torch.save({"state_dict": export_state_dict(build_model(cfg))}, tmp_path / "ft10.pth")
    model, path = import_yolop(tmp_path / "ft10.pth", tmp_path / "ft10.pt", img_size=(128, 96))
    assert model.cfg.class_names == tuple(BDD10_CLASSES)
    assert main(["-q", "eval", "--ckpt", str(path), "--data", str(synth_root), "--split", "val"]) == 2
    assert "detects 10 classes" in caplog.text and "--classes bdd10" in caplog.text
    out = tmp_path / "ev.json"
    args = ["-q", "eval", "--ckpt", str(path), "--data", str(synth_root), "--split", "val", "--classes", "bdd10"]
    assert main([*args, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["detection"]["class_names"] == list(BDD10_CLASSES)
    assert set(res["detection"]["ap50_by_class"]) == set(BDD10_CLASSES)
