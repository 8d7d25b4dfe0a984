"""Serving formats on this CPU: prompt processing and decode speed of SmolLM2 in every GGUF type bench serves.

The packaged Q4_1 file, and the same weights exported by bench the way fine-tuned arms are
(`bench.models.convert.hf_checkpoint` + `export_gguf` as f32, f16 and q8_0), each loaded with llama.cpp's
extra buffer types off and on (where `extra_bufts_enabled` allows it: never on AMX CPUs, which crash). For
each: prompt processing tokens/s (long zero-shot prompts of a built-in task, one at a time and all at
once), decode tokens/s of one sequence and of a batch, and greedy agreement with the f32 export on
zero-shot prompts (the f32 file is the exported weights without rounding). `bench.models.llama.
serving_dtype()` names the format the lead serves every arm in; this script shows why.

    python benchmarks/formats.py [--threads 2] [--batch 32] [--max-new-tokens 64] [--agree 40] [--cache DIR]

The helpers below (prompts, rates, header) are shared with benchmarks/peak.py and benchmarks/generation.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import cpu_info
from bench.models.chat import ChatTemplate
from bench.models.llama import BatchDecoder, extra_bufts_enabled, load_model
from bench.models.serving import serving_dtype
from bench.types import GenParams, GenRequest

TOPICS = ["the ocean", "a library", "winter", "bread", "a bicycle", "the moon", "a garden", "coffee", "trains",
          "music", "mountains", "rain", "a city at night", "chess", "the desert", "a lighthouse"]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(threads: int) -> str:
    """What every benchmark prints first: the CPU, the thread count and the load."""
    return f"# {cpu_info().summary()}; {threads} threads; {load()}"


def zero_shot_prompts(template: ChatTemplate, task_name: str, n: int) -> list[str]:
    """The zero-shot prompts bench renders for the first n test items of a built-in task."""
    import tasks
    from bench.prompts import build_messages
    from bench.registry import TASKS

    task = TASKS.get(task_name).load()
    return [template.render(build_messages(task, ex)) for ex in task.test[:n]]


def essay_prompts(template: ChatTemplate, n: int) -> list[str]:
    """Prompts that make the model write at length (decode speed needs sequences that do not stop early)."""
    return [template.render([{"role": "user", "content": f"Write a long essay about {TOPICS[i % len(TOPICS)]}. (#{i})"}])
            for i in range(n)]


def timed(dec: BatchDecoder, prompts: list[str], max_new: int) -> tuple[float, int, int, list[str]]:
    """(seconds, prompt tokens, completion tokens, outputs) of one greedy generate_batch call."""
    t0 = time.perf_counter()
    gens = dec.generate([GenRequest(p, GenParams(max_new_tokens=max_new)) for p in prompts])
    dt = time.perf_counter() - t0
    return dt, sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens), [g.output for g in gens]


def step_rate(dec: BatchDecoder, decoding: bool) -> float:
    """Tokens/s of the last call's llama_decode steps that only processed prompts (decoding=False) or only
    decoded (decoding=True): the kernels' speed, without tokenizing, sampling or context setup."""
    if decoding:
        steps = [(d, t) for p, d, t in dec.steps if p == 0 and d > 0]
    else:
        steps = [(p, t) for p, d, t in dec.steps if d == 0]
    seconds = sum(t for _, t in steps)
    tokens = sum(n for n, _ in steps)
    return tokens / seconds if seconds > 0 else float("nan")


def rates(dec: BatchDecoder, long_prompts: list[str], short_prompts: list[str], batch: int, max_new: int,
          repeats: int = 2) -> dict:
    """Best of `repeats`: prompt processing tokens/s (each long prompt alone; all together) and decode
    tokens/s (one sequence; `batch` sequences), from the decoder's pure prompt / pure decode steps."""
    dec.generate([GenRequest(short_prompts[0], GenParams(max_new_tokens=2))])  # warm up
    out = {"pp1": 0.0, "pp_batch": 0.0, "decode1": 0.0, "decode_batch": 0.0}
    for _ in range(repeats):
        n = t = 0.0
        for p in long_prompts:
            timed(dec, [p], 1)
            n += sum(p_ for p_, _, _ in dec.steps)
            t += sum(t_ for _, _, t_ in dec.steps)
        out["pp1"] = max(out["pp1"], n / t)
        timed(dec, long_prompts, 1)
        out["pp_batch"] = max(out["pp_batch"], step_rate(dec, decoding=False))
        timed(dec, short_prompts[:1], max_new)
        out["decode1"] = max(out["decode1"], step_rate(dec, decoding=True))
        timed(dec, short_prompts[:batch], max_new)
        out["decode_batch"] = max(out["decode_batch"], step_rate(dec, decoding=True))
    return out


