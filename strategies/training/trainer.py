"""The one training function behind every fine-tuning strategy: TRL's SFTTrainer over peft.

`train_adapter(job)` checks the job, looks the adapter up in the cache, and otherwise loads the base
model (float, or 4-bit NF4 for QLoRA/LoftQ), applies the method, trains with answer-only loss,
validation, early stopping and a loss log, and stores the result atomically under
`<cache>/adapters/<key>` (key = base sha256 + data sha256 + method + training hyperparameters + seed).
A second call with the same job trains nothing.

CPU choices (measured in benchmarks/training.py, docs/finetuning.md "Training throughput"): bf16 autocast
over float32 master weights where the CPU has native bf16 arithmetic (`bench.cpu.cpu_info().bf16`), float32
elsewhere; no gradient checkpointing; padding-free batches (examples flattened into one row); the LM head
scores only the answer tokens; one torch thread per physical core unless told otherwise.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from bench.atomic import read_jsonl
from bench.cpu import CpuInfo, cpu_info, physical_cores
from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.models.convert import hf_checkpoint, load_pretrained, weights_location
from bench.models.resolve import ModelSpec
from bench.seeding import set_global_seed
from strategies.training.data import Record, records_hash, token_budget, tokenize
from strategies.training.methods import Method, check, get_method, quantization_config
from strategies.training.weights import count_params, prepare, save_trained

META_FILE = "meta.json"
LOG_FILE = "train_log.jsonl"
PLOT_FILE = "loss.png"
FORMAT_VERSION = 3  # bump when the trained artifact changes meaning (2: QLoRA CPU gradient fix; 3: final eval)


@dataclass
class TrainJob:
    spec: ModelSpec
    method: str
    params: Any  # a bench.training.params.TrainParams subclass
    train: Sequence[Record]
    val: Sequence[Record]
    seed: int
    cache_dir: Path
    threads: int = 0
    progress: bool = False
    callbacks: tuple = ()  # extra TrainerCallbacks (e.g. a benchmark's step timer); not part of the key

    @property
    def key(self) -> str:
        td = self.params.training_dict() if hasattr(self.params, "training_dict") else dict(self.params.__dict__)
        return sha256_json({
            "v": FORMAT_VERSION, "base": self.spec.sha256, "data": records_hash(self.train, self.val),
            "method": self.method, "params": td, "seed": self.seed,
        })[:32]

    @property
    def folder(self) -> Path:
        return Path(self.cache_dir) / "adapters" / self.key


@dataclass
class TrainResult:
    folder: Path
    meta: dict
    cached: bool
    log: list[dict] = field(default_factory=list)


class _PeakRss:
    """Samples this process's resident memory while training (ru_maxrss would include earlier work)."""

    def __init__(self, every: float = 0.25):
        self.every = every
        self.peak_kb = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> int:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self._read())
            self._stop.wait(self.every)

    def __enter__(self) -> "_PeakRss":
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak_kb = max(self.peak_kb, self._read())


def load_cached(job: TrainJob) -> Optional[TrainResult]:
    folder = job.folder
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None

    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return TrainResult(folder, meta, True, read_jsonl(folder / LOG_FILE, appended=True))


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_autocast(device: str, method: Method, cpu: Optional[CpuInfo] = None) -> bool:
    """Whether training computes in bf16.

    On a CUDA GPU: when it supports bf16 (the weights are then loaded in bf16). On a CPU: when it has native bf16
    arithmetic (AVX-512 BF16 or AMX-BF16, from `bench.cpu.cpu_info()`): the weights stay float32 (the master copy
    the optimizer updates) and the forward runs under bf16 autocast, whose matmuls are faster there; without
    native bf16 it is emulated and slower, so float32 stays. 4-bit bases keep their float32 compute dtype on CPU.
    """
    if device == "cuda":
        import torch

        return bool(torch.cuda.is_bf16_supported())
    return (cpu or cpu_info()).bf16 and not method.quantized


