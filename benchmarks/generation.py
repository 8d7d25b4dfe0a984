"""Generation throughput end to end: bench against a plain sequential llama-cpp-python loop on the same prompts.

200 zero-shot prompts of built-in tasks (default: the first 100 test items of facts and of selfaware),
greedy, the same max_new_tokens and stop strings, SmolLM2 Q4_1, the same thread count. Both sides are
timed from nothing loaded to the last answer:

- plain: `llama_cpp.Llama(...)` (llama-cpp-python's defaults, the extra buffer types chosen as bench
  chooses them), then `create_completion` on one prompt after the other;
- bench, `--bench backend` (default): `LlamaBackend(...)` then `generate_batch` on all prompts (many
  sequences decoded together; bench.models.llama.BatchDecoder);
- bench, `--bench run`: the whole `bench run --strategy zero_shot` on the same tasks and items, as a user runs
  it (a fresh results folder and cache, probes off); its prompts, read back from the cells'
  generations.jsonl, are then the plain loop's prompts.

Prints completion tokens/s of both, the ratio (target >= 3x), and how many greedy answers are identical.
The plain loop runs llama.cpp's default attention; `--plain-flash-attn` gives it the attention bench uses
(flash attention), which makes the two sides' greedy answers comparable token for token.

Which weights the plain loop reads (`--plain-weights`): `packaged` (default), the shipped Q4_1 file a user
would load; or `served`, the very file bench served its arms from in the run (the default f16 export; with
`--bench run` only), so both sides compute with the same weights and their greedy answers can be
compared for identity. The plain loop's model load is timed either way; making the served file is not
(bench's side pays for it unless `--warm-model`).

    python benchmarks/generation.py [--bench backend|run] [--tasks facts,selfaware] [--prompts 200]
                                    [--max-new-tokens 64] [--threads 2] [--plain-flash-attn]
                                    [--warm-model] [--serve-format auto|f16|bf16|q8_0|f32|native]
                                    [--plain-weights packaged|served]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from formats import header, load, zero_shot_prompts

from bench.models.llama import LlamaBackend, default_threads, open_llama
from bench.models.resolve import resolve_model
from bench.types import GenParams, GenRequest

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(path: str, prompts: list[str], max_new: int, stop: tuple[str, ...], threads: int,
               flash_attn: bool) -> tuple[float, int, list[str]]:
    """(seconds, completion tokens, outputs) of a plain llama-cpp-python loop, model load included."""
    t0 = time.perf_counter()
    llm = open_llama(path, threads, 4096, flash_attn=flash_attn)
    outs, tokens = [], 0
    for p in prompts:
        r = llm.create_completion(p, max_tokens=max_new, temperature=0.0, top_k=1, seed=0, stop=list(stop) or None)
        outs.append(r["choices"][0]["text"])
        tokens += r["usage"]["completion_tokens"]
    dt = time.perf_counter() - t0
    llm.close()
    return dt, tokens, outs


def bench_backend(spec, prompts: list[str], max_new: int, threads: int) -> tuple[float, int, list[str], list[str]]:
    """(seconds, completion tokens, outputs, prompts) of bench's backend: load, then generate_batch on every prompt."""
    t0 = time.perf_counter()
    backend = LlamaBackend(spec, threads=threads)
    params = GenParams(max_new_tokens=max_new, stop=backend.template.stop)
    gens = backend.generate_batch([GenRequest(p, params, seed=0) for p in prompts])
    dt = time.perf_counter() - t0
    backend.close()
    return dt, sum(g.completion_tokens for g in gens), [g.output for g in gens], prompts


