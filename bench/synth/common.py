"""Shared machinery of the generators: stable RNG streams, the manifest, and verification at load.

A generated task folder holds manifest.json: generator name and version, seed, full config, and the
sha256 of every data file; `bench.taskio` checks those hashes whenever such a folder is loaded.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import yaml

from bench.atomic import json_line
from bench.errors import BenchError
from bench.hashing import sha256_file
from bench.taskio import DOCS, MANIFEST, TASK_YAML, TEST, TRAIN

DATA_FILES = (TASK_YAML, TRAIN, TEST, DOCS)



def stream(seed: int, kind: str, idx: Any = 0) -> random.Random:
    """An independent RNG for one item: adding items never reshuffles the others (data-notes §6.3)."""
    digest = hashlib.sha256(f"{seed}:{kind}:{idx}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def dumps_jsonl(rows: list[dict]) -> str:
    return "".join(json_line(r, sort_keys=True) for r in rows)


def write_task_folder(folder: Path, meta: dict, splits: dict[str, list[dict]], *, generator: str, version: str,
                      seed: int, config: dict, stats: dict | None = None) -> dict:
    """Write task.yaml, the JSONL files and manifest.json; returns the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=100), encoding="utf-8")
    for name, rows in splits.items():
        if rows:
            (folder / f"{name}.jsonl").write_text(dumps_jsonl(rows), encoding="utf-8")
    files = {n: sha256_file(folder / n) for n in DATA_FILES if (folder / n).is_file()}
    manifest = {"generator": generator, "generator_version": version, "seed": seed, "config": config,
                "files": files, "stats": stats or {}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def folder_digest(folder: Path) -> str:
    """One hash over the data files of a generated folder (what the determinism test pins)."""
    h = hashlib.sha256()
    for n in DATA_FILES:
        p = Path(folder) / n
        if p.is_file():
            h.update(n.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def check_range(where: str, name: str, value: Any, lo: float, hi: float) -> None:
    """BenchError unless lo <= value <= hi (a generator parameter)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise BenchError(f"{where}: {name} must be a number in [{lo}, {hi}], got {value!r}")
