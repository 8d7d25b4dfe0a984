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

from bench import atomic
from bench.hashing import sha256_json
from bench.models.convert import EXPORT_TYPES, export_gguf, load_pretrained
from bench.models.resolve import ModelSpec
from bench.results import read_json

NATIVE = "native"  # the model file as shipped (the packaged SmolLM2 is Q4_1)
DEFAULT_FORMAT = "f16"  # exact for the fp32 weights the fine-tunes are trained in at half the memory of f32


def resolve_format(requested: str) -> str:
    """The dtype every arm is served in: `requested`, or for "auto" the default export dtype (f16).

    f16 is what merged fine-tunes are exported in, so "auto" serves the base in it too; "native"
    keeps the shipped file for the base (fine-tunes cannot be written back in every shipped type,
    and the report then shows the formats differ).
    """
    return DEFAULT_FORMAT if requested == "auto" else requested


def export_format(fmt: str) -> str:
    """The dtype a merged fine-tune is written in when the run serves `fmt` (native has no exporter)."""
    return fmt if fmt in EXPORT_TYPES else DEFAULT_FORMAT


def served_path(spec: ModelSpec, cache_dir: str | Path, fmt: str) -> Path:
    return Path(cache_dir) / "models" / "served" / f"{spec.sha256[:24]}-{fmt}.gguf"


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
