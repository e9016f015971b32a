import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch

from compress.data import DataConfig, MultiTaskDataset, build_loader
from compress.evaluate import to_input
from compress.losses import MultiTaskLoss
from compress.models import ModelConfig, build_model


def _batch(root, n=4, size=(128, 96)):
    ds = MultiTaskDataset(DataConfig(root=str(root), split="train"), img_size=size, augment=None)
    return next(iter(build_loader(ds, n, 0, shuffle=False)))


def test_per_task_losses_and_gradient_routing(synth_root):
    torch.manual_seed(0)
    batch = _batch(synth_root)
    assert len(batch["boxes"]) > 0
    m = build_model(ModelConfig(size="tiny"))
    crit = MultiTaskLoss.for_model(m)
    losses = crit(m(to_input(batch["img"], "cpu")), batch)
    for k in ("det", "drivable", "lane", "total", "det_box", "det_obj"):
        assert torch.isfinite(losses[k]) and losses[k] > 0, k
    w = crit.cfg
    expect = w.w_det * losses["det"] + w.w_drivable * losses["drivable"] + w.w_lane * losses["lane"]
    assert losses["total"].item() == pytest.approx(expect.item())
    # each task's loss reaches only its own head (and the shared trunk)
    m.zero_grad()
    losses["lane"].backward(retain_graph=True)
    assert m.lane.out.weight.grad.abs().sum() > 0
    assert m.drivable.out.weight.grad is None or m.drivable.out.weight.grad.abs().sum() == 0
    assert m.detect.m[0].weight.grad is None or m.detect.m[0].weight.grad.abs().sum() == 0
    assert m.backbone.stem.conv.weight.grad.abs().sum() > 0
    m.zero_grad()
    losses["det"].backward()
    assert m.detect.m[0].weight.grad.abs().sum() > 0
    assert m.lane.out.weight.grad is None or m.lane.out.weight.grad.abs().sum() == 0


def test_no_boxes_gives_objectness_only(synth_root):
    batch = _batch(synth_root, n=2)
    batch["boxes"] = torch.zeros((0, 6))
    m = build_model(ModelConfig(size="tiny"))
    losses = MultiTaskLoss.for_model(m)(m(to_input(batch["img"], "cpu")), batch)
    assert losses["det_box"] == 0 and losses["det_obj"] > 0


@pytest.mark.slow
def test_tiny_batch_overfit(synth_root):
    """A tiny model memorizes 2 images: the total loss falls by an order of magnitude."""
    torch.manual_seed(0)
    batch = _batch(synth_root, n=2, size=(160, 96))
    m = build_model(ModelConfig(size="tiny"))
    crit = MultiTaskLoss.for_model(m)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0)
    x = to_input(batch["img"], "cpu")
    first = None
    for _ in range(250):
        loss = crit(m(x), batch)["total"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = crit(m(x), batch)["total"].item()
    assert last < first / 10, (first, last)


def test_images_without_a_mask_do_not_train_that_head(synth_root):
    batch = _batch(synth_root, n=2)
    m = build_model(ModelConfig(size="tiny"))
    crit = MultiTaskLoss.for_model(m)
    out = m(to_input(batch["img"], "cpu"))
    full = crit(out, batch)
    for meta in batch["meta"]:
        meta["has_lane"] = False  # e.g. official BDD100K labels without lane masks
    batch["meta"][0]["has_drivable"] = False
    part = crit(out, batch)
    assert part["lane"].item() == 0.0 and full["lane"].item() > 0
    one = crit.segmentation(out.drivable[1:], batch["drivable"][1:].float().unsqueeze(1), 1.0)
    assert part["drivable"].item() == pytest.approx(one.item())
