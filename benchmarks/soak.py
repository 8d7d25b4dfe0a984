"""Memory stays flat: 1,000 answers generated in one process through bench's generation path.

The packaged SmolLM2 is loaded the way a run loads it (`bench.run.pool.ModelPool`), and every answer
goes through `CellContext.generate`: the model's chat template, the generation cache (a fresh SQLite
file, so every call is a miss and reaches the model), then the backend. Prompts are the zero-shot
prompts of the demo and facts test items, each made distinct with a numbered suffix, so nothing is
answered from the cache. The resident set size (RSS) is taken after loading, after a warm-up (the
allocators of llama.cpp and SQLite settle in the first calls), every `--every` answers, and at the
end; the growth from after the warm-up to the end is the figure (target: below 5 %). Python's own
object count is printed beside it, to tell a leak of Python objects from one in native memory.

    python benchmarks/soak.py [--answers 1000] [--warmup 20] [--max-new-tokens 8] [--threads 2] [--every 100]
                              [--serve-format auto|native|f16|...] [--cache-dir DIR]

Exits 1 when the growth is over the target. Check figures on an idle machine; the load is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from bench.config import RunConfig  # noqa: E402
from bench.cpu import cpu_info  # noqa: E402
from bench.models.resolve import resolve_model  # noqa: E402
from bench.prompts import build_messages  # noqa: E402
from bench.run.cache import GenerationCache  # noqa: E402
from bench.run.context import CellContext  # noqa: E402
from bench.run.plan import resolve_task  # noqa: E402
from bench.run.pool import ModelPool  # noqa: E402
from bench.types import GenParams  # noqa: E402

TASKS = ("demo", "facts")
TARGET_PERCENT = 5.0


def rss_mib() -> float:
    """Resident set size of this process in MiB, after a full garbage collection."""
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def prompts(n: int):
    """n distinct zero-shot message lists: the test items of TASKS in turn, each with a numbered suffix."""
    items = [(task, ex) for task in (resolve_task(name) for name in TASKS) for ex in task.test]
    for i in range(n):
        task, ex = items[i % len(items)]
        yield build_messages(task, dataclasses.replace(ex, instruction=f"{ex.instruction} (question {i})"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=int, default=1000, help="answers generated after the warm-up (default 1000)")
    ap.add_argument("--warmup", type=int, default=20, help="answers before the starting RSS is taken (default 20)")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: one per core)")
    ap.add_argument("--every", type=int, default=100, help="print the RSS every N answers (default 100)")
    ap.add_argument("--serve-format", help="weights format the model is served in (default: as `bench run`)")
    ap.add_argument("--cache-dir", help="model cache (an exported format is kept there; default: a temporary folder)")
    args = ap.parse_args()

    print(f"# {cpu_info().summary()}; {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        changes = {"tasks": TASKS, "threads": args.threads, "cache_dir": args.cache_dir or tmp,
                   "generation": GenParams(max_new_tokens=args.max_new_tokens)}
        if args.serve_format:
            changes["serve_format"] = args.serve_format
        config = RunConfig().replace(**changes)
        spec = resolve_model("smollm2-135m", config.resolved_cache_dir())
        rss_before = rss_mib()
        pool = ModelPool(config)
        t0 = time.perf_counter()
        backend = pool.get(spec)
        cache = GenerationCache(Path(tmp) / "generations.sqlite")
        task = resolve_task(TASKS[0])
        ctx = CellContext(task=task, config=config, seed=0, model=spec, backend=backend, cache=cache,
                          strategy_key="soak", progress=False)
        print(f"model {spec.name} on {backend.name} ({getattr(backend, 'weights_format', '?')}), loaded in "
              f"{time.perf_counter() - t0:.1f} s; RSS {rss_before:.1f} MiB before loading, {rss_mib():.1f} MiB after")

        stream = prompts(args.warmup + args.answers)
        for _ in range(args.warmup):
            ctx.generate(next(stream))
        start, objects_start, t0 = rss_mib(), len(gc.get_objects()), time.perf_counter()
        print(f"after {args.warmup} warm-up answers: RSS {start:.1f} MiB, {objects_start:,} Python objects")
        tokens = 0
        for i in range(1, args.answers + 1):
            tokens += ctx.generate(next(stream)).completion_tokens
            if i % args.every == 0 or i == args.answers:
                rss = rss_mib()
                print(f"  {i:>6} answers  RSS {rss:8.1f} MiB  ({(rss - start) / start * 100:+.2f} %)  "
                      f"{time.perf_counter() - t0:7.1f} s  {load()}", flush=True)
        end, objects_end = rss_mib(), len(gc.get_objects())
        assert cache.misses == args.warmup + args.answers, "every prompt is distinct: none may come from the cache"
        growth = (end - start) / start * 100
        print(f"answers: {args.answers} ({tokens} completion tokens, {args.max_new_tokens} max each), "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"RSS start {start:.1f} MiB, end {end:.1f} MiB, growth {end - start:+.1f} MiB = {growth:+.2f} % "
              f"(target below {TARGET_PERCENT:.0f} %); Python objects {objects_start:,} -> {objects_end:,}")
        print(f"# {load()}")
        cache.close()
        pool.close()
    return 0 if growth < TARGET_PERCENT else 1


if __name__ == "__main__":
    raise SystemExit(main())
