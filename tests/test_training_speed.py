"""The training speed-ups change nothing that is learned: same loss from the faster paths, bf16 where the CPU has it.

bench trains on padding-free batches (examples flattened into one row), lets the LM head score only the
answer tokens, and autocasts to bf16 exactly where the CPU has native bf16 arithmetic. These tests check the
behaviour on the packaged SmolLM2 with a real LoRA; how fast it is is measured by benchmarks/training.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from bench.cpu import CpuInfo, cpu_info
from strategies.training.methods import METHODS, get_method
from tests.conftest import scratch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flags, quantized, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, False, True),  # AMD EPYC with AVX-512 BF16
    ({"avx2", "avx512f", "amx_tile", "amx_bf16"}, False, True),  # Xeon with AMX
    ({"avx2", "avx512f"}, False, False),  # AVX-512 without bf16: emulated bf16 is slower than float32
    ({"avx2", "fma"}, False, False),
    ({"avx2", "avx512f", "avx512_bf16"}, True, False),  # a 4-bit base keeps bitsandbytes' float32 compute
])
def test_bf16_autocast_follows_the_cpu_flags(flags, quantized, expected):
    from strategies.training.trainer import bf16_autocast

    method = next(m for m in METHODS.values() if m.quantized == quantized)
    assert bf16_autocast("cpu", method, CpuInfo("a CPU", frozenset(flags), 2, 2)) is expected


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Iterator[Path]:
    yield from scratch(tmp_path_factory, "speedcache")


@pytest.fixture(scope="module")
def smollm(cache):
    from bench.models.convert import hf_checkpoint
    from bench.models.resolve import resolve_model

    spec = resolve_model("smollm2-135m", cache)
    hf_checkpoint(spec, cache)
    return spec


@pytest.fixture(scope="module")
def records(smollm, cache):
    """The demo task's train split rendered as bench trains on it (prompts of different lengths, short answers)."""
    from bench.models.convert import load_pretrained
    from bench.models.hf import template_for
    from bench.taskio import load_folder
    from strategies.training.data import sft_records

    _, tok = load_pretrained(smollm, cache)
    task = load_folder(ROOT / "tasks" / "demo")
    return sft_records(task, task.train, template_for(smollm, tok))


def _lora_model(smollm, cache, fused_head: bool):
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from bench.models.convert import load_pretrained
    from strategies.training.params import LoraParams
    from strategies.training.weights import prepare

    torch.manual_seed(0)
    model, tok = load_pretrained(smollm, cache, dtype=torch.float32)
    if fused_head:  # as SFTTrainer does before training
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    model = prepare(model, get_method("lora"), LoraParams(), 10)
    with torch.no_grad():  # a trained-looking adapter: lora_B starts at zero, which would hide its gradients' path
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.eval()  # dropout off: both paths see the same function
    return model, tok


def _batch(rows: list[dict], tok, padding_free: bool) -> dict:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [{"input_ids": r["input_ids"],
                 "labels": [t if m else -100 for t, m in zip(r["input_ids"], r["completion_mask"])]} for r in rows]
    collate = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id or 0, padding_free=padding_free)
    return dict(collate(examples))


@pytest.mark.slow
def test_padding_free_batch_gives_the_padded_loss(smollm, cache, records):
    import torch

    from strategies.training.data import tokenize

    model, tok = _lora_model(smollm, cache, fused_head=False)
    rows = tokenize(records[:6], tok, 256)
    lengths = {len(r["input_ids"]) for r in rows}
    assert len(lengths) > 1  # the padded batch really pads
    padded, flat = _batch(rows, tok, padding_free=False), _batch(rows, tok, padding_free=True)
    assert flat["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert padded["input_ids"].numel() > flat["input_ids"].numel()
    with torch.no_grad():  # no KV cache, as in training: with one, transformers does not look for packed rows
        loss_padded = float(model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                                  labels=padded["labels"], use_cache=False).loss)
        loss_flat = float(model(input_ids=flat["input_ids"], position_ids=flat["position_ids"],
                                labels=flat["labels"], use_cache=False).loss)
        # without its per-example positions the flattened row is one long text, and the loss says so
        loss_joined = float(model(input_ids=flat["input_ids"], labels=flat["labels"], use_cache=False).loss)
    assert loss_flat == pytest.approx(loss_padded, rel=1e-4)
    assert abs(loss_joined - loss_padded) > 1e-2


