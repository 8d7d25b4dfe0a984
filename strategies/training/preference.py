"""Preference tuning: DPO (with an optional SFT warm-up) and SPIN self-play, LoRA trained with TRL's DPOTrainer.

The seeds' survey names RLHF and RLAIF; DPO (Rafailov et al. 2023) is their reward-model-free form: the
policy learns to give the chosen answer a higher likelihood ratio against a frozen reference than the
rejected one. A pair here is (chosen = the reference output, rejected = the task's optional `rejected`
field, else the base model's own greedy answer to the same prompt: an AI-made pair that needs no human,
as in RLAIF). `sft_epochs > 0` first trains a LoRA with the shared SFT trainer (cached like any `lora`
adapter) and runs DPO from it, with the SFT model as the reference (the usual SFT-then-DPO recipe).

SPIN (Chen et al. 2024, arXiv 2401.01335) is the self-play game seed 004 is after: at iteration t the
model answers the training prompts itself, and the next model is trained with the same logistic loss to
prefer the reference answer over those answers, with the iteration-t model as the reference. Iteration 1
starts from the base (its answers are DPO's generated rejected answers), iteration t+1 keeps training the
same LoRA with a frozen copy of it as the reference. Each iteration records where it started and ended
(adapter hashes, the model id that answered) and its quality: validation pairs' reward margin and accuracy,
and how many validation items the model answered exactly like the reference before it.

Answers come through bench's batched generation and its cache (an `Answerer` given by the strategy), so
a rerun generates nothing. Pairs whose rejected answer equals the reference teach nothing and are left
out (counted). Rows are tokenized like the SFT records (prompt, then answer; the template's end-of-turn
closes both answers), so DPO trains on exactly the strings evaluation renders. The result is one LoRA
adapter saved like `lora`'s: it merges, exports to GGUF and is served like every other LoRA.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.models.backend import Backend
from bench.models.convert import load_pretrained
from bench.models.hf import HFBackend
from bench.seeding import set_global_seed
from bench.types import Example, Generation
from strategies.training.data import Record
from strategies.training.methods import Method
from strategies.training.params import LoraParams, field_names
from strategies.training.trainer import (
    LOG_FILE,
    PLOT_FILE,
    TrainJob,
    TrainResult,
    plan_check,
    train_adapter,
    train_in_cache,
)
from strategies.training.trainer import (
    _PeakRss as PeakRss,
)
from strategies.training.weights import count_params, save_trained

# (backend or None for the cell's base model, examples, max new tokens) -> their greedy generations, in order
Answerer = Callable[[Optional[Backend], Sequence[Example], int], list[Generation]]


@dataclass
class PreferenceJob(TrainJob):
    """A TrainJob with the preference side: the examples behind the records, the rejected answer of each
    record ("" = no pair), and how answers are generated. The rejected answers are part of the key."""

    examples: tuple[Example, ...] = ()
    val_examples: tuple[Example, ...] = ()
    rejected: tuple[str, ...] = ()
    val_rejected: tuple[str, ...] = ()
    pairs: dict = field(default_factory=dict)  # where the pairs came from (counts), for the cost record
    answers: Optional[Answerer] = None  # not part of the key

    @property
    def key(self) -> str:
        return sha256_json({"sft": super().key, "rejected": list(self.rejected),
                            "val_rejected": list(self.val_rejected)})[:32]


def preference_job(job: TrainJob, train: Sequence[Example], val: Sequence[Example], answers: Answerer,
                   from_task: bool) -> PreferenceJob:
    """The job with its pairs: the task's `rejected` answers (when `from_task` and present), else the base
    model's own greedy answers, generated (or read from the generation cache) now."""
    if len(train) != len(job.train) or len(val) != len(job.val):
        raise BenchError(f"strategy {job.method}: preference pairs need one SFT record per example")
    p = job.params
    counts = {"from_task": 0, "generated": 0, "identical": 0, "failed": 0}

    def given(ex: Example) -> Optional[str]:
        r = ex.get("rejected") if from_task else None
        return r if isinstance(r, str) and r.strip() else None

    todo = [ex for ex in (*train, *val) if given(ex) is None]
    gens = dict(zip((ex.id for ex in todo), answers(None, todo, p.answer_tokens))) if todo else {}
    sides = []
    for examples, records in ((train, job.train), (val, job.val)):
        side = []
        for ex, rec in zip(examples, records):
            text = given(ex)
            if text is not None:
                counts["from_task"] += 1
            else:
                gen = gens[ex.id]
                counts["failed" if gen.error else "generated"] += 1
                text = None if gen.error else gen.output
            pair = rejected_answer(ex, rec, text)
            counts["identical"] += text is not None and pair == ""
            side.append(pair)
        sides.append(tuple(side))
    counts["pairs"] = sum(1 for r in sides[0] if r)
    counts["val_pairs"] = sum(1 for r in sides[1] if r)
    val_own = [gens[ex.id] for ex in val if ex.id in gens]
    counts["val_exact"] = _exact_share([ex for ex in val if ex.id in gens], val_own)  # the base's, before training
    if counts["pairs"] == 0:
        raise BenchError(f"strategy {job.method}: no preference pairs: the base model answers every training item "
                         f"like the reference ({counts['identical']}) or its answers failed ({counts['failed']}); "
                         "use lora, or give worse answers in a `rejected` field of train.jsonl")
    kw = {f.name: getattr(job, f.name) for f in fields(TrainJob)}
    return PreferenceJob(**kw, examples=tuple(train), val_examples=tuple(val), rejected=sides[0],
                         val_rejected=sides[1], pairs=counts, answers=answers)


