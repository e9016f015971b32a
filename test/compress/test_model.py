import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch
import torch_pruning as tp

from compress.models import (
    HEAD_OUTPUTS,
    SIZES,
    TAPS,
    ConfigError,
    ModelConfig,
    build_model,
    config_of,
    count_macs,
    count_params,
)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_forward_shapes_every_size(size):
    torch.manual_seed(0)
    m = build_model(ModelConfig(size=size)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out, feats = m(x, features=True)
    assert [tuple(t.shape) for t in out.det] == [(2, 3, 8, 12, 6), (2, 3, 4, 6, 6), (2, 3, 2, 3, 6)]
    assert out.drivable.shape == (2, 1, 64, 96)
    assert out.lane.shape == (2, 1, 64, 96)
    assert set(feats) == set(TAPS)
    assert feats["backbone.p3"].shape[-2:] == (8, 12)
    assert feats["backbone.p5"].shape[-2:] == (2, 3)
    assert feats["neck.enc"].shape[-2:] == (8, 12)


def test_yolop_size_matches_published_param_count():
    # YOLOP reports 7.9M parameters
    assert abs(count_params(build_model(ModelConfig(size="yolop"))) / 1e6 - 7.9) < 0.1


def test_multiclass_head():
    m = build_model(ModelConfig(size="tiny", num_classes=3, class_names=("car", "bus", "truck")))
    out = m(torch.zeros(1, 3, 64, 64))
    assert out.det[0].shape[-1] == 8


def test_count_macs_matches_hand_formula():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1))
    # output 8 x 16 x 16, each output needs 3*3*3 MACs
    assert count_macs(conv, 32, 32) == 8 * 16 * 16 * 27


def test_pruned_model_rebuilds_from_config():
    """A model pruned by torch-pruning rebuilds exactly from its config (widths as data)."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(size="tiny")).eval()
    ex = torch.randn(1, 3, 64, 96)
    ignored = [m.get_submodule(p) for ps in HEAD_OUTPUTS.values() for p in ps]
    pruner = tp.pruner.MetaPruner(
        m,
        ex,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=ignored,
        round_to=4,
        output_transform=lambda o: [*o.det, o.drivable, o.lane],
    )
    pruner.step()
    assert count_params(m) < 0.5 * count_params(build_model(ModelConfig(size="tiny")))
    cfg = config_of(m)
    again = ModelConfig.from_dict(cfg.to_dict())
    m2 = build_model(again).eval()
    m2.load_state_dict(m.state_dict())
    with torch.no_grad():
        a, b = m(ex), m2(ex)
    for x, y in zip(a.det + [a.drivable, a.lane], b.det + [b.drivable, b.lane]):
        assert torch.equal(x, y)


def test_unknown_layer_width_is_an_error():
    with pytest.raises(ConfigError, match="another architecture"):
        build_model(ModelConfig(size="tiny", widths={"backbone.nonexistent.conv": 8}))


def test_bad_config_errors():
    with pytest.raises(ConfigError, match="size"):
        ModelConfig(size="huge")
    with pytest.raises(ConfigError, match="class_names"):
        ModelConfig(num_classes=2)
    with pytest.raises(ConfigError, match="unknown keys"):
        ModelConfig.from_dict({"size": "tiny", "depth": 3})
