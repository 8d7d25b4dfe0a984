"""Generation overhead of the harness: bench's path against raw llama-cpp-python.

Same model file, same 50 prompts, same thread count, same decoding, one process. Each prompt runs
through both paths back to back (alternating which goes first), so load drift hits both equally.
bench's path is everything a strategy pays per call: template rendering, cache key, cache lookup
(a miss), llama.cpp generation, cache write. Target ratio >= 0.95.

    python benchmarks/generation.py [--prompts 50] [--max-new-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.config import RunConfig  # noqa: E402
from bench.models.llama import LlamaBackend, open_llama  # noqa: E402
from bench.models.resolve import resolve_model  # noqa: E402
from bench.run.cache import GenerationCache  # noqa: E402
from bench.run.context import CellContext  # noqa: E402
from bench.types import GenParams  # noqa: E402

TOPICS = ["the ocean", "a library", "winter", "bread", "a bicycle", "the moon", "a garden", "coffee", "trains", "music"]
ASKS = ["Describe {} in one sentence.", "Give two facts about {}.", "Why do people like {}?",
        "Write a short title about {}.", "What is the history of {}?"]


def prompts(n: int) -> list[list[dict]]:
    out = []
    for i in range(n):
        ask = ASKS[i % len(ASKS)].format(TOPICS[(i // len(ASKS)) % len(TOPICS)])
        out.append([{"role": "user", "content": f"{ask} (#{i})"}])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()

    print(f"load average before: {os.getloadavg()}  cpus: {os.cpu_count()}  threads: {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        spec = resolve_model(args.model, Path(tmp))
        backend = LlamaBackend(spec, threads=args.threads)
        raw = open_llama(str(spec.path), args.threads, 4096)
        ctx = CellContext(task=None, config=RunConfig(), seed=0, model=spec, backend=backend,
                          cache=GenerationCache(Path(tmp) / "gen.sqlite"), strategy_key="bench#0")
        params = GenParams(max_new_tokens=args.max_new_tokens)
        # warm both paths once
        backend.generate(backend.render(prompts(1)[0]), params, seed=0)
        raw.create_completion(backend.render(prompts(1)[0]), max_tokens=4, temperature=0.0)

        t_bench = t_raw = 0.0
        tok_bench = tok_raw = 0
        for i, msgs in enumerate(prompts(args.prompts)):
            def run_bench():
                t0 = time.perf_counter()
                g = ctx.generate(msgs, params)
                return time.perf_counter() - t0, g.completion_tokens

            def run_raw():
                t0 = time.perf_counter()
                prompt = backend.template.render(msgs)
                out = raw.create_completion(prompt, max_tokens=args.max_new_tokens, temperature=0.0, top_k=1,
                                            seed=0)
                return time.perf_counter() - t0, out["usage"]["completion_tokens"]

            order = (run_bench, run_raw) if i % 2 == 0 else (run_raw, run_bench)
            for fn in order:
                dt, n = fn()
                if fn is run_bench:
                    t_bench, tok_bench = t_bench + dt, tok_bench + n
                else:
                    t_raw, tok_raw = t_raw + dt, tok_raw + n
        bench_tps, raw_tps = tok_bench / t_bench, tok_raw / t_raw
        print(f"prompts: {args.prompts}, completion tokens: bench {tok_bench}, raw {tok_raw}")
        print(f"raw llama-cpp-python: {raw_tps:6.1f} tokens/s ({t_raw:.1f} s)")
        print(f"bench generation path: {bench_tps:6.1f} tokens/s ({t_bench:.1f} s)")
        print(f"ratio bench/raw: {bench_tps / raw_tps:.3f}  (target >= 0.95)")
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
