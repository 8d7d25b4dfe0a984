#!/usr/bin/env python
"""Beyond one process: a grid's wall time with the local executor and with Ray, and the endpoint
backend's tokens/s against the in-process backend at concurrency 1 and 4.

Why: `--executor ray` and `--model openai/NAME` are only worth their overhead if a user can see what
they cost on the machine at hand. Both parts print the CPU, the load average before and after, and
the thread counts.

1. Grid: 2 tasks x 4 prompting/retrieval arms x 2 seeds (`--limit` items each), run once as
   `bench run` (local executor) and once as `bench run --executor ray` (a local Ray with this
   machine's cores), each into a fresh results folder whose cache holds only the one-off model
   conversion (made once, copied), so both do the same generation work. Both must give the same
   quality rows.
2. Endpoint: llama-cpp-python's OpenAI-compatible server on 127.0.0.1 serving the packaged SmolLM2
   GGUF, asked `--prompts` zero-shot questions greedily through bench's endpoint backend with
   `max_concurrency` 1 and 4, against bench's in-process llama backend on the same file with the same
   total threads. Completion tokens/s from the tokens each path reports.

    python benchmarks/scale_out.py                      # both parts (about 10 minutes on 2 cores)
    python benchmarks/scale_out.py --part endpoint --prompts 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.pop("BENCH_MODELS_DIR", None)  # warm caches are set up by copying <out>/.cache/models

GRID_TASKS = "capitals,townfacts"
GRID_ARMS = "zero_shot,few_shot,cot,rag"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def quality(run_dir: Path) -> list:
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted((r["task"], r["strategy"], r["seed"], r["metric"], r["value"]) for r in rows
                  if r.get("kind") == "quality")


def grid(work: Path, limit: int, env: dict) -> None:
    args = ["--task", GRID_TASKS, "--strategy", GRID_ARMS, "--seeds", "0,1", "--limit", str(limit),
            "--probes", "none", "--run-id", "g", "--no-progress"]

    def bench(out: Path, *extra: str) -> float:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "bench", "run", *args, "--out", str(out), *extra], cwd=ROOT,
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"bench run {' '.join(extra)} failed:\n{res.stdout[-1500:]}\n{res.stderr[-1500:]}")
        return time.perf_counter() - t0

    warm = work / "warm"
    bench(warm, "--limit", "1")  # the serving export of the base model, made once
    models = warm / ".cache" / "models"
    times, runs = {}, {}
    for name, extra in (("local", ()), ("ray", ("--executor", "ray"))):
        out = work / name
        shutil.copytree(models, out / ".cache" / "models")
        before = load()
        times[name] = bench(out, *extra)
        runs[name] = quality(out / "g")
        print(f"grid {GRID_TASKS} x {GRID_ARMS} x 2 seeds, {limit} items: {name:5s} {times[name]:6.1f} s wall "
              f"(load {before} -> {load()})")
    same = runs["local"] == runs["ray"]
    print(f"ray / local wall time: {times['ray'] / times['local']:.2f}; quality rows identical: {same}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoint(work: Path, n: int, max_new: int, threads: int, env: dict) -> None:
    from bench.config import EndpointConfig
    from bench.models.endpoint import EndpointBackend
    from bench.models.llama import LlamaBackend, server_command
    from bench.models.resolve import resolve_model
    from bench.taskio import load_folder
    from bench.types import GenParams, GenRequest

    task = load_folder(ROOT / "tasks" / "townfacts")
    questions = [e.instruction for e in (*task.test, *task.train)][:n]
    spec = resolve_model("smollm2-135m", work)
    params = GenParams(max_new_tokens=max_new)

    local = LlamaBackend(spec, threads=threads)
    prompts = [local.render([{"role": "user", "content": q}]) for q in questions]
    reqs = [GenRequest(p, params, seed=0) for p in prompts]
    before = load()
    t0 = time.perf_counter()
    gens = local.generate_batch(reqs)
    wall = time.perf_counter() - t0
    local.close()
    toks = sum(g.completion_tokens for g in gens)
    print(f"in-process llama backend, generate_batch of {n}: {toks / wall:6.1f} completion tokens/s "
          f"({toks} tokens, {wall:.1f} s; {threads} threads; load {before} -> {load()})")
    local_out = [g.output for g in gens]

    port = free_port()
    log = work / "server.log"
    with log.open("ab") as f:
        proc = subprocess.Popen(server_command(str(spec.path), port, threads),
                                cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    sys.exit(f"llama_cpp.server did not start; see {log}")
                time.sleep(0.5)
        for conc in (1, 4):
            cfg = EndpointConfig(base_url=url, api_key_env="BENCH_NO_KEY", max_concurrency=conc, timeout_s=120.0,
                                 max_retries=2)
            served = EndpointBackend(resolve_model("openai/smollm2", work, cfg), cfg)
            before = load()
            t0 = time.perf_counter()
            gens = served.generate_batch(reqs)
            wall = time.perf_counter() - t0
            served.close()
            failed = sum(1 for g in gens if g.error)
            toks = sum(g.completion_tokens for g in gens)
            agree = sum(a == g.output for a, g in zip(local_out, gens))
            print(f"endpoint (llama_cpp.server, {threads} threads), concurrency {conc}: {toks / wall:6.1f} completion "
                  f"tokens/s ({toks} tokens, {wall:.1f} s, {failed} failed, {agree}/{n} answers equal the in-process "
                  f"backend's; load {before} -> {load()})")
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("both", "grid", "endpoint"), default="both")
    ap.add_argument("--limit", type=int, default=10, help="test items per task in the grid")
    ap.add_argument("--prompts", type=int, default=40, help="prompts for the endpoint comparison")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0, help="model threads (0 = one per physical core)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    from bench.cpu import cpu_info
    from bench.models.llama import default_threads

    threads = args.threads or default_threads()
    print(f"CPU: {cpu_info().summary()}; load average {load()}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        if args.part in ("both", "grid"):
            grid(work / "grid", args.limit, env)
        if args.part in ("both", "endpoint"):
            (work / "endpoint").mkdir()
            endpoint(work / "endpoint", args.prompts, args.max_new_tokens, threads, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