def rejected_answer(ex: Example, rec: Record, text: Optional[str]) -> str:
    """The rejected completion in the record's form (answer + the template's end); "" (no pair) when the
    answer equals the reference (such a pair has no gradient) or failed (`text` None). An empty answer is a
    pair: the reference against stopping at once (a model that learnt to say nothing must unlearn it)."""
    if text is None:
        return ""
    answer = text.strip()
    if answer == ex.output.strip():
        return ""
    return answer + rec.completion[len(ex.output.strip()):]


def train_dpo(job: PreferenceJob) -> TrainResult:
    """DPO on the job's pairs (after the SFT warm-up when `sft_epochs > 0`), or the cached result."""
    method = plan_check(job)
    return train_in_cache(job, lambda out, threads: _train(job, method, out, threads, iterations=1, self_play=False))


def train_spin(job: PreferenceJob) -> TrainResult:
    """SPIN: `iterations` rounds of answer-then-train, each from the previous round's model, or the cached result."""
    method = plan_check(job)
    if job.answers is None:
        raise BenchError(f"strategy {job.method}: self-play needs a way to generate the model's answers")
    return train_in_cache(job, lambda out, threads: _train(job, method, out, threads,
                                                           iterations=job.params.iterations, self_play=True))


def warmup_job(job: TrainJob) -> TrainJob:
    """The SFT warm-up: the shared trainer's LoRA with this job's settings for `sft_epochs` epochs (the
    `lora` defaults elsewhere, e.g. its learning rate), cached as a `lora` adapter."""
    p = job.params
    shared = {n: getattr(p, n) for n in field_names(LoraParams) if n not in ("learning_rate", "epochs")}
    return TrainJob(job.spec, "lora", LoraParams(**shared, epochs=p.sft_epochs), job.train, job.val, job.seed,
                    job.cache_dir, threads=job.threads, progress=job.progress)


