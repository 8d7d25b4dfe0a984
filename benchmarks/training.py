"""Training throughput: bench's LoRA trainer against a plain TRL SFTTrainer with default settings.

Same model (packaged SmolLM2-135M, dequantized), same rendered data (the demo task's train split,
repeated), same LoRA (r=16, alpha=32, all linear layers), same batch, learning rate, steps and seed.
The plain run uses SFTConfig defaults (gradient checkpointing on, bf16 autocast, padded batches; plus
use_cpu=True, without which the defaults refuse to start on a CPU);
bench's run uses what measured best on CPU: float32, no checkpointing, padding-free batches, fixed
threads. Prints tokens/s for both, the ratio, both loss curves and the machine load.

    python benchmarks/training.py [--steps 8] [--batch 8] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def step_timer():
    """A callback that records the wall time of every optimizer step (robust to load spikes: use the median)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._t = None

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self._t is not None:
                self.times.append(time.perf_counter() - self._t)

    return StepTimer()


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="copies of the train split (more distinct batches)")
    ap.add_argument("--plain-fp32", action="store_true", help="turn bf16 autocast off in the plain run (to compare losses)")
    ap.add_argument("--cache", default=None, help="cache dir (default: a temp dir; the GGUF conversion takes ~1 min)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from bench.models.convert import hf_checkpoint, load_pretrained
    from bench.models.hf import template_for
    from bench.models.resolve import resolve_model
    from bench.taskio import load_folder
    from strategies.training.data import sft_records
    from strategies.training.params import LoraParams
    from strategies.training.trainer import TrainJob, train_adapter

    root = Path(__file__).resolve().parents[1]
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-train-"))
    spec = resolve_model("smollm2-135m", cache)
    ck = hf_checkpoint(spec, cache)
    task = load_folder(root / "tasks" / "demo")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ck))
    records = sft_records(task, task.train, template_for(spec, tok)) * args.repeat
    n_tokens = sum(len(tok(r.prompt)["input_ids"]) + len(tok(r.completion, add_special_tokens=False)["input_ids"]) for r in records)
    print(f"data: {len(records)} examples, {n_tokens / len(records):.0f} tokens/example on average; "
          f"steps {args.steps}, batch {args.batch}, threads {args.threads}")

    # -- 1. plain TRL SFTTrainer, default settings -------------------------------------------------
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model, tok = load_pretrained(spec, cache, dtype=torch.float32)
    out = Path(tempfile.mkdtemp(prefix="trl-plain-"))
    load0 = os.getloadavg()
    cfg = SFTConfig(output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps,
                    learning_rate=2e-4, logging_steps=1, report_to="none", save_strategy="no", seed=0,
                    include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                    use_cpu=not torch.cuda.is_available(),  # the defaults refuse to start on CPU without it
                    **({"bf16": False} if args.plain_fp32 else {}))
    plain_bf16 = cfg.bf16
    ds = Dataset.from_list([{"prompt": r.prompt, "completion": r.completion} for r in records])
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    plain_timer = step_timer()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora,
                         callbacks=[plain_timer])
    t0 = time.perf_counter()
    trainer.train()
    plain_s = time.perf_counter() - t0
    plain_tokens = trainer.state.num_input_tokens_seen
    plain_loss = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    load1 = os.getloadavg()
    del trainer, model
    shutil.rmtree(out, ignore_errors=True)

    # -- 2. bench's trainer (same data, LoRA, batch, lr, steps, seed) ------------------------------
    params = LoraParams(max_steps=args.steps, batch_size=args.batch, learning_rate=2e-4, val_fraction=0.0,
                        max_length=1024, threads=args.threads)
    bench_timer = step_timer()
    job = TrainJob(spec, "lora", params, records, [], 0, cache, threads=args.threads, callbacks=(bench_timer,))
    shutil.rmtree(job.folder, ignore_errors=True)  # measure a real run, not a cache hit
    res = train_adapter(job)
    bench_s = res.meta["train_seconds"]
    bench_tokens = res.meta["tokens"]
    bench_loss = [r["loss"] for r in res.log if "loss" in r]
    load2 = os.getloadavg()

    plain_tps = plain_tokens / plain_s
    bench_tps = bench_tokens / bench_s
    print(f"plain TRL SFTTrainer (defaults: gradient_checkpointing=True, bf16={plain_bf16}, padded): "
          f"{plain_tokens} tokens in {plain_s:.1f} s = {plain_tps:.1f} tokens/s, {args.steps / plain_s:.3f} steps/s")
    print(f"bench lora (float32, no checkpointing, padding-free):  "
          f"{bench_tokens} tokens in {bench_s:.1f} s = {bench_tps:.1f} tokens/s, {args.steps / bench_s:.3f} steps/s")
    print(f"ratio bench/plain: {bench_tps / plain_tps:.2f}x tokens/s (whole runs)")
    tps_step = plain_tokens / args.steps
    pm, bm = median(plain_timer.times), median(bench_timer.times)
    print(f"median step: plain {pm:.2f} s, bench {bm:.2f} s -> ratio {pm / bm:.2f}x "
          f"({tps_step / pm:.1f} vs {tps_step / bm:.1f} tokens/s; the median resists load spikes from other processes)")
    print("step seconds plain:", [round(t, 2) for t in plain_timer.times])
    print("step seconds bench:", [round(t, 2) for t in bench_timer.times])
    print("step  plain_loss  bench_loss")
    for i, (a, b) in enumerate(zip(plain_loss, bench_loss), start=1):
        print(f"{i:4d}  {a:10.4f}  {b:10.4f}")
    diffs = [abs(a - b) / max(abs(a), 1e-9) for a, b in zip(plain_loss, bench_loss)]
    if diffs:
        print(f"loss curves: max relative difference {max(diffs):.3%} (bf16 autocast in the plain run explains small gaps)")
    print(f"load average (1, 5, 15 min) before plain {load0}, after plain {load1}, after bench {load2}; "
          f"cores: {os.cpu_count()}")
    if not args.cache:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