def train_threads(job: TrainJob) -> int:
    """Torch threads for training: the method's `threads`, else the run's, else one per physical core."""
    return job.params.threads or job.threads or physical_cores()


def _steps_per_epoch(p: Any, n_train: int) -> int:
    return max(1, math.ceil(n_train / (p.batch_size * p.grad_accum)))


def _epochs(p: Any) -> float:
    """Passes over the training rows: one when `train_tokens` already cycled them to the budget."""
    return 1.0 if getattr(p, "train_tokens", 0) > 0 else p.epochs


def _total_steps(p: Any, n_train: int) -> int:
    return p.max_steps if p.max_steps > 0 else max(1, math.ceil(_steps_per_epoch(p, n_train) * _epochs(p)))


def plan_check(job: TrainJob) -> Method:
    """Everything that can be rejected before loading weights: params, data size, architecture."""
    method = get_method(job.method)
    problem = job.params.validate() if hasattr(job.params, "validate") else None
    if problem:
        raise BenchError(f"params.{job.method}: {problem}")
    if len(job.train) < 1:
        raise BenchError(f"strategy {job.method}: the task has no training examples; add lines to train.jsonl")
    if method.kind == "peft" and job.params.eval_backend == "gguf" and not method.mergeable:
        raise BenchError(f"params.{job.method}.eval_backend: {job.method} cannot be merged into a GGUF; use hf")
    from transformers import AutoConfig


    cfg = AutoConfig.from_pretrained(weights_location(job.spec, job.cache_dir))
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    check(method, text_cfg.model_type, int(getattr(text_cfg, "num_hidden_layers", 0) or 0), job.params)
    if method.quantized:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise BenchError(f"strategy {job.method}: needs bitsandbytes for 4-bit loading; run `pip install -e .`") from None
    return method


def train_in_cache(job: TrainJob, run: Callable[[Path, int], tuple[dict, list[dict]]]) -> TrainResult:
    """The cached result of `job`, or `run(folder, threads)` into a temporary folder renamed into place
    (meta.json written last), with the trainer's torch thread count; every training loop goes through it."""
    hit = load_cached(job)
    if hit is not None:
        return hit
    import torch

    threads = train_threads(job)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    folder = job.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        meta, log = run(tmp, threads)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / META_FILE).is_file():
                raise
    finally:
        torch.set_num_threads(prev_threads)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return TrainResult(folder, meta, False, log)


def train_adapter(job: TrainJob) -> TrainResult:
    """Train (or fetch from the cache) and return where the result lies, with its costs and log."""
    method = plan_check(job)
    return train_in_cache(job, lambda out, threads: _train(job, method, out, threads))