def adapter_hash(model: Any, adapter: str = "default") -> str:
    """sha256 of one LoRA adapter's weights (names and bytes), to tell the models of the iterations apart."""
    h = hashlib.sha256()
    for name, prm in sorted(model.named_parameters()):
        if f".{adapter}." in name:
            h.update(name.encode())
            h.update(prm.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rows(tok: Any, records: Sequence[Record], rejected: Sequence[str], max_length: int) -> list[dict]:
    """prompt/chosen/rejected token ids, tokenized like the SFT records (bench.training.data.tokenize)."""
    rows = []
    for rec, rej in zip(records, rejected):
        if not rej:
            continue
        p_ids = tok(rec.prompt, add_special_tokens=True)["input_ids"]
        if len(p_ids) >= max_length:  # the prompt alone fills max_length: no answer token would be seen
            continue
        rows.append({"prompt_ids": p_ids, "chosen_ids": tok(rec.completion, add_special_tokens=False)["input_ids"],
                     "rejected_ids": tok(rej, add_special_tokens=False)["input_ids"]})
    return rows


def _iteration_log(path: Path) -> Any:
    """The shared loss log, with the SPIN iteration on every row and steps and epochs counted across iterations
    (a callback of transformers, so defined when a preference arm trains, not when the plugin loads)."""
    from strategies.training.callbacks import JsonlLog

    class _IterationLog(JsonlLog):
        iteration = 1
        step_offset = 0
        epoch_offset = 0.0

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs:
                return
            n = len(self.rows)
            super().on_log(args, state, control, logs=logs, **kw)
            for row in self.rows[n:]:
                row["iteration"] = self.iteration
                row["step"] += self.step_offset
                row["epoch"] = round(row["epoch"] + self.epoch_offset, 4)
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows), encoding="utf-8")

    return _IterationLog(path)


