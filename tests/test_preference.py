"""Preference tuning (dpo, sft_then_dpo, spin) on the packaged SmolLM2.

Pairs come from the task's `rejected` field or from the base model's own greedy answers (an answer equal
to the reference is no pair), the rejected answers are part of the cache key, DPO trains through adapt()
and is served as a merged GGUF whose answers differ from the base's, sft_then_dpo starts from the cached
SFT adapter, and SPIN's second iteration starts from the first iteration's model and learns against the
answers of that model. Training settings are tiny: a step per round on a handful of examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.plugins import load_plugins
from bench.registry import STRATEGIES
from bench.run.cache import GenerationCache
from bench.run.context import CellContext
from bench.taskio import load_folder
from bench.types import Example, Generation
from strategies.training.data import Record
from strategies.training.params import DpoParams
from strategies.training.preference import PreferenceJob, preference_job
from strategies.training.trainer import TrainJob
from tests.conftest import scratch, write_task

load_plugins()

ROWS = [("temp", "What temperature is freezer hall B kept at?", "minus 28 degrees Celsius"),
        ("manager", "Who is the night shift manager?", "Ingrid Solberg"),
        ("dock", "Which loading dock receives seafood deliveries?", "dock 4"),
        ("gloves", "What colour are the blast freezer gloves?", "orange"),
        ("limit", "How many minutes may a worker stay in the blast freezer?", "20 minutes"),
        ("halls", "How many storage halls are there?", "five")]
# one step per round at a high rate, enough to visibly move a 135M model
SMALL = {"max_steps": 1, "batch_size": 2, "max_length": 64, "val_fraction": 0.2, "eval_every": 1, "threads": 2,
         "learning_rate": 3e-3, "answer_tokens": 16}


# -- pairs and keys (no model) -------------------------------------------------------------------------------------
def _examples(rejected: dict) -> list[Example]:
    return [Example(i, q, "", a, extra=(("rejected", rejected[i]),) if i in rejected else ())
            for i, q, a in ROWS]


def _job(examples: list[Example], params: DpoParams = DpoParams()) -> TrainJob:
    records = [Record(e.id, f"Q: {e.instruction}\nA: ", e.output + "</s>") for e in examples]
    return TrainJob(SimpleNamespace(sha256="base", name="m"), "dpo", params, records[:4], records[4:], 0, Path("/x"))


class FakeAnswers:
    """The base model's answers, scripted: harness logic only (which items are asked, what becomes a pair)."""

    def __init__(self, outputs: dict):
        self.outputs, self.asked = outputs, []

    def __call__(self, backend, examples, max_new_tokens):
        self.asked.append([e.id for e in examples])
        return [Generation(prompt="", output=self.outputs.get(e.id, ""), prompt_tokens=1, completion_tokens=1,
                           seconds=0.0, finish_reason="error" if e.id == "halls" else "stop",
                           error="does not fit" if e.id == "halls" else None) for e in examples]


def test_pairs_come_from_the_task_or_the_base_models_own_answers():
    examples = _examples({"temp": "minus 5 degrees", "limit": "an hour"})
    answers = FakeAnswers({"manager": " Ingrid Solberg ", "dock": "dock 2", "gloves": "blue", "limit": "ten"})
    job = preference_job(_job(examples), examples[:4], examples[4:], answers, from_task=True)
    assert isinstance(job, PreferenceJob)
    assert answers.asked == [["manager", "dock", "gloves", "halls"]]  # only items without a `rejected` answer
    # the base answered "manager" like the reference (no pair); "halls" failed (no pair, counted)
    assert job.rejected == ("minus 5 degrees</s>", "", "dock 2</s>", "blue</s>")
    assert job.val_rejected == ("an hour</s>", "")
    assert job.pairs == {"from_task": 2, "generated": 3, "identical": 1, "failed": 1, "pairs": 3, "val_pairs": 1,
                         "val_exact": 0.0}
    own = FakeAnswers({e.id: "no idea" for e in examples})
    spin = preference_job(_job(examples), examples[:4], examples[4:], own, from_task=False)  # SPIN: always its own
    assert own.asked == [[e.id for e in examples]] and spin.rejected == ("no idea</s>",) * 4
    assert spin.pairs["from_task"] == 0 and spin.pairs["generated"] == 5


def test_the_rejected_answers_are_part_of_the_key():
    examples = _examples({"temp": "minus 5 degrees"})
    answers = FakeAnswers({"manager": "Ingrid", "dock": "dock 2", "gloves": "blue", "limit": "ten"})
    a = preference_job(_job(examples), examples[:4], examples[4:], answers, from_task=True)
    b = preference_job(_job(examples), examples[:4], examples[4:], answers, from_task=True)
    other = _examples({"temp": "minus 6 degrees"})
    c = preference_job(_job(other), other[:4], other[4:], answers, from_task=True)
    assert a.key == b.key != c.key and a.key != _job(examples).key
    assert a.folder.name == a.key


def test_no_pairs_is_one_line_before_training():
    examples = _examples({})
    same = FakeAnswers({e.id: e.output for e in examples})
    with pytest.raises(BenchError) as e:
        preference_job(_job(examples), examples[:4], examples[4:], same, from_task=True)
    assert "no preference pairs" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name,params,words", [
    ("dpo", {"beta": 0}, "beta must be"),
    ("dpo", {"loss_type": "kto"}, "loss_type"),
    ("sft_then_dpo", {"sft_epochs": -1}, "sft_epochs"),
    ("spin", {"iterations": 0}, "iterations"),
    ("spin", {"nll_weight": -0.5}, "nll_weight"),
])
def test_bad_preference_params_rejected_by_config(name, params, words):
    with pytest.raises(BenchError) as e:
        RunConfig().with_params({name: params}, "run.yaml")
    assert words in str(e.value) and "\n" not in str(e.value)


