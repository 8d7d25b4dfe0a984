"""The fine-tuning family: LoRA, QLoRA, full and the seeds' other methods behind one trainer.

Every strategy here is a small declaration (name, description, Params); the work is shared:
bench.training trains on the task's train split rendered with the model's own template (answer-only
loss, seeded validation slice, early stopping, loss log and plot), caches the result by content, and
`adapt` returns a Backend for evaluation: by default the merged model exported to GGUF and served by
llama.cpp like every other arm, or (eval_backend: hf) the unmerged adapter through transformers.
Because adapt() returns a Backend, `lora+rag` and `lora+few_shot` stack with no extra code.

A method names its training loop (`TRAIN_LOOPS`): the shared SFT trainer, DPO or SPIN (preference pairs
whose rejected side is the model's own answer, generated through the cell's batched, cached generation),
or gan_prompt's adversarial loop (served by its own transformers backend, the generator before the model).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from bench import atomic
from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.models.convert import (
    SOURCE_FILE,
    export_gguf,
    hf_checkpoint,
    weights_location,
)
from bench.models.hf import HFBackend, template_for
from bench.models.llama import LlamaBackend
from bench.models.resolve import ModelSpec
from bench.models.serving import cuda_bf16, export_format, resolve_format
from bench.prompts import build_messages
from bench.registry import STRATEGIES
from bench.results import read_json
from bench.types import Call
from strategies.base import FinetuneStrategy
from strategies.training.data import recipe_problem, recipe_records, recipe_split, recipe_uses_docs, sft_records
from strategies.training.gan_prompt import GanJob, serving_backend, train_gan_prompt
from strategies.training.methods import METHODS, Method, get_method
from strategies.training.preference import Answerer, preference_job, train_dpo, train_spin
from strategies.training.trainer import LOG_FILE, PLOT_FILE, TrainJob, train_adapter
from strategies.training.weights import load_trained

if TYPE_CHECKING:
    from bench.models.backend import Backend
    from bench.run.context import CellContext

TRAIN_LOOPS = {"sft": train_adapter, "dpo": train_dpo, "spin": train_spin, "gan": train_gan_prompt}  # Method.loop
SELF_ANSWERS = "self-answers"  # the generation-cache strategy key of a model's own answers to training prompts


class _Finetune(FinetuneStrategy):
    """Shared adapt(): data -> train (or cache hit) -> costs -> evaluation backend."""

    @property
    def method(self) -> Method:
        """Its row of the method table (by the class's registered name, so `lora@r64` is still lora)."""
        return get_method(type(self).name)

    def reads(self, task) -> tuple[str, ...]:
        return ("train", "docs") if recipe_uses_docs(self.params.recipe) else ("train",)

    def check(self, task) -> Optional[str]:
        p = self.params
        if self.method.loop != "sft" and (p.recipe != "qa" or p.train_tokens or p.unknown_share >= 0):
            return (f"params.{self.name}: recipe, train_tokens and unknown_share apply to the SFT methods (lora, full, "
                    f"...); {type(self).name} trains on the pairs with its own loop: leave them at qa, 0 and -1")
        problem = recipe_problem(p.recipe, task)
        if problem:
            return f"strategy {self.name} on task {task.name}: params.{self.name}.{problem}"
        try:
            recipe_split(p.recipe, task.train, p.val_fraction, 0, option=f"{self.name}.val_fraction")
        except BenchError as e:
            return f"strategy {self.name} on task {task.name}: {e}"
        if not task.train:
            return f"strategy {self.name}: task {task.name} has no train items to learn from"
        return None

    def job(self, ctx: "CellContext") -> Any:
        p = self.params
        template = self._template(ctx)
        train, val = recipe_split(p.recipe, ctx.task.train, p.val_fraction, ctx.seed, option=f"{self.name}.val_fraction")
        if p.unknown_share >= 0:
            pool = train[: p.mix_pool] if p.mix_pool else train
            train = known_unknown_mix(ctx, pool, p.unknown_share, p.mix_size, option=f"params.{self.name}")
        records = recipe_records(p.recipe, ctx.task, train, template)
        loop = self.method.loop
        cls, extra = TrainJob, {}
        if loop == "gan":
            cls, extra = GanJob, {"examples": tuple(train), "val_examples": tuple(val), "answers": self_answers(ctx)}
        job = cls(ctx.model, self.method.name, p, records, sft_records(ctx.task, val, template), ctx.seed,
                  ctx.config.resolved_cache_dir(), threads=ctx.config.threads, progress=False, **extra)
        if loop in ("dpo", "spin"):  # pairs: the task's `rejected` (dpo) or the base model's own answers
            job = preference_job(job, train, val, self_answers(ctx), from_task=loop == "dpo")
        return job

    def _template(self, ctx: "CellContext") -> Any:
        """The template the evaluation backend will use (the base backend's, when one is loaded)."""
        if ctx.backend is not None and getattr(ctx.backend, "template", None) is not None:
            return ctx.backend.template
        from transformers import AutoTokenizer

        where = weights_location(ctx.model, ctx.config.resolved_cache_dir())
        return template_for(ctx.model, AutoTokenizer.from_pretrained(where))

    def adapt(self, ctx: "CellContext") -> "Backend":
        base = ctx.backend
        job = self.job(ctx)
        result = TRAIN_LOOPS[self.method.loop](job)
        for name in (LOG_FILE, PLOT_FILE):  # the cell's folder gets the loss log and plot
            if (result.folder / name).is_file():
                ctx.artifacts[name] = result.folder / name
        m = result.meta
        ctx.record_cost(
            "train", method=self.name, wall_seconds=m["wall_seconds"], train_seconds=m["train_seconds"],
            conversion_seconds=conversion_seconds(ctx.model, ctx.config.resolved_cache_dir()),
            peak_rss_mb=m["peak_rss_mb"], peak_cuda_mb=m["peak_cuda_mb"], trainable_params=m["trainable_params"],
            total_params=m["total_params"], trainable_share=m["trainable_share"], tokens=m["tokens"],
            tokens_per_second=m["tokens_per_second"], adapter_bytes=m["adapter_bytes"], epochs=m["epochs"],
            best_epoch=m["best_epoch"], steps=m["steps"], stopped_early=m["stopped_early"], device=m["device"],
            eval_loss_before=m["eval_loss_before"], eval_loss_best=m["eval_loss_best"],
            eval_loss_last=m.get("eval_loss_last"), still_improving=m.get("still_improving"), cached=result.cached,
            adapter_key=job.key,
        )
        ctx.record_cost("train", **m.get("details", {}))  # a loop's own figures (pairs, iterations, discriminator)
        adapted = self.serve(ctx, job, result)
        try:
            # ctx.backend is still the base here (the cell sets the adapted one when adapt returns)
            checks = integrity(dataclasses.replace(ctx, backend=adapted), base, adapted, job, result, self)
            ctx.record_cost("integrity", **checks)
        except BaseException:
            adapted.close()
            raise
        return adapted

    def serve(self, ctx: "CellContext", job: Any, result: Any) -> "Backend":
        """The adapted model as it is evaluated: merged and exported to GGUF in the run's serving format
        (every arm of the model alike), or the unmerged adapter through transformers when it cannot merge."""
        p = self.params
        method = self.method
        cache_dir = ctx.config.resolved_cache_dir()
        use_gguf = p.eval_backend == "gguf" and method.mergeable and ctx.model.kind == "gguf"
        t0 = time.perf_counter()
        if use_gguf:
            fmt = export_format(resolve_format(ctx.config.serve_format)) if p.export_dtype == "auto" else p.export_dtype
            gguf, export = merged_gguf(ctx.model, cache_dir, method, result.folder, fmt)
            digest = sha256_json([ctx.model.sha256, job.key, fmt])
            spec = ModelSpec(f"{ctx.model.name}+{self.name}", "gguf", path=gguf, sha256=digest, chat=ctx.model.chat,
                             languages=ctx.model.languages, params_millions=ctx.model.params_millions)
            backend = LlamaBackend(spec, threads=ctx.config.threads, model_id=digest)
            backend.weights_format = fmt
            ctx.record_cost("serve", backend="llama", format=fmt, gguf_bytes=gguf.stat().st_size, **export,
                            load_seconds=round(time.perf_counter() - t0, 3))
            return backend
        if method.kind == "generator":
            backend = serving_backend(ctx.model, cache_dir, result.folder / "adapter", threads=ctx.config.threads,
                                      adapter_hash=job.key)
        else:
            model, tok = load_trained(ctx.model, cache_dir, method, result.folder / "adapter", merged=False)
            backend = HFBackend(ctx.model, cache_dir, threads=ctx.config.threads, model=model, tokenizer=tok,
                                adapter_hash=job.key)
        backend.weights_format = "bf16" if cuda_bf16() else "fp32"
        why = "requested" if p.eval_backend == "hf" else ("not mergeable" if not method.mergeable else "no GGUF source")
        ctx.record_cost("serve", backend="hf", format=backend.weights_format, reason=why,
                        load_seconds=round(time.perf_counter() - t0, 3))
        return backend


def known_unknown_mix(ctx: "CellContext", train: list, share: float, size: int, option: str) -> list:
    """Gekhman et al.'s training mixes: `size` pairs of which `share` the base model does not know.

    Every training pair is labelled by SliCK on the base model (bench.run.strata; seed 0, so every training
    seed sees the same labels, and cached); "unknown" pairs are unknown, every other label is known. The
    picks are a seeded sample of each kind; the counts go into the cell's cost.json.
    """
    from bench.run.strata import slick_strata
    from bench.seeding import rng

    if ctx.backend is None:
        raise BenchError(f"{option}.unknown_share: needs the base model to label the training pairs")
    labels = slick_strata(ctx.task, dataclasses.replace(ctx, seed=0), examples=[e for e in train if e.answerable])
    unknown = [e for e in train if labels.get(e.id) == "unknown"]
    known = [e for e in train if labels.get(e.id) not in (None, "unknown")]
    if size == 0:  # as many as the scarcer kind allows
        size = len(unknown) if share == 1 else len(known) if share == 0 else int(
            min(len(unknown) / share, len(known) / (1 - share)))
    n_unknown = round(share * size)
    if n_unknown > len(unknown) or size - n_unknown > len(known) or size < 2:
        raise BenchError(f"{option}.mix_size: a mix of {size} pairs with {share:.0%} unknown needs {n_unknown} unknown and "
                         f"{size - n_unknown} known pairs; the base model knows {len(known)} and not {len(unknown)} "
                         "of the training pairs: lower mix_size")
    r = rng(ctx.seed, "known-unknown-mix")
    picked = r.sample(unknown, n_unknown) + r.sample(known, size - n_unknown)
    ctx.record_cost("train", mix={"size": size, "unknown": n_unknown, "known": size - n_unknown,
                                  "pool_known": len(known), "pool_unknown": len(unknown)})
    return picked


def self_answers(ctx: "CellContext") -> Answerer:
    """The model's greedy answers to training prompts (rendered like evaluation prompts) through the cell's
    batched, cached generation; a backend of None is the cell's base model."""

    def answer(backend: Optional["Backend"], examples: Any, max_new_tokens: int) -> list:
        greedy = ctx.gen_params(max_new_tokens=max_new_tokens, temperature=0.0)
        calls = [Call(tuple(build_messages(ctx.task, ex)), greedy) for ex in examples]
        return dataclasses.replace(ctx, backend=backend or ctx.backend, strategy_key=SELF_ANSWERS).generate_many(calls)

    return answer


INTEGRITY_PROMPTS = 8  # test prompts on which a fine-tune is compared with its base (and its merged twin)


def integrity(ctx: "CellContext", base: Any, adapted: Any, job: Any, result: Any, strategy: Any) -> dict:
    """Did training change anything, and does serving the merged GGUF give the unmerged model's answers?

    - changed_vs_base: how many of the first INTEGRITY_PROMPTS test prompts get a different greedy
      answer from the adapted model than from the base; none = "no effect" (an adapter that learned nothing);
    - merged_agreement: for a merged GGUF, the share of those prompts on which it answers exactly as the
      unmerged adapter through transformers does (quantization or export drift shows here).
    Every call goes through the generation cache, so a rerun costs nothing.
    """
    calls = [Call(tuple(build_messages(ctx.task, ex)), ctx.gen_params(max_new_tokens=32, temperature=0.0))
             for ex in ctx.task.test[:INTEGRITY_PROMPTS]]
    if not calls:
        return {}
    mine = ctx.generate_many(calls)
    theirs = dataclasses.replace(ctx, backend=base, strategy_key="integrity").generate_many(calls)
    out = {"prompts": len(calls), "changed_vs_base": sum(a.output != b.output for a, b in zip(mine, theirs))}
    out["no_effect"] = out["changed_vs_base"] == 0
    if adapted.name == "llama":
        method = strategy.method
        cache_dir = ctx.config.resolved_cache_dir()
        model, tok = load_trained(ctx.model, cache_dir, method, result.folder / "adapter", merged=False)
        unmerged = HFBackend(ctx.model, cache_dir, threads=ctx.config.threads, model=model, tokenizer=tok,
                             adapter_hash=job.key)
        try:
            ref = dataclasses.replace(ctx, backend=unmerged).generate_many(calls)
        finally:
            unmerged.close()
        out["merged_agreement"] = sum(a.output == b.output for a, b in zip(mine, ref)) / len(calls)
    return out


def conversion_seconds(spec: ModelSpec, cache_dir: Path) -> float:
    """The one-off GGUF -> transformers conversion every fine-tune of a GGUF model needs (0 for other models)."""
    if spec.kind != "gguf":
        return 0.0
    return float(read_json(hf_checkpoint(spec, cache_dir) / SOURCE_FILE).get("seconds") or 0.0)


def merged_gguf(spec: ModelSpec, cache_dir: Path, method: Any, folder: Path, dtype: str) -> tuple[Path, dict]:
    """The merged model as GGUF beside its adapter in the cache (exported once, atomically), and the export's
    one-off cost as recorded when it was made (so every cell served from it is charged the same)."""
    target = Path(folder) / f"merged-{dtype}.gguf"
    record = target.with_suffix(".json")
    exported_now = False
    if not target.is_file():
        t0 = time.perf_counter()
        model, _ = load_trained(spec, cache_dir, method, Path(folder) / "adapter", merged=True)
        fd, tmp = tempfile.mkstemp(prefix=".merged.", suffix=".gguf", dir=folder)
        os.close(fd)
        try:
            export_gguf(model, spec.path, tmp, dtype=dtype)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        del model
        atomic.write_json(record, {"export_seconds": round(time.perf_counter() - t0, 3)})
        exported_now = True
    return target, {**read_json(record), "exported_now": exported_now}


def _declare(method: Method) -> type:
    """A registered strategy class for one row of the method table."""
    cls = type(method.name.title().replace("_", ""), (_Finetune,), {
        "name": method.name, "description": method.description, "Params": method.params,
        "__doc__": method.description, "__module__": __name__,
    })
    return STRATEGIES.register(method.name)(cls)


for _method in METHODS.values():
    _declare(_method)