def _dpo_trainer(model: Any, tok: Any, job: PreferenceJob, train_rows: list, val_rows: list, out: Path,
                 callbacks: list, peft_config: Any, device: str) -> Any:
    """TRL's DPOTrainer on bench's pre-tokenized rows, set up like the shared trainer (float32 on CPU, no
    gradient checkpointing, the same step, evaluation and logging settings)."""
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import DPOConfig, DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """Rows come tokenized by bench (prompt + answer as evaluation renders them): no re-tokenization."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    p = job.params
    per_epoch = max(1, math.ceil(len(train_rows) / (p.batch_size * p.grad_accum)))
    losses, weights = [p.loss_type], None
    if p.nll_weight > 0:
        losses, weights = [p.loss_type, "sft"], [1.0, p.nll_weight]
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    cfg = DPOConfig(
        output_dir=str(out / "_trainer"), per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=max(p.batch_size, 8), gradient_accumulation_steps=p.grad_accum,
        learning_rate=p.learning_rate, num_train_epochs=p.epochs, max_steps=p.max_steps if p.max_steps > 0 else -1,
        lr_scheduler_type=p.scheduler, warmup_steps=float(p.warmup_ratio), weight_decay=p.weight_decay,
        logging_steps=1, eval_strategy="steps" if val_rows else "no",
        eval_steps=(p.eval_every or max(1, per_epoch // 2)) if val_rows else None, save_strategy="no",
        report_to="none", seed=job.seed, data_seed=job.seed, bf16=bf16, fp16=False, use_cpu=device == "cpu",
        gradient_checkpointing=False, max_length=p.max_length, padding_free=False, beta=p.beta, loss_type=losses,
        loss_weights=weights, precompute_ref_log_probs=False, dataloader_num_workers=0, disable_tqdm=not job.progress,
        remove_unused_columns=True,
    )
    trainer = PretokenizedDPOTrainer(
        model=model, args=cfg, train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if val_rows else None, processing_class=tok, callbacks=callbacks,
        peft_config=peft_config,
    )
    trainer.remove_callback(PrinterCallback)
    if not job.progress:
        trainer.remove_callback(ProgressCallback)
    return trainer


def _exact_share(examples: Sequence[Example], gens: Sequence[Generation]) -> Optional[float]:
    """Share of examples whose greedy answer is exactly the reference (failed answers count as misses)."""
    if not examples:
        return None
    return round(sum(not g.error and g.output.strip() == ex.output.strip() for ex, g in zip(examples, gens))
                 / len(examples), 4)


def _own_answers(job: PreferenceJob, model: Any, tok: Any, threads: int, train: bool) -> dict:
    """The current model's greedy answers to the validation prompts (and the training ones when `train`),
    through the transformers backend and the generation cache under the adapter's own model id: the
    rejected sides they make, the model id, the share of validation items answered like the reference."""
    t0 = time.perf_counter()
    examples = (list(job.examples) if train else []) + list(job.val_examples)
    backend = HFBackend(job.spec, job.cache_dir, threads=threads, model=model, tokenizer=tok,
                        adapter_hash=adapter_hash(model))
    try:
        gens = job.answers(backend, examples, job.params.answer_tokens) if examples else []
    finally:
        backend.close()
    n = len(job.examples) if train else 0

    def side(examples: Sequence[Example], records: Sequence[Record], got: Sequence[Generation]) -> tuple[str, ...]:
        return tuple(rejected_answer(e, r, None if g.error else g.output) for e, r, g in zip(examples, records, got))

    return {"rejected": side(job.examples, job.train, gens[:n]),
            "val_rejected": side(job.val_examples, job.val, gens[n:]), "generator": backend.model_id,
            "val_exact": _exact_share(job.val_examples, gens[n:]), "seconds": round(time.perf_counter() - t0, 3)}


def _train(job: PreferenceJob, method: Method, out: Path, threads: int, iterations: int,
           self_play: bool) -> tuple[dict, list[dict]]:
    import torch
    from peft import PeftModel

    from strategies.training.callbacks import BestOnValidation, plot_losses

    p = job.params
    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_global_seed(job.seed)
    t_start = time.perf_counter()
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model, tok = load_pretrained(job.spec, job.cache_dir, dtype=dtype)
    if device == "cuda":
        model = model.to("cuda")
    warm = None
    peft_config: Any = None
    if p.sft_epochs > 0:
        warm = train_adapter(warmup_job(job))
        model = PeftModel.from_pretrained(model, str(warm.folder / "adapter"), is_trainable=True)
    log = _iteration_log(out / LOG_FILE)
    rejected, val_rejected = job.rejected, job.val_rejected
    generator = "base"  # what answered the prompts of iteration 1 (the cell's base model)
    val_exact = job.pairs.get("val_exact")
    answer_seconds = None
    changed = None  # training prompts answered differently from the previous round (None in round 1)
    if self_play and warm is not None:  # self-play starts from the SFT model: it plays against its own answers
        own = _own_answers(job, model, tok, threads, train=True)
        changed = sum(a != b for a, b in zip(own["rejected"], rejected))
        rejected, val_rejected, generator, val_exact = own["rejected"], own["val_rejected"], own["generator"], \
            own["val_exact"]
        answer_seconds = own["seconds"]
    history: list[dict] = []
    train_seconds, steps, epochs, tokens = 0.0, 0, 0.0, 0
    first: dict = {}
    trainable = total = peak_kb = 0
    converged = False
    for it in range(1, iterations + 1):
        train_rows = _rows(tok, job.train, rejected, p.max_length)
        val_rows = _rows(tok, job.val, val_rejected, p.max_length)
        if not train_rows:
            converged = True  # the model answers every training prompt like the reference: SPIN's fixed point
            break
        if it == 1 and warm is None:
            total_steps = p.max_steps if p.max_steps > 0 else math.ceil(
                max(1, math.ceil(len(train_rows) / (p.batch_size * p.grad_accum))) * p.epochs)
            peft_config = method.peft_config(p, model, total_steps)
        log.iteration, log.step_offset, log.epoch_offset = it, steps, epochs
        best = BestOnValidation(p.patience)
        trainer = _dpo_trainer(model, tok, job, train_rows, val_rows, out, [log, best],
                               peft_config if it == 1 else None, device)
        model = trainer.model
        if it == 1:  # the frozen copy of the adapter (TRL's reference when one is loaded) is not the model's
            trainable, total = count_params(model)
            total -= sum(prm.numel() for name, prm in model.named_parameters() if ".ref." in name)
        start = adapter_hash(model)
        before = float(trainer.evaluate()["eval_loss"]) if val_rows else None
        with PeakRss() as rss:
            t0 = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - t0
        peak_kb = max(peak_kb, rss.peak_kb)
        still_improving = None
        if val_rows:
            if best.last_step != trainer.state.global_step:
                trainer.evaluate()
            still_improving = not best.stopped_early and best.best_step == trainer.state.global_step
            if best.best_step != trainer.state.global_step:
                best.restore(trainer.model)
        last_eval = next((r for r in reversed(log.rows) if "eval_loss" in r and r["iteration"] == it), {})
        record = {
            "iteration": it, "generator": generator, "start_adapter": start, "end_adapter": adapter_hash(model),
            "pairs": len(train_rows), "val_pairs": len(val_rows), "val_exact_before": val_exact,
            "steps": int(trainer.state.global_step), "epochs": round(float(trainer.state.epoch or 0), 4),
            "train_seconds": round(seconds, 3), "eval_loss_before": before, "eval_loss_best": best.best,
            "eval_loss_last": last_eval.get("eval_loss"), "still_improving": still_improving,
            "stopped_early": best.stopped_early,
            "reward_margin": last_eval.get("eval_rewards/margins"),
            "reward_accuracy": last_eval.get("eval_rewards/accuracies"), "answer_seconds": answer_seconds,
            "answers_changed": changed,
        }
        history.append(record)
        if it == 1:
            first = {"eval_loss_before": before, "stopped_early": best.stopped_early,
                     "best_epoch": round(best.best_epoch, 4)}
        train_seconds += seconds
        tokens += max((int(r.get("num_tokens", 0)) for r in log.rows if r["iteration"] == it), default=0)
        steps += record["steps"]
        epochs += record["epochs"]
        shutil.rmtree(out / "_trainer", ignore_errors=True)
        if "ref" in getattr(model, "peft_config", {}):
            model.delete_adapter("ref")
        del trainer
        if self_play:  # the model just trained answers the next iteration's prompts (after the last: validation)
            own = _own_answers(job, model, tok, threads, train=it < iterations)
            changed = sum(a != b for a, b in zip(own["rejected"], rejected)) if it < iterations else None
            rejected, val_rejected, generator, val_exact = own["rejected"], own["val_rejected"], own["generator"], \
                own["val_exact"]
            answer_seconds = own["seconds"]
            record["val_exact_after"] = val_exact
    model.eval()
    adapter_bytes = save_trained(model, method, out / "adapter")
    plot_losses(log.rows, out / PLOT_FILE, title=f"{job.method} on {job.spec.name}")
    last = history[-1] if history else {}
    train_losses = [r["loss"] for r in log.rows if "loss" in r]
    peak_cuda = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    meta = {
        "method": job.method, "base": job.spec.name, "base_sha256": job.spec.sha256, "key": job.key,
        "seed": job.seed, "device": device, "threads": threads, "mergeable": method.mergeable,
        "quantized": method.quantized,
        "wall_seconds": round(time.perf_counter() - t_start, 3), "train_seconds": round(train_seconds, 3),
        "peak_rss_mb": round(peak_kb / 1024, 1), "peak_cuda_mb": round(peak_cuda, 1),
        "trainable_params": trainable, "total_params": total,
        "trainable_share": round(trainable / total, 6) if total else 0.0,
        "tokens": tokens, "tokens_per_second": round(tokens / train_seconds, 2) if train_seconds else 0.0,
        "steps": steps, "epochs": round(epochs, 4), "best_epoch": first.get("best_epoch", 0.0),
        "stopped_early": bool(first.get("stopped_early")), "adapter_bytes": adapter_bytes,
        "n_train": len(job.train), "n_val": len(job.val),
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_last": train_losses[-1] if train_losses else None,
        "eval_loss_before": first.get("eval_loss_before"), "eval_loss_best": last.get("eval_loss_best"),
        "eval_loss_last": last.get("eval_loss_last"), "still_improving": last.get("still_improving"),
        "params": p.training_dict(),
        "details": {"pairs": job.pairs, "iterations": history, "converged": converged,
                    "warmup_key": warm.meta["key"] if warm is not None else None,
                    "reward_margin": last.get("reward_margin"), "reward_accuracy": last.get("reward_accuracy"),
                    "val_exact": val_exact if self_play else None},
    }
    del model
    return meta, log.rows
