"""Serving every arm of a model in one weights format, so a comparison never measures a file format.

A fine-tuned arm is merged and exported to GGUF (bench.models.convert.export_gguf) to run on llama.cpp
like every other arm. If the base arms ran the shipped Q4_1 file while fine-tunes ran f16, a fine-tune
would look cheaper (or better) because of its file format: on CPUs where llama.cpp has no fast Q4_1
kernel, f16 prompt processing is much faster than Q4_1 at the same prompt. So the base model is
exported through the same path, in the same dtype, as the merged fine-tunes, and the cost ledger of
every arm names its format and backend.

`resolve_format("auto")` picks the format every arm is served in; `served_spec(spec, cache_dir, fmt)`
gives the base model in that format (exported once, cached under <cache>/models/served/).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

from bench import atomic
from bench.cpu import CpuInfo, cpu_info
from bench.hashing import sha256_json
from bench.models.convert import export_gguf, load_pretrained
from bench.models.resolve import ModelSpec
from bench.models.store import models_dir
from bench.results import read_json
from bench.types import GGUF_TYPES

NATIVE = "native"  # the model file as shipped (the packaged SmolLM2 is Q4_1)
DEFAULT_FORMAT = "f16"  # exact for the fp32 weights the fine-tunes are trained in at half the memory of f32


def serving_dtype(info: Optional[CpuInfo] = None) -> str:
    """The GGUF type (one of bench.types.GGUF_TYPES) every arm of a model is served in on this CPU.

    f16: llama.cpp multiplies f16 weights with its AVX-512/AVX2 tinyBLAS kernels, which need no
    repacking (so no AMX buffer, safe on every CPU of this kind) and keep the exported weights
    unchanged; measured on the AVX-512 EPYC it processes prompts several times faster than the Q4_1 base
    and decodes batches faster, and on a Zen 3 EPYC with AVX2 only it is still the fastest of f32, f16,
    bf16, q8_0 and Q4_1 at 64-sequence decode and prompt processing (benchmarks/formats.py,
    docs/performance.md). Without AVX2 nothing is fast and the smaller q8_0 costs the least memory
    bandwidth. bf16 is faster still on CPUs with AVX-512 BF16 (measured: 17 % less wall time for a whole
    zero-shot run) but rounds the fp32 weights (39 of 40 greedy answers equal to f32's, f16 40 of 40), so
    it is an option (`serve_format: bf16`), never the automatic choice: a verdict must not move with the serving precision.
    """
    return DEFAULT_FORMAT if (info or cpu_info()).fast_f16 else "q8_0"


def resolve_format(requested: str) -> str:
    """The dtype every arm is served in: `requested`, or for "auto" this CPU's `serving_dtype()`.

    Merged fine-tunes are exported in the same dtype, so "auto" serves base and fine-tunes alike;
    "native" keeps the shipped file for the base (fine-tunes cannot be written back in every shipped
    type, and the report then shows the formats differ).
    """
    return serving_dtype() if requested == "auto" else requested


def export_format(fmt: str) -> str:
    """The dtype a merged fine-tune is written in when the run serves `fmt` (native has no exporter)."""
    return fmt if fmt in GGUF_TYPES else DEFAULT_FORMAT


def served_path(spec: ModelSpec, cache_dir: str | Path, fmt: str) -> Path:
    return models_dir(cache_dir) / "served" / f"{spec.sha256[:24]}-{fmt}.gguf"


def export_record(spec: ModelSpec, cache_dir: str | Path, fmt: str) -> dict:
    """What producing the served file cost when it was made ({} when it is not made yet or is native)."""
    if fmt == NATIVE or spec.kind != "gguf":
        return {}
    return read_json(served_path(spec, cache_dir, fmt).with_suffix(".json"))


def served_spec(spec: ModelSpec, cache_dir: str | Path, fmt: str) -> tuple[ModelSpec, dict]:
    """The base model as served in `fmt`, and what producing it cost once ({} when native): the export's
    measured seconds are kept beside the file, so every arm served from it is charged the same one-off.

    Only GGUF models are exported; a transformers model is served by the transformers backend as is.
    """
    if fmt == NATIVE or spec.kind != "gguf" or spec.path is None:
        return spec, {}
    target = served_path(spec, cache_dir, fmt)
    record = target.with_suffix(".json")
    exported_now = False
    if not target.is_file():
        import torch

        t0 = time.perf_counter()
        model, _ = load_pretrained(spec, cache_dir, dtype=torch.float32)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            export_gguf(model, spec.path, tmp, dtype=fmt)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        del model
        atomic.write_json(record, {"export_seconds": round(time.perf_counter() - t0, 3), "source": spec.source})
        exported_now = True
    cost = {**read_json(record), "exported_now": exported_now}
    digest = sha256_json([spec.sha256, "served", fmt])
    return replace(spec, path=target.resolve(), sha256=digest), cost


def cuda_bf16() -> bool:
    """The transformers backend serves bf16 on a CUDA GPU that has it, fp32 otherwise."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
