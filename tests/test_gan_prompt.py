"""gan_prompt (seed 004's method) on the packaged SmolLM2.

The generator starts as a static soft prompt, depends on the input once trained and ignores padding; a
real adversarial run through adapt() logs both losses and the discriminator's accuracy, never changes the
frozen model (hashed before and after, in memory and on disk), and is served by the transformers backend
with the generated tokens in front of each prompt: batched answers equal one-at-a-time answers and the
first token equals a plain forward pass, and the answers differ from the base model's.
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

ROWS = [("temp", "What temperature is freezer hall B kept at?", "minus 28 degrees Celsius"),
        ("manager", "Who is the night shift manager?", "Ingrid Solberg"),
        ("dock", "Which loading dock receives seafood deliveries?", "dock 4"),
        ("gloves", "What colour are the blast freezer gloves?", "orange"),
        ("limit", "How many minutes may a worker stay in the blast freezer?", "20 minutes"),
        ("halls", "How many storage halls are there?", "five")]
# two epochs of one step each (5 train items, batch 5): the discriminator's held-out accuracy is measured
# on the second epoch's fresh fakes
SMALL = {"max_steps": 0, "epochs": 2, "batch_size": 5, "max_length": 64, "val_fraction": 0.2, "eval_every": 1,
         "threads": 2, "num_virtual_tokens": 4, "answer_tokens": 8, "chance_margin": 0.0, "patience": 0}


# -- the networks (no model) ---------------------------------------------------------------------------------------
def test_generator_starts_static_depends_on_the_input_and_ignores_padding():
    import torch

    from strategies.training.gan_prompt import _modules

    torch.manual_seed(0)
    generator_cls, disc_cls = _modules()
    init = torch.randn(3, 8)
    gen = generator_cls(8, 3, 5, init=init)
    a, b = torch.randn(1, 4, 8), torch.randn(1, 6, 8)
    ones = torch.ones(1, 4, dtype=torch.long)
    # at the start: the static soft prompt, whatever the input
    assert torch.equal(gen(a, ones)[0], init) and torch.equal(gen(b, torch.ones(1, 6, dtype=torch.long))[0], init)
    torch.nn.init.normal_(gen.out.weight)
    out_a = gen(a, ones)
    assert out_a.shape == (1, 3, 8) and not torch.allclose(out_a, gen(b, torch.ones(1, 6, dtype=torch.long)))
    padded = torch.cat([a, torch.randn(1, 2, 8) * 100], dim=1)  # padding after the prompt, masked out
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    assert torch.allclose(gen(padded, mask), out_a, atol=1e-6)
    assert disc_cls(8, 4)(torch.randn(5, 8)).shape == (5,)


@pytest.mark.parametrize("params,words", [
    ({"eval_backend": "gguf"}, "eval_backend must be hf"),
    ({"num_virtual_tokens": 0}, "num_virtual_tokens"),
    ({"chance_margin": 0.5}, "chance_margin"),
    ({"adv_weight": -1}, "adv_weight"),
])
def test_bad_gan_params_rejected_by_config(params, words):
    with pytest.raises(BenchError) as e:
        RunConfig().with_params({"gan_prompt": params}, "run.yaml")
    assert words in str(e.value) and "\n" not in str(e.value)


# -- real training -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Iterator[Path]:
    yield from scratch(tmp_path_factory, "gancache")


@pytest.fixture(scope="module")
def smollm(cache_dir):
    from bench.models.convert import hf_checkpoint
    from bench.models.resolve import resolve_model

    spec = resolve_model("smollm2-135m", cache_dir)
    hf_checkpoint(spec, cache_dir)
    return spec


@pytest.fixture(scope="module")
def gan_run(smollm, cache_dir, tmp_path_factory):
    """One real adversarial run through adapt(), served by GanPromptBackend; the frozen model's files hashed
    before and after."""
    from bench.hashing import sha256_dir
    from bench.models.convert import hf_checkpoint
    from bench.models.llama import LlamaBackend

    train = [{"id": i, "instruction": q, "input": "", "output": a} for i, q, a in ROWS]
    test = [{"id": "t1", "instruction": "Who is the night shift manager?", "input": "", "output": "Ingrid Solberg"},
            {"id": "t2", "instruction": "How many storage halls are there?", "input": "", "output": "five"}]
    task = load_folder(write_task(tmp_path_factory.mktemp("gantask") / "gan", train=train, test=test,
                                  meta={"instruction": "Answer with a short phrase."}))
    on_disk = sha256_dir(hf_checkpoint(smollm, cache_dir))
    base = LlamaBackend(smollm, threads=2)
    cfg = RunConfig(cache_dir=str(cache_dir), threads=2).with_params({"gan_prompt": SMALL}, "test")
    strat = STRATEGIES.get("gan_prompt")(cfg.params_for("gan_prompt", STRATEGIES.get("gan_prompt").Params))
    ctx = CellContext(task=task, config=cfg, seed=0, model=smollm, backend=base, cache=GenerationCache(None),
                      strategy_key="gan_prompt#test", progress=False)
    adapted = strat.adapt(ctx)
    yield ctx, adapted, base, on_disk
    adapted.close()
    base.close()


@pytest.mark.slow
def test_gan_prompt_logs_both_losses_and_the_discriminator(gan_run):
    ctx, _, _, _ = gan_run
    train = ctx.costs["train"]
    assert train["steps"] == 2 and train["stop_reason"] == "epoch limit"
    first, second = train["gan_epochs"]
    assert first["disc_accuracy_heldout"] is None and 0.0 <= second["disc_accuracy_heldout"] <= 1.0
    assert first["generator"] != second["generator"]  # fakes come from the generator of each epoch
    assert train["disc_accuracy"] == second["disc_accuracy_heldout"] and train["disc_params"] > 0
    rows = [json.loads(x) for x in ctx.artifacts["train_log.jsonl"].read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 2 and all({"adv_loss", "disc_loss", "disc_accuracy"} <= set(r) for r in steps)
    assert sum("eval_loss" in r for r in rows) == 3  # before training and after each step
    # the generator is small beside the frozen model
    assert 0 < train["trainable_params"] < 0.01 * train["total_params"]


@pytest.mark.slow
def test_frozen_model_never_changes(gan_run, smollm, cache_dir):
    import torch

    from bench.hashing import sha256_dir
    from bench.models.convert import hf_checkpoint, load_pretrained
    from strategies.training.gan_prompt import weights_sha256

    ctx, _, _, on_disk = gan_run
    train = ctx.costs["train"]
    assert train["llm_unchanged"] is True
    assert sha256_dir(hf_checkpoint(smollm, cache_dir)) == on_disk
    fresh, _ = load_pretrained(smollm, cache_dir, dtype=torch.float32)
    assert weights_sha256(fresh) == train["llm_sha256"]  # what training hashed is the untouched base


@pytest.mark.slow
def test_served_generator_batches_like_single_calls_and_changes_answers(gan_run):
    import dataclasses

    import torch

    from bench.models.hf import HFBackend
    from bench.prompts import build_messages
    from bench.types import GenRequest

    ctx, adapted, _, _ = gan_run
    assert adapted.name == "hf" and ctx.costs["serve"]["backend"] == "hf"
    assert ctx.costs["integrity"]["changed_vs_base"] > 0
    prompts = [adapted.render(build_messages(ctx.task, ex)) for ex in ctx.task.test]
    params = ctx.gen_params(max_new_tokens=6, temperature=0.0)
    batched = adapted.generate_batch([GenRequest(p, params, 0) for p in prompts])
    single = [adapted.generate(p, params, 0) for p in prompts]
    assert [g.output for g in batched] == [g.output for g in single]
    # the first answer token is the argmax of a plain forward pass with the generated tokens in front
    ids = torch.tensor([adapted.tokenizer(prompts[0])["input_ids"]])
    with torch.no_grad():
        embeds = adapted.core.get_input_embeddings()(ids)
        virtual = adapted.generator(embeds, torch.ones_like(ids))
        logits = adapted.core(inputs_embeds=torch.cat([virtual, embeds], dim=1)).logits[0, -1]
    one = adapted.generate(prompts[0], dataclasses.replace(params, max_new_tokens=1, stop=()), 0)
    assert one.output == adapted.tokenizer.decode([int(logits.argmax())], skip_special_tokens=True)
    # scoring goes through the generated tokens too: it differs from the frozen model's own
    plain = HFBackend(adapted.spec, ctx.config.resolved_cache_dir(), model=adapted.core, tokenizer=adapted.tokenizer)
    assert adapted.loglikelihood(prompts[0], " Ingrid") != pytest.approx(plain.loglikelihood(prompts[0], " Ingrid"))
