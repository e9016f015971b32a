"""The inference rewrite of the decoders (compress.models.deploy) computes the same function."""

from __future__ import annotations

import json

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import torch
from helpers import randomize_bn
from torch import nn
from torch.nn import functional as F

from compress.models import build_model
from compress.models.config import ModelConfig
from compress.models.deploy import (
    DeploySegDecoder,
    DeployTarget,
    RewriteError,
    UpConv,
    UpCSP,
    deploy_model,
    fold_csp_bn,
    rewritten_stages,
    subpixel_weights,
    with_activation,
)
from compress.models.yolop import BottleneckCSP, WidthResolver, extract_widths
from compress.prune import PruneConfig, prune
from compress.prune.spec import spec_for

ANCHORS = ((4, 5, 8, 10, 12, 9), (20, 18, 30, 25, 40, 30), (60, 50, 90, 70, 120, 100))


@pytest.mark.parametrize("h,w", [(5, 7), (1, 1), (8, 3)])
def test_subpixel_conv_equals_conv_after_nearest_upsample(h, w):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, 1, 1)
    x = torch.randn(2, 6, h, w)
    ref = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
    wt, b = subpixel_weights(conv.weight.detach(), conv.bias.detach())
    got = F.pixel_shuffle(F.conv2d(x, wt, b, padding=1), 2)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_upconv_folds_batchnorm_and_activation():
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(4, 3, 3, 1, 1, bias=False), randomize_bn(nn.BatchNorm2d(3))
    act = nn.SiLU()
    x = torch.randn(1, 4, 6, 9)
    ref = act(bn(conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))))
    assert torch.allclose(UpConv(conv, bn, act)(x), ref, atol=1e-5)


def test_upconv_refuses_a_layer_the_identity_does_not_cover():
    with pytest.raises(RewriteError, match="lane.out.*3x3, stride 1, padding 1"):
        UpConv(nn.Conv2d(4, 3, 3, 2, 1), where="lane.out")
    with pytest.raises(RewriteError, match="groups"):
        UpConv(nn.Conv2d(4, 4, 3, 1, 1, groups=2))


@pytest.mark.parametrize("size", ["tiny", "teacher"])
def test_rewritten_model_matches_original(size):
    torch.manual_seed(0)
    m = randomize_bn(build_model(ModelConfig(size=size, anchors=ANCHORS)))
    d = deploy_model(m)
    assert sum(isinstance(x, DeploySegDecoder) for x in d.modules()) == 2
    assert not any(isinstance(x, DeploySegDecoder) for x in m.modules())  # the original is untouched
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        a, b = m(x), d(x)
    for k in ("drivable", "lane"):
        ta, tb = getattr(a, k), getattr(b, k)
        assert ta.shape == tb.shape
        assert torch.allclose(ta, tb, atol=1e-4, rtol=1e-4), (k, (ta - tb).abs().max())
    for pa, pb in zip(a.det, b.det):  # the CSP BatchNorm fold changes the rounding only
        assert torch.allclose(pa, pb, atol=1e-4, rtol=1e-4), (pa - pb).abs().max()
    d0 = deploy_model(m, fold_bn_after_concat=False)  # the rewrite alone leaves detection untouched
    with torch.no_grad():
        for pa, pb in zip(a.det, d0(x).det):
            assert torch.equal(pa, pb)


@pytest.mark.parametrize("stages", [(), ("csp1",), ("out",), ("c3", "out"), ("csp1", "c3", "out")])
@pytest.mark.parametrize("fold", [False, True])
def test_every_rewrite_subset_and_the_fold_compute_the_same_function(stages, fold):
    torch.manual_seed(2)
    m = randomize_bn(build_model(ModelConfig(size="tiny", anchors=ANCHORS)))
    d = deploy_model(m, rewrite=stages, fold_bn_after_concat=fold)
    assert rewritten_stages(d) == stages
    concat_bns = [x.bn for x in d.modules() if isinstance(x, (BottleneckCSP, UpCSP))]
    assert concat_bns and all(isinstance(bn, nn.Identity if fold else nn.BatchNorm2d) for bn in concat_bns)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        a, b = m(x), d(x)
    for k in ("drivable", "lane"):
        assert torch.allclose(getattr(a, k), getattr(b, k), atol=1e-4, rtol=1e-4)
    for pa, pb in zip(a.det, b.det):
        assert torch.allclose(pa, pb, atol=1e-4, rtol=1e-4)


def test_unknown_rewrite_stage_is_refused():
    m = build_model(ModelConfig(size="tiny", anchors=ANCHORS))
    with pytest.raises(RewriteError, match="'c9'.*csp1"):
        deploy_model(m, rewrite=("c9",))