def _train(job: TrainJob, method: Method, out: Path, threads: int) -> tuple[dict, list[dict]]:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from strategies.training.callbacks import AdaLoraBudget, BestOnValidation, JsonlLog, plot_losses

    p = job.params
    device = _device()
    set_global_seed(job.seed)
    t_start = time.perf_counter()
    load_kwargs: dict = {"dtype": torch.float32}
    bf16 = bf16_autocast(device, method)
    if bf16 and device == "cuda" and not method.quantized:
        load_kwargs["dtype"] = torch.bfloat16
    if method.quantized:
        load_kwargs["quantization_config"] = quantization_config(device)
        if device == "cuda":
            load_kwargs["device_map"] = {"": 0}
    model, tok = load_pretrained(job.spec, job.cache_dir, **load_kwargs)
    if device == "cuda" and not method.quantized:
        model = model.to("cuda")
    base_weights = None
    if method.name == "loftq":
        from safetensors.torch import load_file


        ck = hf_checkpoint(job.spec, job.cache_dir)
        base_weights = {}
        for f in sorted(Path(ck).glob("*.safetensors")):
            base_weights.update(load_file(str(f)))

    train_rows = token_budget(tokenize(job.train, tok, p.max_length), p.train_tokens, job.seed)
    val_rows = tokenize(job.val, tok, p.max_length)
    if not train_rows:
        raise BenchError(f"params.{job.method}.max_length: {p.max_length} tokens leave no answer tokens to learn; raise it")
    total_steps = _total_steps(p, len(train_rows))
    model = prepare(model, method, p, total_steps, base_weights)
    del base_weights
    trainable, total = count_params(model)

    use_val = bool(val_rows)
    # virtual tokens are prepended inside peft, which a flattened (padding-free) batch cannot take
    padding_free = p.padding_free and method.name not in ("prefix", "prompt_tuning")
    cfg = SFTConfig(
        output_dir=str(out / "_trainer"),
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=max(p.batch_size, 8),
        gradient_accumulation_steps=p.grad_accum,
        learning_rate=p.learning_rate,
        num_train_epochs=_epochs(p),
        max_steps=p.max_steps if p.max_steps > 0 else -1,
        lr_scheduler_type=p.scheduler,
        warmup_steps=float(p.warmup_ratio),
        weight_decay=p.weight_decay,
        logging_steps=1,
        eval_strategy="steps" if use_val else "no",
        eval_steps=(p.eval_every or max(1, _steps_per_epoch(p, len(train_rows)) // 2)) if use_val else None,
        save_strategy="no",
        report_to="none",
        seed=job.seed,
        data_seed=job.seed,
        bf16=bf16,
        fp16=False,
        use_cpu=device == "cpu",
        gradient_checkpointing=False,
        max_length=None if padding_free else p.max_length,  # rows are already cut to max_length
        packing=False,
        padding_free=padding_free,
        completion_only_loss=True,
        dataset_num_proc=None,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all" if padding_free else "non_padding",
        disable_tqdm=not job.progress,
        remove_unused_columns=True,
    )
    log_cb = JsonlLog(out / LOG_FILE)
    best = BestOnValidation(p.patience)
    callbacks: list = [log_cb, best]
    if method.name == "adalora":
        callbacks.append(AdaLoraBudget())
    callbacks.extend(job.callbacks)
    trainer = SFTTrainer(
        model=model, args=cfg, train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if use_val else None,
        processing_class=tok, callbacks=callbacks,
    )
    _quiet_logs(trainer, job.progress)
    head_rows = "labelled" if device == "cpu" and score_labelled_tokens_only(trainer.model) else "all"
    if device == "cpu":  # TRL casts QLoRA adapters to bf16 (a GPU recipe); keep float32 on CPU
        for prm in trainer.model.parameters():
            if prm.requires_grad and prm.dtype != torch.float32:
                prm.data = prm.data.to(torch.float32)
    loss_before = None
    if use_val:  # the callbacks see every evaluate() (BestOnValidation records this as the starting point)
        loss_before = float(trainer.evaluate()["eval_loss"])
    with _PeakRss() as rss:
        t0 = time.perf_counter()
        result = trainer.train()
        train_seconds = time.perf_counter() - t0
    still_improving = None
    if use_val:
        if best.last_step != trainer.state.global_step:  # the tail after the last evaluation is judged too
            trainer.evaluate()
        # validation loss was still falling when the epochs ran out: more epochs would likely help
        still_improving = not best.stopped_early and best.best_step == trainer.state.global_step
        if best.best_step != trainer.state.global_step:
            best.restore(trainer.model)
    state = trainer.state
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    model = trainer.model
    model.eval()
    adapter_bytes = save_trained(model, method, out / "adapter")
    rows = log_cb.rows
    plot_losses(rows, out / PLOT_FILE, title=f"{job.method} on {job.spec.name}")
    train_losses = [r["loss"] for r in rows if "loss" in r]
    eval_losses = [r["eval_loss"] for r in rows if "eval_loss" in r]
    peak_cuda = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    meta = {
        "method": job.method, "base": job.spec.name, "base_sha256": job.spec.sha256, "key": job.key,
        "seed": job.seed, "device": device, "threads": threads, "mergeable": method.mergeable,
        "quantized": method.quantized, "cpu": cpu_info().summary() if device == "cpu" else None,
        "compute_dtype": "bfloat16" if bf16 else "float32", "lm_head_rows": head_rows,
        "wall_seconds": round(time.perf_counter() - t_start, 3), "train_seconds": round(train_seconds, 3),
        "peak_rss_mb": round(rss.peak_kb / 1024, 1), "peak_cuda_mb": round(peak_cuda, 1),
        "trainable_params": trainable, "total_params": total,
        "trainable_share": round(trainable / total, 6) if total else 0.0,
        "tokens": tokens, "tokens_per_second": round(tokens / train_seconds, 2) if train_seconds else 0.0,
        "steps": int(state.global_step), "steps_per_second": round(state.global_step / train_seconds, 4) if train_seconds else 0.0,
        "epochs": round(float(state.epoch or 0), 4), "best_step": best.best_step, "best_epoch": round(best.best_epoch, 4),
        "stopped_early": best.stopped_early, "adapter_bytes": adapter_bytes,
        "n_train": len(train_rows), "n_val": len(val_rows),
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_last": train_losses[-1] if train_losses else None,
        "eval_loss_before": loss_before, "eval_loss_best": best.best, "still_improving": still_improving,
        "eval_loss_last": eval_losses[-1] if eval_losses else None,
        "train_loss_mean": round(float(result.training_loss), 6),
        "params": job.params.training_dict() if hasattr(job.params, "training_dict") else {},
    }
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    del trainer, model
    return meta, rows


def score_labelled_tokens_only(model: Any) -> bool:
    """Make TRL's fused LM head project only the positions that carry a label; returns whether it did.

    With answer-only loss most positions are prompt tokens whose next-token scores are thrown away. TRL skips them
    only where its Triton kernel runs (CUDA/XPU); on a CPU it projects every position through the whole vocabulary
    (49k rows for SmolLM2), forward and twice in backward: about a third of a training step on the demo data,
    where prompts are ~90% of the tokens. This forward gives the same loss, per-token outputs and gradients
    from the labelled rows only. Models whose head scales its logits (logit_scale and kin) or that add a
    router loss keep TRL's forward.
    """
    from trl.kernels.chunked_logprob import OPTIONAL_OUTPUTS, ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE, FusedCausalLMOutput

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config.get_text_config()
    scaled = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling", "output_router_logits")
    if any(getattr(cfg, k, None) for k in scaled) or base.get_output_embeddings() is None:
        return False
    softcap = getattr(cfg, "final_logit_softcapping", None)
    trl_forward = base.forward
    outputs = ("log_probs",) + tuple(OPTIONAL_OUTPUTS)  # whatever TRL's loss or metrics read; cheap on few rows

    @functools.wraps(type(base).forward)  # generate() checks its kwargs against this signature
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or labels is None or shift_labels is not None:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        labels = labels[:, 1:].to(hidden.device)
        mask = labels != -100
        head = self.get_output_embeddings()
        rows = ChunkedLogProbFunction.apply(hidden[mask], head.weight, head.bias, labels[mask], 1.0,
                                            _CHUNKED_LOGPROB_CHUNK_SIZE, softcap, 1.0, outputs)
        # masked_scatter keeps an all-masked batch connected to the graph (a differentiable zero)
        log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
            None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in rows)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq_probs,
                                   mean_logits=mean_logits, is_top1=is_top1, label_mask=mask)

    base.forward = types.MethodType(forward, base)
    return True


def _quiet_logs(trainer, progress: bool) -> None:
    """Keep the step progress bar but not the raw log dicts on stdout (train_log.jsonl has them)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StepBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(StepBar())