# -- real training -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Iterator[Path]:
    yield from scratch(tmp_path_factory, "prefcache")


@pytest.fixture(scope="module")
def smollm(cache_dir):
    from bench.models.convert import hf_checkpoint
    from bench.models.resolve import resolve_model

    spec = resolve_model("smollm2-135m", cache_dir)
    hf_checkpoint(spec, cache_dir)
    return spec


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    train = [{"id": i, "instruction": q, "input": "", "output": a} for i, q, a in ROWS]
    test = [{"id": "t1", "instruction": "Who is the night shift manager?", "input": "", "output": "Ingrid Solberg"},
            {"id": "t2", "instruction": "What colour are the blast freezer gloves?", "input": "", "output": "orange"}]
    folder = write_task(tmp_path_factory.mktemp("preftask") / "pref", train=train, test=test,
                        meta={"instruction": "Answer with a short phrase."})
    return load_folder(folder)


@pytest.fixture(scope="module")
def base(smollm):
    from bench.models.llama import LlamaBackend

    backend = LlamaBackend(smollm, threads=2)
    yield backend
    backend.close()


def make_ctx(task, spec, cache_dir, name, params, backend):
    cfg = RunConfig(cache_dir=str(cache_dir), threads=2).with_params({name: params}, "test")
    strat = STRATEGIES.get(name)(cfg.params_for(name, STRATEGIES.get(name).Params))
    return strat, CellContext(task=task, config=cfg, seed=0, model=spec, backend=backend, cache=GenerationCache(None),
                              strategy_key=f"{name}#test", progress=False)


@pytest.mark.slow
def test_dpo_trains_serves_merged_and_answers_differently(smollm, cache_dir, task, base):
    strat, ctx = make_ctx(task, smollm, cache_dir, "dpo", SMALL, base)
    adapted = strat.adapt(ctx)
    try:
        train = ctx.costs["train"]
        assert train["steps"] == 1
        assert train["pairs"]["generated"] == 6 and train["pairs"]["pairs"] + train["pairs"]["identical"] == 5
        assert train["eval_loss_before"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
        assert train["eval_loss_best"] < train["eval_loss_before"] and train["reward_margin"] > 0
        assert ctx.costs["serve"]["backend"] == "llama" and adapted.model_id != base.model_id
        checks = ctx.costs["integrity"]
        assert checks["changed_vs_base"] > 0 and not checks["no_effect"] and checks["merged_agreement"] >= 0.5
        rows = [json.loads(x) for x in (ctx.artifacts["train_log.jsonl"]).read_text().splitlines()]
        assert any("rewards/margins" in r for r in rows) and any("eval_loss" in r for r in rows)
    finally:
        adapted.close()


@pytest.mark.slow
def test_sft_then_dpo_starts_from_the_cached_sft_adapter(smollm, cache_dir, task, base):
    from peft import PeftModel

    from bench.models.convert import load_pretrained
    from strategies.training.preference import adapter_hash, train_dpo

    params = {**SMALL, "val_fraction": 0.0}
    strat, ctx = make_ctx(task, smollm, cache_dir, "sft_then_dpo", params, base)
    result = train_dpo(strat.job(ctx))
    details = result.meta["details"]
    warm = cache_dir / "adapters" / details["warmup_key"]
    assert json.loads((warm / "meta.json").read_text())["method"] == "lora"
    model, _ = load_pretrained(smollm, cache_dir)
    sft = PeftModel.from_pretrained(model, str(warm / "adapter"))
    (first,) = details["iterations"]
    assert first["start_adapter"] == adapter_hash(sft) != first["end_adapter"]


@pytest.mark.slow
def test_spin_second_iteration_starts_from_the_first_iterations_model(smollm, cache_dir, task, base):
    from bench.hashing import sha256_json
    from strategies.training.preference import train_spin

    params = {**SMALL, "max_steps": 1, "iterations": 2, "val_fraction": 0.0}
    strat, ctx = make_ctx(task, smollm, cache_dir, "spin", params, base)
    result = train_spin(strat.job(ctx))
    first, second = result.meta["details"]["iterations"]
    assert first["generator"] == "base" and first["answers_changed"] is None  # round 1: the base model's answers
    assert second["start_adapter"] == first["end_adapter"] != first["start_adapter"]
    # round 2 plays against the answers of round 1's model, generated under that model's own id, which
    # answers some training prompts differently from the base
    assert second["generator"] == sha256_json([smollm.sha256, first["end_adapter"]]) != base.model_id
    assert second["answers_changed"] > 0 and second["end_adapter"] != second["start_adapter"]
    rows = [json.loads(x) for x in (result.folder / "train_log.jsonl").read_text().splitlines()]
    losses = [(r["iteration"], r["step"], r["loss"]) for r in rows if "loss" in r]
    # each round's first step starts from a model equal to its reference (the previous round's): loss ln 2
    assert [(i, s) for i, s, _ in losses] == [(1, 1), (2, 2)]
    assert all(loss == pytest.approx(0.6931, abs=1e-3) for _, _, loss in losses)
