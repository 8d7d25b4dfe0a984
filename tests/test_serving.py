"""Every arm of a model is served alike: an identity adapter (LoRA B = 0), merged and exported, answers exactly
as the base exported through the same path, and the integrity checks flag it as having no effect."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from bench.config import RunConfig
from bench.models.llama import LlamaBackend
from bench.models.resolve import resolve_model
from bench.models.serving import DEFAULT_FORMAT, served_spec
from bench.prompts import build_messages
from bench.run.cache import GenerationCache
from bench.run.context import CellContext
from bench.run.plan import resolve_task
from bench.types import Call


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    cache = tmp_path_factory.mktemp("serve_cache")
    return resolve_model("smollm2-135m", cache), cache


def identity_adapter(spec, cache, folder):
    """A LoRA adapter straight from peft's initialisation: B = 0, so it changes nothing."""
    import torch
    from peft import LoraConfig, get_peft_model

    from bench.models.convert import load_pretrained
    from strategies.training.methods import METHODS
    from strategies.training.weights import save_trained

    model, _ = load_pretrained(spec, cache, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert all(float(p.abs().sum()) == 0.0 for n, p in peft_model.named_parameters() if "lora_B" in n)
    save_trained(peft_model, METHODS["lora"], folder / "adapter")
    return SimpleNamespace(folder=folder)


@pytest.mark.slow
def test_identity_adapter_served_merged_reproduces_the_base_exactly(smollm, tmp_path):
    from strategies.finetune import integrity, merged_gguf
    from strategies.training.methods import METHODS

    spec, cache = smollm
    result = identity_adapter(spec, cache, tmp_path / "adapter_folder")
    merged, export = merged_gguf(spec, cache, METHODS["lora"], result.folder, "f16")
    base_spec, _ = served_spec(spec, cache, "f16")
    task = resolve_task("demo")
    calls = [Call(tuple(build_messages(task, ex)), None) for ex in task.test[:8]]
    cfg = RunConfig().replace(out=str(tmp_path / "out"), cache_dir=str(cache))
    base = LlamaBackend(base_spec, threads=2)
    adapted = LlamaBackend(base_spec.__class__(**{**base_spec.__dict__, "path": merged, "sha256": "identity"}),
                           threads=2, model_id="identity")
    try:
        def ctx(backend):
            return CellContext(task=task, config=cfg, seed=0, model=spec, backend=backend, cache=GenerationCache(None),
                               strategy_key="zero_shot#x", progress=False)

        a, b = ctx(base).generate_many(calls), ctx(adapted).generate_many(calls)
        assert [g.output for g in a] == [g.output for g in b]
        assert export["export_seconds"] > 0
        strategy = SimpleNamespace(name="lora", method=METHODS["lora"])
        checks = integrity(ctx(adapted), base, adapted, SimpleNamespace(key="identity"), result, strategy)
        assert checks["no_effect"] and checks["changed_vs_base"] == 0 and checks["prompts"] == 8
        assert 0.0 <= checks["merged_agreement"] <= 1.0
    finally:
        base.close()
        adapted.close()


def test_every_arm_of_a_run_is_served_in_one_format(tmp_path):
    from bench.run.pool import ModelPool

    spec = resolve_model("smollm2-135m", tmp_path)
    pool = ModelPool(RunConfig().replace(out=str(tmp_path)))
    assert pool.serving(spec)["format"] == "f16" and pool.serving(spec)["backend"] == "llama"
    native = ModelPool(RunConfig().replace(out=str(tmp_path), serve_format="native"))
    assert native.serving(spec)["format"] == "native"


@pytest.mark.slow
def test_every_gguf_type_bench_exports_loads_and_answers_like_f32(smollm, tmp_path):
    """bf16 (and the other export types) are real GGUF types llama.cpp reads: the weight matrices carry the
    type, and greedy answers of the lossless f16 export equal f32's; bf16's agree on most prompts."""
    from gguf import GGMLQuantizationType, GGUFReader

    from bench.types import GGUF_TYPES, GenParams, GenRequest

    spec, cache = smollm
    prompts = ["The capital of France is", "Water boils at", "The largest planet is", "One plus one equals"]
    answers = {}
    for fmt in GGUF_TYPES:
        served, _ = served_spec(spec, cache, fmt)
        types = {t.tensor_type for t in GGUFReader(str(served.path)).tensors if len(t.shape) == 2}
        assert GGMLQuantizationType[fmt.upper()] in types, (fmt, types)
        backend = LlamaBackend(served, threads=2)
        try:
            answers[fmt] = [g.output for g in backend.generate_batch(
                [GenRequest(p, GenParams(max_new_tokens=8), seed=0) for p in prompts])]
        finally:
            backend.close()
            if fmt != DEFAULT_FORMAT:  # the store is shared by the session; keep CI's disk small
                served.path.unlink()
        assert all(a.strip() for a in answers[fmt]), (fmt, answers[fmt])
    assert answers["f16"] == answers["f32"]
    assert sum(a == b for a, b in zip(answers["bf16"], answers["f32"])) >= 3


@pytest.mark.slow
def test_results_folders_share_one_model_store(smollm, tmp_path, monkeypatch):
    """Under BENCH_MODELS_DIR (the test session sets one) two results folders serve the same exported file
    and write no weights of their own; without it each folder's cache holds its own store."""
    from bench.models.store import ENV, models_dir

    spec, _ = smollm
    a, _ = served_spec(spec, tmp_path / "a" / ".cache", DEFAULT_FORMAT)
    b, _ = served_spec(spec, tmp_path / "b" / ".cache", DEFAULT_FORMAT)
    assert a.path == b.path and a.path.is_relative_to(os.environ[ENV]) and a.path.stat().st_size > 100e6
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    monkeypatch.delenv(ENV)
    assert models_dir(tmp_path / "a" / ".cache") == tmp_path / "a" / ".cache" / "models"
