"""Training throughput: bench's LoRA trainer against a plain TRL SFTTrainer with default settings.

Same model (packaged SmolLM2-135M, dequantized), same rendered data (a task's train split, repeated), same
LoRA (r=16, alpha=32, dropout 0.05, all linear layers), same batch, learning rate, steps, seed and threads.
The plain run uses SFTConfig defaults (gradient checkpointing on, bf16 autocast, padded batches, fused AdamW;
plus use_cpu=True, without which the defaults refuse to start on a CPU); bench's run uses what it chooses
for this machine (strategies/training/trainer.py: bf16 autocast only where the CPU has native bf16, no
checkpointing, padding-free batches, an LM head that scores only the answer tokens).

The two alternate for `--rounds` rounds in one process, so both see the same machine load; every step's wall
time and CPU time (this process, all threads) is recorded and the medians are compared. On a shared machine
the wall times swing with other jobs; the CPU-time ratio moves less (with `--threads 1` it is the cleanest
proxy for an idle machine). Prints the CPU, threads, load average before and after, tokens/s and median step
of both, their ratio, and how far apart the two loss curves are.

    python benchmarks/training.py [--steps 8] [--batch 8] [--rounds 2] [--threads N] [--task demo] [--cache DIR]
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

LR = 2e-4
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


def step_timer():
    """A callback that records the wall and process CPU time of every optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.wall: list[float] = []
            self.cpu: list[float] = []
            self._t = self._c = None

        def on_step_begin(self, args, state, control, **kw):
            self._t, self._c = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            if self._t is not None:
                self.wall.append(time.perf_counter() - self._t)
                self.cpu.append(time.process_time() - self._c)

    return StepTimer()


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def run_plain(spec, cache, records, args, dropout: float) -> dict:
    """Plain TRL SFTTrainer on its defaults, LoRA through peft_config."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from bench.models.convert import load_pretrained

    model, tok = load_pretrained(spec, cache, dtype=torch.float32)
    out = Path(tempfile.mkdtemp(prefix="trl-plain-"))
    cfg = SFTConfig(output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps,
                    learning_rate=LR, logging_steps=1, report_to="none", save_strategy="no", seed=0,
                    include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                    use_cpu=not torch.cuda.is_available(),  # the defaults refuse to start on CPU without it
                    **({"bf16": False} if args.plain_fp32 else {}))
    ds = Dataset.from_list([{"prompt": r.prompt, "completion": r.completion} for r in records])
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    timer = step_timer()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora,
                         callbacks=[timer])
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    res = {"seconds": seconds, "tokens": int(trainer.state.num_input_tokens_seen), "timer": timer,
           "loss": [h["loss"] for h in trainer.state.log_history if "loss" in h],
           "dtype": "bfloat16 autocast" if cfg.bf16 else "float32"}
    del trainer, model
    shutil.rmtree(out, ignore_errors=True)
    return res


def run_bench(spec, cache, records, args, dropout: float) -> dict:
    """bench's trainer (strategies.training.trainer.train_adapter) on the same data, LoRA, batch, lr, steps, seed."""
    from strategies.training.params import LoraParams
    from strategies.training.trainer import TrainJob, train_adapter

    params = LoraParams(max_steps=args.steps, batch_size=args.batch, learning_rate=LR, val_fraction=0.0,
                        max_length=1024, threads=args.threads, r=LORA["r"], alpha=LORA["alpha"], dropout=dropout)
    timer = step_timer()
    job = TrainJob(spec, "lora", params, records, [], 0, cache, threads=args.threads, callbacks=(timer,))
    shutil.rmtree(job.folder, ignore_errors=True)  # measure a real run, not a cache hit
    res = train_adapter(job)
    shutil.rmtree(job.folder, ignore_errors=True)
    return {"seconds": res.meta["train_seconds"], "tokens": int(res.meta["tokens"]), "timer": timer,
            "loss": [r["loss"] for r in res.log if "loss" in r],
            "dtype": ("bfloat16 autocast" if res.meta["compute_dtype"] == "bfloat16" else "float32")
            + f", LM head on {res.meta['lm_head_rows']} rows"}


def max_rel_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) / max(abs(x), 1e-9) for x, y in zip(a, b)), default=float("nan"))