def bench_run(tasks: list[str], per_task: int, max_new: int, threads: int, warm: bool = False,
              serve_format: str = "auto", keep_served: Path | None = None) -> tuple[float, int, list[str], list[str]]:
    """(seconds, completion tokens, outputs, prompts) of a whole `bench run` (zero-shot, fresh cache, no probes).

    `warm`: the model's one-off serving export (GGUF -> f16 GGUF, cached per model) is made by an untimed
    one-item run first into the model store both runs share, as on every run after a model's first.
    The prompts come back from the cells' generations.jsonl, so the plain loop answers exactly what bench answered.
    `keep_served`: where to copy the GGUF the run served its arms from (for a plain loop on the same weights).
    """
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        config = Path(tmp) / "run.yaml"
        config.write_text(json.dumps({"tasks": tasks, "strategies": ["zero_shot"], "model": "smollm2-135m",
                                      "seeds": [0], "limit": per_task, "probes": "none", "threads": threads,
                                      "serve_format": serve_format,
                                      "generation": {"max_new_tokens": max_new}}))
        out = Path(tmp) / "results"
        # converted weights: a store of this benchmark's own, so a BENCH_MODELS_DIR of the caller never warms it
        env = {**os.environ, "BENCH_MODELS_DIR": str(Path(tmp) / "models")}
        if warm:
            subprocess.run([sys.executable, "-m", "bench", "run", "--config", str(config), "--out",
                            str(Path(tmp) / "first"), "--limit", "1", "--no-progress"], cwd=ROOT, check=True,
                           capture_output=True, env=env)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench", "run", "--config", str(config), "--out", str(out)],
                       cwd=ROOT, check=True, env=env)
        dt = time.perf_counter() - t0
        rows = [json.loads(line) for f in sorted(out.glob("*/cells/*/generations.jsonl"))
                for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        if keep_served is not None:
            served = sorted((Path(tmp) / "models" / "served").glob("*.gguf"))
            if len(served) != 1:
                raise SystemExit(f"--plain-weights served: the run served {len(served)} files, not one "
                                 "(serve_format native serves the packaged file: use --plain-weights packaged)")
            shutil.copyfile(served[0], keep_served)
    return dt, sum(r["completion_tokens"] for r in rows), [r["output"] for r in rows], [r["prompt"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", choices=("backend", "run"), default="backend",
                    help="bench's side: its backend's generate_batch, or a whole `bench run`")
    ap.add_argument("--warm-model", action="store_true",
                    help="with --bench run: the model's serving export is already cached (every run after the first)")
    ap.add_argument("--serve-format", default="auto",
                    help="with --bench run: the run's serve_format (auto = f16; bf16 is faster on AVX-512 BF16 CPUs)")
    ap.add_argument("--tasks", default="facts,selfaware")
    ap.add_argument("--prompts", type=int, default=200, help="split equally over the tasks")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="0 = one per physical core")
    ap.add_argument("--plain-flash-attn", action="store_true", help="the plain loop computes attention as bench does")
    ap.add_argument("--plain-weights", choices=("packaged", "served"), default="packaged",
                    help="the plain loop's weights: the shipped Q4_1, or the file bench served (--bench run)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up when the output is a file

    if args.plain_weights == "served" and args.bench != "run":
        ap.error("--plain-weights served needs --bench run (the served file is what a run exports)")
    threads = args.threads or default_threads()
    tasks = [t for t in args.tasks.split(",") if t]
    per_task = args.prompts // len(tasks)
    print(header(threads))
    with tempfile.TemporaryDirectory(prefix="bench-gen-cache-") as cache:
        spec = resolve_model("smollm2-135m", Path(cache))
        probe = LlamaBackend(spec, threads=threads)
        template = probe.template
        probe.close()
        plain_path = str(spec.path)
        if args.bench == "run":
            keep = Path(cache) / "served.gguf" if args.plain_weights == "served" else None
            t_b, tok_b, out_b, prompts = bench_run(tasks, per_task, args.max_new_tokens, threads, args.warm_model,
                                                    args.serve_format, keep)
            plain_path = str(keep) if keep else plain_path
        else:
            prompts = [p for t in tasks for p in zero_shot_prompts(template, t, per_task)]
            t_b, tok_b, out_b, _ = bench_backend(spec, prompts, args.max_new_tokens, threads)
        print(f"bench ({args.bench}) done ({load()})", flush=True)
        t_p, tok_p, out_p = plain_loop(plain_path, prompts, args.max_new_tokens, template.stop, threads,
                                       args.plain_flash_attn)
    same = sum(a == b for a, b in zip(out_b, out_p))
    bench_tps, plain_tps = tok_b / t_b, tok_p / t_p
    print(f"prompts: {len(prompts)} ({', '.join(tasks)} zero-shot), max_new_tokens {args.max_new_tokens}, greedy; "
          f"completion tokens: bench {tok_b}, plain {tok_p}")
    weights = "bench's served file" if args.plain_weights == "served" else "packaged Q4_1"
    print(f"plain llama-cpp-python loop ({weights}{', flash attention' if args.plain_flash_attn else ''}): "
          f"{plain_tps:6.1f} completion tokens/s ({t_p:.1f} s, model load included)")
    mode = args.bench + (", serving export cached" if args.warm_model else "") \
        + (f", serve_format {args.serve_format}" if args.serve_format != "auto" else "")
    print(f"bench ({mode}):{'':8}{bench_tps:6.1f} completion tokens/s ({t_b:.1f} s, model load included)")
    print(f"ratio bench/plain: {bench_tps / plain_tps:.2f}x  (target >= 3x)")
    print(f"identical greedy answers: {same}/{len(prompts)}")
    print(f"# {load()}")


if __name__ == "__main__":
    main()
