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


@pytest.mark.parametrize("text, message", [
    ("- a\n", r"run.yaml: a run config is a YAML mapping of keys .*got list"),
    ("5\n", r"run.yaml: a run config is a YAML mapping"),
    ("tasks: [demo]\ntasks: [x]\n", r"run.yaml:2: invalid YAML at column 1: duplicate key 'tasks'"),
    ("1: x\n", r"run.yaml: key 1 is not a name"),
    ("seeds: [true]\n", r"run.yaml: seeds: expected a number, got True"),
    ("seeds: [-1]\n", r"run.yaml: seed -1 is out of range"),
    ("seeds: [99999999999999]\n", r"run.yaml: seeds: 99999999999999 is out of range"),
    ("limit: .inf\n", r"run.yaml: limit: expected a finite number, got inf"),
    ("limit: 2.5\n", r"run.yaml: limit: expected a whole number"),
    ("limit: [1]\n", r"run.yaml: limit: expected a number"),
    ("generation: {temperature: .nan}\n", r"run.yaml: generation: temperature: expected a finite number"),
    ("generation: [1]\n", r"run.yaml: generation: expected a mapping for GenParams"),
    ("generation: {stop: [null]}\n", r"run.yaml: generation: stop: expected a string, got None"),
    ("run_id: ../elsewhere\n", r"run.yaml: run_id '../elsewhere' must be one folder name"),
    ("run_id: a/b\n", r"run.yaml: run_id 'a/b' must be one folder name"),
    ('out: "a\\0b"\n', r"run.yaml: a string holds NUL"),
    ("model: 2024-01-01\n", r"run.yaml: model: expected a string, got datetime.date"),
    ("model: !!binary aGVsbG8=\n", r"run.yaml: model: expected a string"),
    ("tasks: !!set {a, b}\n", r"run.yaml: tasks: expected a list"),
    ("strata: 'yes'\n", r"run.yaml: strata: expected true or false"),
    ("params: [few_shot]\n", r"run.yaml: params must map strategy names"),
    ("params: {1: {k: 2}}\n", r"run.yaml: params: key 1 must be a strategy name"),
    ("params: {few_shoot: {k: 2}}\n", r"run.yaml: params: unknown strategy 'few_shoot'; did you mean few_shot"),
    ("params: {few_shot: [1]}\n", r"run.yaml: params.few_shot must be a mapping"),
    ("params: {few_shot: {k: '1e400'}}\n", r"run.yaml: params.few_shot: k: expected a finite number"),
    ("tasks: " + "[" * 5000 + "]" * 5000 + "\n", r"run.yaml: nested deeper than 32 levels"),
    ("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n"
                                             for p, n in zip("abcde", "bcdef")),
     r"run.yaml: holds more than 100,000 values"),  # a "billion laughs": 9^6 values from six lines
])
def test_bad_config_files_name_the_file(tmp_path, text, message):
    p = tmp_path / "run.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(BenchError, match=message) as e:
        RunConfig.from_yaml(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe" + "model: x\n".encode("utf-16-le"), r"run.yaml: is UTF-16 \(by its byte-order mark\)"),
    ("model: привет\n".encode("cp1251"), r"run.yaml:1: not UTF-8 \(byte 0xef at column 8; looks like CP1251\)"),
    (b"model: a\x01b\n", r"run.yaml:1: control character U\+0001 at column 9"),
])
def test_config_bytes(tmp_path, data, message):
    p = tmp_path / "run.yaml"
    p.write_bytes(data)
    with pytest.raises(BenchError, match=message):
        RunConfig.from_yaml(p)


def test_config_bom_crlf_and_empty_file(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_bytes(b"\xef\xbb\xbftasks: [demo]\r\nlimit: '3'\r\n")
    cfg = RunConfig.from_yaml(p)
    assert cfg.tasks == ("demo",) and cfg.limit == 3
    p.write_bytes(b"")
    assert RunConfig.from_yaml(p) == RunConfig()


def test_config_that_is_not_a_file(tmp_path):
    with pytest.raises(BenchError, match="is a folder, not a file"):
        RunConfig.from_yaml(tmp_path)
    with pytest.raises(BenchError, match="run config is a mapping"):
        RunConfig.from_dict([1], where="x")  # type: ignore[arg-type]