def main() -> None:
    from bench.cpu import cpu_info, physical_cores

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=physical_cores(),
                    help="torch threads for both (default: physical cores)")
    ap.add_argument("--rounds", type=int, default=2, help="plain/bench pairs, alternating order (load-fair)")
    ap.add_argument("--repeat", type=int, default=3, help="copies of the train split (more distinct batches)")
    ap.add_argument("--task", default="demo", help="built-in task name or task folder")
    ap.add_argument("--dropout", type=float, default=LORA["dropout"],
                    help="LoRA dropout of both (0 isolates numerics: padded and flat batches draw different masks)")
    ap.add_argument("--plain-fp32", action="store_true", help="turn bf16 autocast off in the plain run")
    ap.add_argument("--cache", default=None, help="cache dir (default: a temp dir; the GGUF conversion takes ~1 min)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from bench.models.convert import hf_checkpoint
    from bench.models.hf import template_for
    from bench.models.resolve import resolve_model
    from bench.taskio import load_folder
    from strategies.training.data import sft_records

    root = Path(__file__).resolve().parents[1]
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-train-"))
    spec = resolve_model("smollm2-135m", cache)
    tok = AutoTokenizer.from_pretrained(str(hf_checkpoint(spec, cache)))
    folder = Path(args.task) if Path(args.task).is_dir() else root / "tasks" / args.task
    task = load_folder(folder)
    records = sft_records(task, task.train, template_for(spec, tok)) * args.repeat
    n_prompt = sum(len(tok(r.prompt)["input_ids"]) for r in records)
    n_answer = sum(len(tok(r.completion, add_special_tokens=False)["input_ids"]) for r in records)
    print(f"cpu: {cpu_info().summary()}; native bf16: {cpu_info().bf16}")
    print(f"torch {torch.__version__}: {args.threads} threads, {torch.get_num_interop_threads()} interop threads")
    print(f"data: task {task.name}, {len(records)} examples, {(n_prompt + n_answer) / len(records):.0f} tokens/example "
          f"({n_answer / (n_prompt + n_answer):.0%} answer tokens); steps {args.steps}, batch {args.batch}, "
          f"rounds {args.rounds}, LoRA dropout {args.dropout}")
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {"plain": [], "bench": []}
    for rnd in range(args.rounds):
        order = ("plain", "bench") if rnd % 2 == 0 else ("bench", "plain")
        for who in order:
            fn = run_plain if who == "plain" else run_bench
            res = fn(spec, cache, records, args, args.dropout)
            runs[who].append(res)
            print(f"round {rnd + 1} {who:5s}: {res['tokens']} tokens in {res['seconds']:.1f} s, "
                  f"median step {median(res['timer'].wall):.2f} s wall / {median(res['timer'].cpu):.2f} s CPU; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    load_after = os.getloadavg()

    summary = {}
    for who, rs in runs.items():
        tokens, seconds = sum(r["tokens"] for r in rs), sum(r["seconds"] for r in rs)
        wall = [t for r in rs for t in r["timer"].wall]
        cpu = [t for r in rs for t in r["timer"].cpu]
        summary[who] = {"tps": tokens / seconds, "wall": median(wall), "cpu": median(cpu),
                        "tokens_per_step": tokens / max(1, len(wall))}
    p, b = summary["plain"], summary["bench"]
    print()
    print(f"plain TRL SFTTrainer (defaults: {runs['plain'][0]['dtype']}, gradient checkpointing, padded batches): "
          f"{p['tps']:.1f} tokens/s, median step {p['wall']:.2f} s wall, {p['cpu']:.2f} s CPU")
    print(f"bench lora ({runs['bench'][0]['dtype']}, no checkpointing, padding-free): "
          f"{b['tps']:.1f} tokens/s, median step {b['wall']:.2f} s wall, {b['cpu']:.2f} s CPU")
    print(f"ratio bench/plain: {b['tps'] / p['tps']:.2f}x tokens/s (whole runs), "
          f"{p['wall'] / b['wall']:.2f}x median step (wall), {p['cpu'] / b['cpu']:.2f}x median step (CPU time)")
    for who in ("plain", "bench"):
        t = runs[who][0]["timer"]
        print(f"{who} step seconds, round 1 (wall / CPU):", " ".join(f"{w:.2f}/{c:.2f}" for w, c in zip(t.wall, t.cpu)))
    print("step  plain_loss  bench_loss  (round 1)")
    pl, bl = runs["plain"][0]["loss"], runs["bench"][0]["loss"]
    for i, (x, y) in enumerate(zip(pl, bl), start=1):
        print(f"{i:4d}  {x:10.4f}  {y:10.4f}")
    print(f"loss curves: max relative difference {max_rel_diff(pl, bl):.2%} "
          f"(plain {runs['plain'][0]['dtype']}; bench {runs['bench'][0]['dtype']}; LoRA dropout {args.dropout})")
    if args.rounds > 1:
        print(f"run-to-run: plain {max_rel_diff(pl, runs['plain'][1]['loss']):.2%}, "
              f"bench {max_rel_diff(bl, runs['bench'][1]['loss']):.2%} max relative difference between rounds 1 and 2")
    print(f"load average (1, 5, 15 min): before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in load_after)}; {os.cpu_count()} logical CPUs")
    if not args.cache:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
