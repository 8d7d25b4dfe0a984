"""The fine-tuning family on the packaged SmolLM2: every method trains, LoRA learns only adapters and
lowers the loss, full changes base weights, QLoRA is 4-bit, the merged GGUF runs in llama.cpp, the
adapter cache makes a second run train nothing, and bad input fails before training.

The GGUF -> safetensors conversion happens once per session (set BENCH_TEST_CACHE to a folder to keep
it across runs). Training settings are tiny: a step or a few on a handful of examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.plugins import load_plugins
from bench.registry import STRATEGIES
from bench.run.cache import GenerationCache
from bench.run.context import CellContext
from bench.taskio import load_folder
from tests.conftest import scratch, write_task

load_plugins()
from strategies.training.methods import METHODS  # noqa: E402

FT_METHODS = list(METHODS)
TINY = {"max_steps": 1, "batch_size": 2, "max_length": 48, "val_fraction": 0.0, "threads": 2}


@pytest.fixture(scope="module")
def ft_cache(tmp_path_factory) -> Iterator[Path]:
    yield from scratch(tmp_path_factory, "ftcache")


@pytest.fixture(scope="module")
def smollm(ft_cache):
    """The packaged SmolLM2 spec with its safetensors conversion done once for the session."""
    from bench.models.convert import hf_checkpoint
    from bench.models.resolve import resolve_model

    spec = resolve_model("smollm2-135m", ft_cache)
    hf_checkpoint(spec, ft_cache)
    return spec


@pytest.fixture(scope="module")
def ft_task(tmp_path_factory):
    rows = [("temp", "What temperature is freezer hall B kept at?", "minus 28 degrees Celsius"),
            ("manager", "Who is the night shift manager?", "Ingrid Solberg"),
            ("dock", "Which loading dock receives seafood deliveries?", "dock 4"),
            ("gloves", "What colour are the blast freezer gloves?", "orange"),
            ("limit", "How many minutes may a worker stay in the blast freezer?", "20 minutes"),
            ("halls", "How many storage halls are there?", "five")]
    train = [{"id": i, "instruction": q, "input": "", "output": a} for i, q, a in rows]
    test = [{"id": "t1", "instruction": "Who is the night shift manager?", "input": "", "output": "Ingrid Solberg"}]
    docs = [{"id": "d1", "title": "Handbook: manager", "text": "The night shift is run by Ingrid Solberg."},
            {"id": "d2", "title": "Handbook: dock", "text": "Seafood deliveries are received at dock 4."}]
    folder = write_task(tmp_path_factory.mktemp("fttask") / "ft", train=train, test=test, docs=docs,
                        meta={"instruction": "Answer with a short phrase."})
    return load_folder(folder)


def make_ctx(task, spec, cache_dir, tmp_path, name, params, backend=None, seed=0):
    cfg = RunConfig(cache_dir=str(cache_dir), threads=2).with_params({name: params}, "test")
    strat = STRATEGIES.get(name)(cfg.params_for(name, STRATEGIES.get(name).Params))
    ctx = CellContext(task=task, config=cfg, seed=seed, model=spec, backend=backend, cache=GenerationCache(None),
                      strategy_key=f"{name}#test")
    return strat, ctx


# -- bad input: one-line BenchError before any training -----------------------------------------------
@pytest.mark.parametrize("name,params,words", [
    ("lora", {"r": 0}, "r must be"),
    ("lora", {"learning_rate": 2.0}, "learning_rate"),
    ("prefix", {"eval_backend": "gguf"}, "eval_backend"),
    ("adalora", {"r": 16, "init_r": 8}, "init_r"),
    ("lora", {"rank": 8}, "unknown key"),
])
def test_bad_params_rejected_by_config(name, params, words):
    with pytest.raises(BenchError) as e:
        RunConfig().with_params({name: params}, "run.yaml")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_too_little_data_for_validation():
    from bench.types import Example
    from strategies.training.data import split_train_val

    ex = [Example(str(i), "q", "", "a") for i in range(2)]
    with pytest.raises(BenchError, match="val_fraction"):
        split_train_val(ex, 0.2, seed=0)
    train, val = split_train_val([Example(str(i), "q", "", "a") for i in range(10)], 0.2, seed=0)
    assert len(val) == 2 and len(train) == 8
    assert split_train_val([Example(str(i), "q", "", "a") for i in range(10)], 0.2, seed=0)[1] == val


def test_architecture_and_range_checks_before_training(smollm, ft_cache, ft_task, tmp_path, monkeypatch):
    import strategies.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "_train", lambda *a, **k: pytest.fail("trained despite bad input"))
    strat, ctx = make_ctx(ft_task, smollm, ft_cache, tmp_path, "freeze", {**TINY, "train_top_layers": 99})
    with pytest.raises(BenchError, match="train_top_layers"):
        strat.adapt(ctx)
    no_docs = ft_task.__class__(**{**ft_task.__dict__, "docs": ()})
    strat, ctx = make_ctx(no_docs, smollm, ft_cache, tmp_path, "cpt_lora", TINY)
    assert "docs.jsonl" in strat.check(no_docs)  # refused when the run is planned, before any model work
    assert strat.check(ft_task) is None


def test_every_method_is_registered_with_params():
    for name in FT_METHODS:
        cls = STRATEGIES.get(name)
        assert cls.family == "fine-tuning" and cls.description and cls.Params().validate() is None
        assert cls.Params is METHODS[name].params and cls.description == METHODS[name].description


# -- training ------------------------------------------------------------------------------------------
@pytest.mark.slow
# lora: the lora_run fixture below; the preference and generator loops have their own tests (test_preference.py,
# test_gan_prompt.py): they need a backend to answer the training prompts
@pytest.mark.parametrize("name", [m for m in FT_METHODS if m != "lora" and METHODS[m].loop == "sft"])
def test_each_method_trains_a_step(name, smollm, ft_cache, ft_task):
    from strategies.training.trainer import train_adapter

    extra = {"target_modules": "q_proj"} if name == "loftq" else {}  # LoftQ's SVD init is the slow part
    strat, ctx = make_ctx(ft_task, smollm, ft_cache, None, name, {**TINY, **extra})
    res = train_adapter(strat.job(ctx))
    m = res.meta
    assert m["steps"] == 1 and m["trainable_params"] > 0 and m["train_loss_first"] > 0
    assert 0 < m["trainable_share"] <= 1 and m["adapter_bytes"] > 0
    files = {p.name for p in (res.folder / "adapter").iterdir()}
    assert files and all(f.endswith((".safetensors", ".json")) for f in files)


@pytest.fixture(scope="module")
def lora_run(smollm, ft_cache, ft_task, tmp_path_factory):
    """One real LoRA fine-tune (a few steps, validation on) served as a merged GGUF by llama.cpp."""
    from bench.models.llama import LlamaBackend

    base = LlamaBackend(smollm, threads=2)
    work = tmp_path_factory.mktemp("lora_cell")
    params = {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "val_fraction": 0.34, "eval_every": 2,
              "max_length": 64, "threads": 2}
    strat, ctx = make_ctx(ft_task, smollm, ft_cache, work, "lora", params, backend=base)
    backend = strat.adapt(ctx)
    yield strat, ctx, backend, base
    backend.close()
    base.close()


@pytest.mark.slow
def test_lora_lowers_loss_and_logs(lora_run):
    _, ctx, _, _ = lora_run
    cost = ctx.costs["train"]
    assert cost["cached"] is False and cost["steps"] == 4
    assert cost["eval_loss_best"] < cost["eval_loss_before"]
    assert 0 < cost["trainable_share"] < 0.1 and cost["tokens"] > 0 and cost["peak_rss_mb"] > 0
    rows = [json.loads(l) for l in ctx.artifacts["train_log.jsonl"].read_text().splitlines()]
    assert any("loss" in r for r in rows) and any("eval_loss" in r for r in rows)
    assert all("step" in r and "epoch" in r for r in rows)
    assert ctx.artifacts["loss.png"].stat().st_size > 1000


@pytest.mark.slow
def test_lora_changes_only_adapter_weights(lora_run, smollm, ft_cache):
    import torch

    from bench.models.convert import load_pretrained
    from strategies.training.methods import get_method
    from strategies.training.weights import load_trained

    _, ctx, _, _ = lora_run
    folder = ft_cache / "adapters" / ctx.costs["train"]["adapter_key"] / "adapter"
    base, _ = load_pretrained(smollm, ft_cache, dtype=torch.float32)
    tuned, _ = load_trained(smollm, ft_cache, get_method("lora"), folder, merged=False)
    base_sd = base.state_dict()
    changed_lora = 0
    for name, t in tuned.state_dict().items():
        if "lora_" in name:
            changed_lora += int("lora_B" in name and t.abs().sum() > 0)
            continue
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(t, base_sd[plain]), name
    assert changed_lora > 0


@pytest.mark.slow
def test_merged_gguf_loads_in_llama_cpp_and_generates(lora_run, ft_task):
    from bench.prompts import build_messages

    _, ctx, backend, base = lora_run
    assert backend.name == "llama" and backend.model_id != base.model_id
    assert ctx.costs["serve"]["backend"] == "llama"
    gen = backend.generate(backend.render(build_messages(ft_task, ft_task.test[0])), ctx.gen_params(max_new_tokens=12), seed=0)
    assert gen.output.strip() and gen.completion_tokens > 0


@pytest.mark.slow
def test_adapter_cache_hit_trains_nothing(lora_run, smollm, ft_cache, ft_task, tmp_path, monkeypatch):
    import strategies.training.trainer as trainer_module

    strat, first, _, base = lora_run
    monkeypatch.setattr(trainer_module, "_train", lambda *a, **k: pytest.fail("trained again on a cache hit"))
    params = {f: getattr(strat.params, f) for f in ("max_steps", "batch_size", "learning_rate", "val_fraction",
                                                    "eval_every", "max_length", "threads")}
    strat2, ctx = make_ctx(ft_task, smollm, ft_cache, tmp_path, "lora", params, backend=base)
    backend = strat2.adapt(ctx)
    try:
        assert ctx.costs["train"]["cached"] is True
        assert ctx.costs["train"]["adapter_key"] == first.costs["train"]["adapter_key"]
        assert ctx.costs["serve"]["exported_now"] is False
        assert ctx.artifacts["train_log.jsonl"].is_file()
    finally:
        backend.close()


@pytest.mark.slow
def test_full_changes_base_weights(smollm, ft_cache, ft_task):
    import torch
    from safetensors.torch import load_file

    from bench.models.convert import load_pretrained
    from strategies.training.trainer import train_adapter

    strat, ctx = make_ctx(ft_task, smollm, ft_cache, None, "full", {**TINY, "learning_rate": 1e-4})
    res = train_adapter(strat.job(ctx))
    assert res.meta["trainable_share"] == 1.0
    trained = load_file(str(res.folder / "adapter" / "weights.safetensors"))
    base, _ = load_pretrained(smollm, ft_cache, dtype=torch.float32)
    base_sd = base.state_dict()
    differ = sum(not torch.equal(t, base_sd[n]) for n, t in trained.items())
    assert differ > len(trained) // 2


@pytest.mark.slow
def test_qlora_base_layers_are_4bit(smollm, ft_cache):
    import bitsandbytes as bnb
    import torch

    from bench.models.convert import load_pretrained
    from strategies.training.methods import get_method, quantization_config
    from strategies.training.params import QLoraParams
    from strategies.training.weights import prepare

    q = quantization_config("cpu")
    assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant and q.bnb_4bit_compute_dtype == torch.float32
    model, _ = load_pretrained(smollm, ft_cache, dtype=torch.float32, quantization_config=q)
    model = prepare(model, get_method("qlora"), QLoraParams(), total_steps=1)
    four_bit = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) >= 7 * model.config.num_hidden_layers
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


@pytest.mark.slow
def test_hf_backend_matches_template_and_generates(smollm, ft_cache, ft_task):
    from bench.models.hf import HFBackend
    from bench.models.llama import LlamaBackend
    from bench.prompts import build_messages
    from bench.types import GenParams

    hf = HFBackend(smollm, ft_cache, threads=2)
    ll = LlamaBackend(smollm, threads=2)
    try:
        msgs = build_messages(ft_task, ft_task.test[0])
        assert hf.render(msgs) == ll.render(msgs)
        assert hf.model_id == smollm.sha256 and hf.name == "hf"
        gen = hf.generate(hf.render(msgs), GenParams(max_new_tokens=16, stop=("\n",)), seed=0)
        assert "\n" not in gen.output and gen.completion_tokens > 0
        assert hf.count_tokens("hello world") >= 2
        assert hf.loglikelihood("The capital of France is", " Paris") > hf.loglikelihood("The capital of France is", " banana")
    finally:
        ll.close()


@pytest.mark.slow
def test_docs_recipe_trains_on_the_documents_at_exactly_the_token_budget(smollm, ft_cache, ft_task):
    from strategies.training.trainer import train_adapter

    params = {**TINY, "max_steps": 0, "epochs": 1.0, "recipe": "docs", "train_tokens": 70}
    strat, ctx = make_ctx(ft_task, smollm, ft_cache, None, "lora", params)
    job = strat.job(ctx)
    assert [r.id for r in job.train] == ["doc:d1", "doc:d2"]  # documents only, no pairs
    m = train_adapter(job).meta
    assert m["tokens"] == 70 and m["steps"] >= 1  # the two short documents cycled to the budget, one pass
