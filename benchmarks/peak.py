"""Distance to the limit: this machine's measured matmul peak and the share of it bench's generation reaches.

The peak is the best of several large square matmuls (torch on `--threads` threads, fp32, and bf16 where the
CPU has native bf16; numpy fp32 for reference). bench's side is the llama.cpp decoder on SmolLM2: prompt
processing (long zero-shot prompts processed together) and batched decode (`--batch` sequences), in the
packaged Q4_1 and in the serving format (`serving_dtype()`, exported by bench), converted to GFLOPS with
the model's FLOPs per token (2 x the parameters that multiply: the body and the output projection, plus
attention over the average context). The fraction printed is that GFLOPS over the fp32 (and bf16) peak.

    python benchmarks/peak.py [--threads 2] [--batch 32] [--size 2048] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def matmul_gflops(lib: str, dtype: str, n: int, threads: int, repeats: int = 5) -> float:
    """Best GFLOPS of an n x n @ n x n matmul (2 n^3 FLOPs) over `repeats` runs."""
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
        dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        mm = lambda: torch.mm(a, b)
    else:
        import numpy as np

        a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
        mm = lambda: a @ b
    mm()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def flops_per_token(path: Path, model, avg_context: float) -> float:
    """FLOPs to process one token: 2 per multiplying parameter (the token embedding is a lookup unless it
    is tied to the output projection) plus QK and AV attention over `avg_context` cells in every layer."""
    from gguf import GGUFReader

    from bench.models.llama import _lowlevel

    lib = _lowlevel()
    m = model.model
    n_params = lib.llama_model_n_params(m)
    n_embd, n_layer = lib.llama_model_n_embd(m), lib.llama_model_n_layer(m)
    n_vocab = lib.llama_vocab_n_tokens(model.vocab)
    tied = "output.weight" not in {t.name for t in GGUFReader(str(path)).tensors}
    multiplying = n_params if tied else n_params - n_embd * n_vocab
    attn_width = lib.llama_model_n_head(m) * (n_embd // lib.llama_model_n_head(m))
    return 2 * multiplying + 4 * n_layer * attn_width * avg_context


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="0 = one per physical core")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--long", type=int, default=8, help="long prompts for prompt processing")
    ap.add_argument("--size", type=int, default=2048, help="matmul size")
    ap.add_argument("--cache", default=None, help="where the serving-format export goes (default: a temp dir)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up when the output is a file

    from bench.models.llama import default_threads

    threads = args.threads or default_threads()
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    from formats import essay_prompts, export_formats, header, load, rates, zero_shot_prompts

    from bench.cpu import cpu_info
    from bench.models.llama import BatchDecoder, LlamaBackend, load_model
    from bench.models.serving import serving_dtype
    from bench.models.resolve import resolve_model

    print(header(threads))
    peaks = {"torch fp32": matmul_gflops("torch", "fp32", args.size, threads),
             "numpy fp32": matmul_gflops("numpy", "fp32", args.size, threads)}
    if cpu_info().bf16:
        peaks["torch bf16"] = matmul_gflops("torch", "bf16", args.size, threads)
    for k, v in peaks.items():
        print(f"matmul peak {k:11}: {v:7.1f} GFLOPS ({args.size}x{args.size}, best of 5)")
    fp32 = max(peaks["torch fp32"], peaks["numpy fp32"])
    bf16 = peaks.get("torch bf16")

    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-peak-"))
    spec = resolve_model("smollm2-135m", cache)
    probe = LlamaBackend(spec, threads=threads)
    template = probe.template
    probe.close()
    long_prompts = zero_shot_prompts(template, "pubmedqa", args.long)
    short_prompts = essay_prompts(template, args.batch)
    served = serving_dtype()
    files = export_formats(cache, (served,))
    print(f"\nbench on SmolLM2-135M ({args.long} pubmedqa prompts; decode of {args.batch} sequences x "
          f"{args.max_new_tokens} tokens):")
    for name, path in (("q4_1 (packaged)", files["q4_1 (packaged)"]), (f"{served} (served)", files[served])):
        model = load_model(str(path))
        dec = BatchDecoder(model, threads, n_ctx=2048)
        pp_ctx = sum(len(dec.tokenize(p)) for p in long_prompts) / len(long_prompts) / 2
        dec_ctx = sum(len(dec.tokenize(p)) for p in short_prompts) / len(short_prompts) + args.max_new_tokens / 2
        r = rates(dec, long_prompts, short_prompts, args.batch, args.max_new_tokens)
        for what, tps, ctx in (("prompt processing", r["pp_batch"], pp_ctx), ("batched decode", r["decode_batch"], dec_ctx)):
            fpt = flops_per_token(path, model, ctx)
            gf = tps * fpt / 1e9
            frac = f"{gf / fp32:6.1%} of fp32 peak" + (f", {gf / bf16:6.1%} of bf16 peak" if bf16 else "")
            print(f"  {name:16} {what:18}: {tps:7.1f} tokens/s x {fpt / 1e9:.3f} GFLOP "
                  f"= {gf:6.1f} GFLOPS ({frac})")
        dec.close()
        model.close()
    print(f"# {load()}")


if __name__ == "__main__":
    main()
