"""Registries reject duplicates and suggest names; the run config is frozen and rejects unknown keys."""

import dataclasses

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.plugins import load_plugins
from bench.registry import METRICS, STRATEGIES, TASKS, Registry


def test_registry_rejects_duplicates_and_suggests():
    r = Registry("strategy")
    r.add("few_shot", object())
    with pytest.raises(ValueError, match="registered twice"):
        r.add("few_shot", object())
    with pytest.raises(BenchError, match="did you mean few_shot"):
        r.get("few_shoot")


def test_registries_fill_on_import():
    load_plugins()
    assert {"zero_shot", "few_shot", "cot", "self_consistency"} <= set(STRATEGIES.names())
    assert {"rouge", "exact_match", "f1"} <= set(METRICS.names())
    assert "demo" in TASKS


def test_config_is_frozen_and_rejects_unknown_keys(tmp_path):
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = "x"
    with pytest.raises(BenchError, match="unknown key 'seed'; did you mean seeds"):
        RunConfig.from_dict({"seed": [1]})
    with pytest.raises(BenchError, match="generation: unknown key 'max_tokens'; did you mean max_new_tokens"):
        RunConfig.from_dict({"generation": {"max_tokens": 5}})


def test_config_yaml_and_strategy_params(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("tasks: [demo]\nstrategies: [few_shot]\nseeds: [0, 1]\nparams:\n  few_shot: {k: 2, selection: similar}\n")
    cfg = RunConfig.from_yaml(p)
    assert cfg.seeds == (0, 1)
    fs = cfg.params_for("few_shot", STRATEGIES.get("few_shot").Params)
    assert (fs.k, fs.selection) == (2, "similar")
    p.write_text("params:\n  few_shot: {k: 0}\n")
    with pytest.raises(BenchError, match="params.few_shot: k must be >= 1"):
        RunConfig.from_yaml(p)
    p.write_text("params:\n  few_shot: {kk: 2}\n")
    with pytest.raises(BenchError, match="did you mean k"):
        RunConfig.from_yaml(p)
    p.write_text("limit: [unclosed\n")
    with pytest.raises(BenchError, match=r"run.yaml:\d+: invalid YAML"):
        RunConfig.from_yaml(p)


@pytest.mark.parametrize("changes, message", [
    ({"limit": 0}, "limit must be a positive"),
    ({"seeds": ()}, "seeds is empty"),
    ({"backend": "vllm"}, "backend must be one of"),
])
def test_impossible_config(changes, message):
    with pytest.raises(BenchError, match=message):
        RunConfig().replace(**changes)