@pytest.mark.slow
def test_head_on_labelled_rows_gives_the_same_loss_and_gradients(smollm, cache, records):
    import torch

    from strategies.training.data import tokenize
    from strategies.training.trainer import score_labelled_tokens_only

    model, tok = _lora_model(smollm, cache, fused_head=True)
    rows = tokenize(records[:6], tok, 256)
    batch = _batch(rows, tok, padding_free=True)
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "labels")}
    n_labelled = int((batch["labels"] != -100).sum())
    assert n_labelled < batch["input_ids"].numel() / 3  # mostly prompt tokens: the case this path is for

    def run():
        model.zero_grad(set_to_none=True)
        out = model(**inputs, fused_lm_head=True)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return out, grads

    all_rows, grads_all = run()
    assert score_labelled_tokens_only(model)
    labelled, grads_labelled = run()
    assert float(labelled.loss) == pytest.approx(float(all_rows.loss), rel=1e-5)
    mask = all_rows.label_mask
    assert torch.equal(labelled.label_mask, mask)
    for field in ("log_probs", "entropy"):
        assert torch.allclose(getattr(labelled, field)[mask], getattr(all_rows, field)[mask], rtol=1e-4, atol=1e-5)
    assert torch.equal(labelled.is_top1[mask], all_rows.is_top1[mask])
    assert set(grads_labelled) == set(grads_all) and grads_all
    for name, g in grads_all.items():
        assert torch.allclose(grads_labelled[name], g, rtol=1e-3, atol=1e-6), name
    with torch.no_grad():  # without fused_lm_head the model is untouched: logits for generation
        logits = model(input_ids=inputs["input_ids"][:, :8]).logits
    assert logits.shape[-1] == model.get_base_model().get_output_embeddings().weight.shape[0]


@pytest.mark.slow
@pytest.mark.parametrize("has_bf16", [True, False])
def test_training_autocasts_exactly_when_the_cpu_has_bf16(has_bf16, smollm, cache, records, monkeypatch):
    """A real training step through train_adapter: the frozen layers compute in bf16 only on a bf16 CPU, and the
    adapter weights the optimizer updates stay float32 either way."""
    import torch
    from transformers import TrainerCallback

    import strategies.training.trainer as trainer_module
    from strategies.training.params import LoraParams
    from strategies.training.trainer import TrainJob, train_adapter

    real = cpu_info()
    flags = (real.flags | {"avx512_bf16"}) if has_bf16 else (real.flags - {"avx512_bf16", "amx_bf16"})
    monkeypatch.setattr(trainer_module, "cpu_info", lambda: CpuInfo(real.model, frozenset(flags), 2, 2))
    seen: dict = {}

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            layer = next(m for n, m in model.named_modules() if n.endswith("q_proj") and hasattr(m, "lora_A"))

            def hook(module, inputs, output):
                if module.training:
                    seen["output"] = output.dtype
                    seen["adapter"] = layer.lora_A["default"].weight.dtype

            layer.base_layer.register_forward_hook(hook)

    params = LoraParams(max_steps=1, batch_size=4, val_fraction=0.0, max_length=128, threads=2)
    job = TrainJob(smollm, "lora", params, records[:4], [], int(has_bf16) + 10, cache, callbacks=(Probe(),))
    shutil.rmtree(job.folder, ignore_errors=True)  # a kept test cache may hold it from an earlier run
    res = train_adapter(job)
    assert not res.cached
    assert seen["output"] == (torch.bfloat16 if has_bf16 else torch.float32)
    assert seen["adapter"] == torch.float32
    assert res.meta["compute_dtype"] == ("bfloat16" if has_bf16 else "float32")
    assert res.meta["lm_head_rows"] == "labelled"
