"""The runtime's ONNX Runtime session options (onnxruntime_engine.session_options): one definition,
used by the engine, the pruning's latency budget and scripts/speed_breakdown.py."""

import pytest

ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime")

from mtc_perception.engines.onnxruntime_engine import session_options


def test_defaults_are_the_runtime_s():
    so = session_options()
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert so.intra_op_num_threads == 0  # ONNX Runtime's default: every core


def test_options_and_a_bad_level():
    so = session_options(threads=2, graph_optimization="all", spin=True)
    assert so.intra_op_num_threads == 2 and so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "1"
    with pytest.raises(
        ValueError, match=r"graph_optimization 'fast' unknown; use one of \['all', 'basic', 'disabled', 'extended'\]"
    ):
        session_options(graph_optimization="fast")


def test_the_offline_timers_use_it():
    """No other SessionOptions and no other ONNX export in the project: the latency budget and
    speed_breakdown take these."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    users = [
        p.relative_to(root).as_posix()
        for p in [*root.glob("compress/**/*.py"), *root.glob("mtc_perception/**/*.py"), *root.glob("scripts/*.py")]
        if "SessionOptions()" in p.read_text()
    ]
    assert users == ["mtc_perception/engines/onnxruntime_engine.py"]
    exporters = [
        p.relative_to(root).as_posix()
        for p in [*root.glob("compress/**/*.py"), *root.glob("scripts/*.py")]
        if "torch.onnx.export(" in p.read_text()
    ]
    assert exporters == ["compress/export/onnx.py"]  # the one ONNX export
    for f in ("compress/prune/latency.py", "scripts/speed_breakdown.py"):
        text = (root / f).read_text()
        assert "session_options(" in text and "export_onnx(" in text and "torch.onnx.export" not in text, f


def test_profiling_is_a_flag_of_the_one_factory(tmp_path):
    """`mtc bench-engines --profile` profiles through session_options, not a SessionOptions of its own."""
    assert session_options().enable_profiling is False
    so = session_options(threads=1, profile_prefix=str(tmp_path / "p"))
    assert so.enable_profiling is True and so.profile_file_prefix == str(tmp_path / "p")
    assert so.intra_op_num_threads == 1  # the other options as without profiling