def export_formats(cache: Path, dtypes: tuple[str, ...]) -> dict[str, Path]:
    """The packaged SmolLM2 exported by bench in each dtype (cached under `cache`)."""
    from bench.models.convert import export_gguf, load_pretrained
    from bench.models.resolve import resolve_model

    spec = resolve_model("smollm2-135m", cache)
    files = {d: cache / f"smollm2-135m-{spec.sha256[:12]}-{d}.gguf" for d in dtypes}
    todo = [d for d, f in files.items() if not f.is_file()]
    if todo:
        import torch

        model, _ = load_pretrained(spec, cache, dtype=torch.float32)
        for d in todo:
            export_gguf(model, spec.path, files[d], d)
    return {"q4_1 (packaged)": spec.path, **files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="0 = one per physical core")
    ap.add_argument("--batch", type=int, default=32, help="sequences decoded at once")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--long", type=int, default=8, help="long prompts (pubmedqa zero-shot) for prompt processing")
    ap.add_argument("--agree", type=int, default=40, help="facts zero-shot prompts for greedy agreement")
    ap.add_argument("--formats", default="f32,f16,bf16,q8_0",
                    help="bench's exports to measure beside the packaged Q4_1 (f32 is always included: the reference)")
    ap.add_argument("--cache", default=None, help="where the exports go (default: a temp dir; conversion ~1 min)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up when the output is a file

    from bench.models.llama import default_threads
    from bench.models.resolve import resolve_model

    threads = args.threads or default_threads()
    print(header(threads))
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-formats-"))
    files = export_formats(cache, tuple(dict.fromkeys(["f32", *[f for f in args.formats.split(",") if f]])))
    spec = resolve_model("smollm2-135m", cache)
    from bench.models.llama import LlamaBackend

    probe = LlamaBackend(spec, threads=threads)
    template = probe.template
    probe.close()
    long_prompts = zero_shot_prompts(template, "pubmedqa", args.long)
    short_prompts = essay_prompts(template, args.batch)
    agree_prompts = zero_shot_prompts(template, "facts", args.agree)
    bufts = [False, True] if extra_bufts_enabled() else [False]

    rows, answers = [], {}
    for name, path in files.items():
        for eb in bufts:
            model = load_model(str(path), extra_bufts=eb)
            dec = BatchDecoder(model, threads, n_ctx=2048)
            r = rates(dec, long_prompts, short_prompts, args.batch, args.max_new_tokens)
            if not eb:
                answers[name] = timed(dec, agree_prompts, 32)[3]
            dec.close()
            model.close()
            rows.append((name, eb, r, path.stat().st_size / 2**20))
            print(f"  measured {name} extra_bufts={'on' if eb else 'off'}  ({load()})", flush=True)

    ref = answers["f32"]
    print(f"\nprompt processing: {args.long} pubmedqa zero-shot prompts; decode: {args.max_new_tokens} new tokens, "
          f"1 and {args.batch} sequences; agreement: greedy answers to {args.agree} facts prompts equal to f32's")
    print(f"{'format':16} {'extra bufts':>11} {'MiB':>6} {'pp 1 seq':>9} {'pp batch':>9} {'decode 1':>9} "
          f"{'decode ' + str(args.batch):>10} {'= f32':>6}")
    for name, eb, r, mib in rows:
        same = sum(a == b for a, b in zip(answers[name], ref))
        print(f"{name:16} {'on' if eb else 'off':>11} {mib:6.0f} {r['pp1']:9.1f} {r['pp_batch']:9.1f} "
              f"{r['decode1']:9.1f} {r['decode_batch']:10.1f} {same:3d}/{len(ref)}")
    print("(tokens/s)")
    print(f"serving_dtype() on this CPU: {serving_dtype()}")
    print(f"# {load()}")


if __name__ == "__main__":
    main()
