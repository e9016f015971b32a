"""Recipes are validated whole when loaded: every bad field is an error naming the field and the fix,
raised before any work (no teacher is read); the budget table drives targets and the schedule."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import sys

import yaml

from compress.cli import main
from compress.config_io import ConfigFileError
from compress.prune import QUANTITIES, BudgetError, PruneConfig, budget_names
from compress.prune import budget as budgets
from compress.recipe import PruneStage, load_recipe


def _write(tmp_path, **kw):
    r = {"teacher": str(tmp_path / "no-such-teacher.pt"), "out": str(tmp_path / "out"), "prune": {"target": 0.4}}
    r.update(kw)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


BAD = [
    ({"prune": {"ratio": 0.3}}, r"prune: unknown key\(s\) \['ratio'\]"),
    ({"prune": {"budget": "flops"}}, r"prune\.budget: budget 'flops' unknown; use one of \('ratio', 'params'"),
    ({"prune": {"target": 1.5}}, r"prune\.target: pruning target 1.5 must be a fraction in \(0, 1\)"),
    ({"prune": {"target": "half"}}, r"prune\.target: expected a number"),
    (
        {"prune": {"budget": "macs", "target": 0.3, "macs_target": 0.4}},
        r"prune\.macs_target: macs_target 0.4 needs budget 'params' or 'latency'",
    ),
    (
        {"prune": {"budget": "ratio", "target": 0.3, "latency_target": 0.2}},
        r"prune\.latency_target: .*needs budget 'params' or 'macs'",
    ),
    ({"prune": {"criterion": "l1"}}, r"prune\.criterion: criterion 'l1' unknown; use one of \['hessian'"),
    (
        {"prune": {"criterion_args": {"conflict_weight": 2.0}}},
        r"prune\.criterion_args: .*conflict_weight must be in \[0, 1\]",
    ),
    ({"prune": {"criterion": "magnitude", "criterion_args": {"safe_fraction": 0.1}}}, r"prune\.criterion_args:"),
    ({"prune": {"allocation": "even"}}, r"prune\.allocation: allocation 'even' unknown"),
    ({"prune": {"allocation": "sensitivity", "global_pruning": True}}, r"prune\.global_pruning: .*use one of them"),
    ({"prune": {"steps": 0}}, r"prune\.steps: steps must be >= 1"),
    ({"prune": {"recovery_epochs": -1}}, r"prune\.recovery_epochs"),
    ({"prune": {"round_to": 0}}, r"prune\.round_to"),
    ({"prune": {"max_layer_ratio": 1.5}}, r"prune\.max_layer_ratio"),
    ({"prune": {"latency_size": [4, 4]}}, r"prune\.latency_size: .*\(width, height\)"),
    ({"prune": {"img_size": [320, 192]}}, r"prune\.img_size: the input size comes from the teacher"),
    ({"deploy": {"backend": "tpu"}}, r"deploy: deploy backend 'tpu' unknown"),
    ({"deploy": {"act": "gelu"}}, r"deploy: deploy act 'gelu' unknown"),
    ({"deploy": {"rewrite": ["c9"]}}, r"deploy: deploy rewrite stages \['c9'\] unknown"),
    ({"deploy": {"speed": 1}}, r"deploy: unknown key\(s\) \['speed'\]"),
    ({"deploy": {"backend": "tensorrt-int8"}, "prune": {"round_to": 8}}, r"prune\.round_to: 8 disagrees with deploy"),
    ({"distill": {"epochz": 1}}, r"distill: unknown key\(s\) \['epochz'\]"),
    ({"distill": {"out": "x"}}, r"distill\.out: set by the recipe"),
    ({"distill": {"lr": "fast"}}, r"distill\.lr: expected a number"),
    ({"distill": {"output_weight": -1.0}}, r"distill\.output_weight: must be >= 0"),
    ({"distill": {"loss": {"w_dett": 2.0}}}, r"distill\.loss: unknown key"),
    ({"distill": {"loss": {"w_det": -1.0}}}, r"distill\.loss\.w_det: a loss weight must be >= 0"),
    ({"ablation": {"criteria": ["l1"]}}, r"ablation\.criteria: unknown \['l1'\]"),
    ({"ablation": {"seeds": [1, 1]}}, r"ablation\.seeds: expected a list of distinct integers"),
    ({"ablation": {"latency_iters": 0}}, r"ablation\.latency_iters"),
    ({"eval_batch_size": 0}, r"eval_batch_size: must be >= 1"),
    ({"evaluate": True}, r"unknown key\(s\) \['evaluate'\]"),
]


@pytest.mark.parametrize("fields,message", BAD, ids=[m for _, m in BAD])
def test_every_bad_field_is_named_at_load(tmp_path, fields, message):
    with pytest.raises(ConfigFileError, match=message) as e:
        load_recipe(_write(tmp_path, **fields))
    assert str(tmp_path / "recipe.yaml") in str(e.value)  # the file is named too


def test_a_bad_recipe_fails_before_the_teacher_is_read(tmp_path, caplog):
    # the teacher does not exist: an error about the budget means nothing was read before the check
    bad = _write(tmp_path, prune={"budget": "flops"})
    assert main(["-q", "compress", "--recipe", str(bad)]) == 2
    assert "prune.budget" in caplog.text and "no-such-teacher" not in caplog.text
    assert main(["-q", "ablate", "--recipe", str(_write(tmp_path, ablation={"criteria": ["l1"]}))]) == 2
    assert not (tmp_path / "out").exists()


def test_a_latency_budget_without_onnxruntime_fails_at_load(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigFileError, match=r"prune\.budget: .*pip install onnxruntime"):
        load_recipe(_write(tmp_path, prune={"budget": "latency", "target": 0.3}))
    with pytest.raises(ConfigFileError, match=r"prune\.latency_target: .*pip install onnxruntime"):
        load_recipe(_write(tmp_path, prune={"budget": "params", "target": 0.3, "latency_target": 0.2}))
    assert load_recipe(_write(tmp_path, prune={"budget": "macs", "target": 0.3})).prune.budget == "macs"


def test_the_prune_section_is_a_prune_config(tmp_path):
    r = load_recipe(_write(tmp_path, prune={"criterion": "taylor", "budget": "macs", "target": 0.3, "steps": 2}))
    assert isinstance(r.prune, PruneConfig) and r.prune.steps == 2 and r.prune.criterion == "taylor"
    st = r.prune.for_model((128, 96))
    assert st.img_size == (128, 96) and st.target == 0.3
    other = st.with_criterion("magnitude")
    assert other.criterion == "magnitude" and other.criterion_args == {}
    assert st.at_ratio(0.25).budget == "ratio" and st.at_ratio(0.25).macs_target is None


def test_the_budget_table():
    assert budget_names() == ("ratio", "params", "macs", "latency")
    assert {q.name: q.target_field for q in QUANTITIES.values()} == {
        "params": None,
        "macs": "macs_target",
        "latency": "latency_target",
    }
    assert [q for q, v in QUANTITIES.items() if v.timed] == ["latency"]
    cfg = PruneConfig(budget="params", target=0.5, macs_target=0.4, latency_target=0.3)
    assert budgets.targets(cfg) == {"params": 0.5, "macs": 0.4, "latency": 0.3} and cfg.needs_meter
    assert not PruneConfig(criterion="magnitude").needs_data and PruneConfig(criterion="taylor").needs_data
    assert PruneConfig(criterion="magnitude", allocation="sensitivity").needs_data
    # a step's targets: every quantity on the same geometric schedule, of the current model
    base, now = {"params": 100.0, "macs": 1000.0}, {"params": 80.0, "macs": 900.0}
    step = budgets.step_targets(PruneConfig(target=0.5, macs_target=0.4), 1, 2, base, now)
    assert step["params"] == pytest.approx(1 - 100 * 0.5 / 80) and step["macs"] == pytest.approx(1 - 1000 * 0.6 / 900)
    derived = budgets.with_targets(PruneConfig(target=0.5, macs_target=0.4), step)
    assert derived.target == step["params"] and derived.macs_target == step["macs"] and derived.latency_target is None
    ratio = budgets.step_targets(PruneConfig(budget="ratio", target=0.75), 0, 2, {}, {})
    assert ratio["ratio"] == pytest.approx(0.5)  # kept channels multiply: 0.5 x 0.5 = 0.25 kept


def test_cli_choices_follow_the_tables():
    from compress import cli
    from compress.prune import CRITERIA

    assert cli.BUDGETS == budget_names() and set(cli.CRITERIA_NAMES) == set(CRITERIA)


def test_config_errors_name_the_field():
    with pytest.raises(BudgetError, match="criterion 'l1' unknown") as e:
        PruneConfig(criterion="l1")
    assert e.value.field == "criterion"
    with pytest.raises(BudgetError) as e:
        PruneStage(steps=0)
    assert e.value.field == "steps"


def test_deploy_section_sets_the_width_multiple_of_its_backend(tmp_path):
    r = load_recipe(_write(tmp_path, deploy={"backend": "onnxruntime-cpu", "act": "relu"}))
    assert r.deploy.act == "relu" and r.deploy.width_multiple == 16 and r.prune.round_to == 16
    assert r.prune.budget == "latency"  # a deploy recipe budgets time unless it says otherwise
    r = load_recipe(_write(tmp_path, deploy={"backend": "tensorrt-int8"}, prune={"target": 0.4, "round_to": 32}))
    assert r.prune.round_to == 32
    r = load_recipe(_write(tmp_path, deploy={"act": "relu"}, prune={"target": 0.4, "budget": "macs"}))
    assert r.prune.budget == "macs"
    assert load_recipe(_write(tmp_path)).deploy is None and load_recipe(_write(tmp_path)).prune.round_to == 8


def test_shipped_deploy_recipe_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = load_recipe(root / "config" / "compress" / "synthroad_deploy.yaml")
    assert r.deploy is not None and r.prune.budget == "latency" and r.prune.round_to == r.deploy.width_multiple