def test_fold_csp_bn_splits_the_concat_batchnorm_per_part():
    torch.manual_seed(3)
    csp = randomize_bn(BottleneckCSP(6, "b", WidthResolver(ModelConfig(size="tiny")), 16, 1, False, "silu"))
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        ref = csp(x)
        fold_csp_bn(csp)
        assert isinstance(csp.bn, nn.Identity) and csp.cv3.bias is not None and csp.cv2.bias is not None
        assert torch.allclose(csp(x), ref, atol=1e-5)


def test_activation_swap_keeps_widths_and_weights():
    m = randomize_bn(build_model(ModelConfig(size="tiny", anchors=ANCHORS)))
    r = with_activation(m, "relu")
    assert r.cfg.act == "relu" and extract_widths(r) == extract_widths(m)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), r.state_dict().values()))
    assert any(isinstance(x, nn.ReLU) for x in r.modules()) and not any(isinstance(x, nn.SiLU) for x in r.modules())


def test_deploy_target_defaults_and_errors():
    assert DeployTarget().width_multiple == 16 and DeployTarget(backend="tensorrt-int8").width_multiple == 32
    assert DeployTarget(round_to=8).to_dict()["round_to"] == 8
    with pytest.raises(ValueError, match="backend 'tpu' unknown"):
        DeployTarget(backend="tpu")
    with pytest.raises(ValueError, match="act 'gelu' unknown"):
        DeployTarget(act="gelu")
    with pytest.raises(ValueError, match="rewrite stages"):
        DeployTarget(rewrite=("x",))


def test_rewritten_pruned_model_matches_original():
    """Pruned widths (odd channel counts, uneven CSP halves) rewrite exactly too."""
    torch.manual_seed(0)
    m = randomize_bn(build_model(ModelConfig(size="tiny", anchors=ANCHORS)))
    prune(m, spec_for(m), PruneConfig(criterion="random", budget="ratio", target=0.4, round_to=1, img_size=(160, 96)))
    randomize_bn(m, seed=3)
    d = deploy_model(m)
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        a, b = m(x), d(x)
    assert torch.allclose(a.lane, b.lane, atol=1e-4) and torch.allclose(a.drivable, b.drivable, atol=1e-4)


def test_other_architectures_are_left_as_they_are():
    from test_second_architecture import ResFPNNet

    m = ResFPNNet().eval()
    d = deploy_model(m)
    assert type(d) is type(m) and d is not m
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        oa, ob = m(x), d(x)
    assert torch.equal(oa.lane, ob.lane)


def test_export_writes_rewritten_graph_and_checks_it_against_the_original(tmp_path, synth_root):
    """The bundle's ONNX is the rewritten graph (fewer Resize nodes at high resolution), its
    parity is measured against the checkpoint's own graph, and --no-rewrite keeps the original."""
    import onnx

    from compress.checkpoint import save_checkpoint
    from compress.export import ExportConfig, export_bundle

    m = randomize_bn(build_model(ModelConfig(size="tiny", anchors=ANCHORS)))
    ck = save_checkpoint(tmp_path / "m.pt", m, train_config={"data": str(synth_root)})
    spec = export_bundle(ck, tmp_path / "fast", ExportConfig(img_size=(128, 96), parity_frames=2))
    plain = export_bundle(ck, tmp_path / "plain", ExportConfig(img_size=(128, 96), parity_frames=2, rewrite=False))
    assert spec.graph.decoder_rewrite is True and plain.graph.decoder_rewrite is False
    assert json.loads((tmp_path / "fast" / "bundle.json").read_text())["graph"]["decoder_rewrite"] is True
    ops = lambda d: [n.op_type for n in onnx.load(str(d / "model.onnx")).graph.node]  # noqa: E731 - a one-line accessor
    fast, orig = ops(tmp_path / "fast"), ops(tmp_path / "plain")
    assert fast.count("DepthToSpace") == 6 and orig.count("DepthToSpace") == 0
    assert (
        spec.graph.rewrite_stages == ("csp1", "c3", "out") and spec.graph.bn_folded and spec.graph.activation == "silu"
    )
    assert "BatchNormalization" not in fast  # every BatchNorm folded (ONNX export + the CSP fold)
    out_only = export_bundle(
        ck, tmp_path / "out_only", ExportConfig(img_size=(128, 96), parity_frames=2, rewrite_stages=("out",))
    )
    assert ops(tmp_path / "out_only").count("DepthToSpace") == 2 and out_only.graph.rewrite_stages == ("out",)
    # a recipe's deploy target travels in the checkpoint and decides the export's default
    from compress.checkpoint import add_to_checkpoint

    add_to_checkpoint(ck, deploy={**DeployTarget(rewrite=("c3",)).to_dict()})
    chosen = export_bundle(ck, tmp_path / "chosen", ExportConfig(img_size=(128, 96), parity_frames=2))
    assert chosen.graph.rewrite_stages == ("c3",) and chosen.graph.deploy["backend"] == "onnxruntime-cpu"
    assert ops(tmp_path / "chosen").count("DepthToSpace") == 2
    for k, v in spec.parity.max_abs_diff_normalized.items():
        assert v < 1e-4, (k, v)
