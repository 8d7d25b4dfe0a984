"""Reading a finished run folder into plain Python objects, once, for every part of the report.

A run folder (DESIGN.md) holds manifest.json, rows.jsonl and cells/<cell_id>/ with scores.jsonl,
cost.json, generations.jsonl and, for fine-tunes, train_log.jsonl. `load(run_dir)` reads them and
attaches each cell to its (task, strategy, model, seed) through the runner's cell id. Missing files
are tolerated (a cell without scores still has rows); a folder without rows.jsonl is not a run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bench.errors import BenchError

FINETUNE = {"lora", "qlora", "full", "dora", "adalora", "loftq", "ia3", "prefix", "prompt_tuning", "freeze",
            "pretrain", "continued_pretraining", "raft"}
RETRIEVAL = {"rag", "rag_oracle"}


def parts(strategy: str) -> list[str]:
    return [p for p in strategy.split("+") if p]


def family(strategy: str) -> str:
    """fine-tuning if any part trains, else retrieval if any part retrieves, else prompting."""
    ps = parts(strategy)
    if any(p in FINETUNE for p in ps):
        return "fine-tuning"
    if any(p in RETRIEVAL for p in ps):
        return "retrieval"
    return "prompting"


def base_of(strategy: str) -> str:
    """The same arm without its fine-tuning part (lora+rag -> rag; lora -> zero_shot)."""
    rest = [p for p in parts(strategy) if p not in FINETUNE]
    return "+".join(rest) or "zero_shot"


def cell_id(task: str, arm: str, model: str, seed: int) -> str:
    try:
        from bench.runner import cell_id as runner_cell_id
    except Exception:  # pragma: no cover - the runner's heavy imports failing must not stop a report
        safe = lambda s: re.sub(r"[^A-Za-z0-9_.+-]", "_", s)  # noqa: E731
        return f"{safe(task)}__{safe(arm)}__{safe(model)}__s{seed}"
    return runner_cell_id(task, arm, model, seed)


def read_jsonl(path: Path) -> list[dict]:
    out = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of an interrupted log is skipped, not fatal
    return out


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


@dataclass
class Cell:
    task: str
    strategy: str
    model: str
    seed: int
    folder: Path
    cost: dict = field(default_factory=dict)
    scores: list[dict] = field(default_factory=list)
    train_log: list[dict] = field(default_factory=list)
    latency_mean_s: Optional[float] = None


@dataclass
class Run:
    folder: Path
    manifest: dict
    rows: list[dict]
    cells: list[Cell]

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(r["task"] for r in self.rows))

    def strategies(self, task: str) -> list[str]:
        return list(dict.fromkeys(r["strategy"] for r in self.rows if r["task"] == task and r.get("kind") != "probe"))

    def cells_of(self, task: str, strategy: str) -> list[Cell]:
        return [c for c in self.cells if c.task == task and c.strategy == strategy]

    @property
    def gpu(self) -> bool:
        return bool((self.manifest.get("hardware") or {}).get("cuda"))


def load_rows(run_dir: str | Path) -> tuple[dict, list[dict]]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BenchError(f"{run_dir}: no such folder; pass a run folder under results/")
    if not (run_dir / "rows.jsonl").is_file():
        raise BenchError(f"{run_dir}: not a run folder (no rows.jsonl); pass a folder under results/")
    manifest = read_json(run_dir / "manifest.json")
    rows = read_jsonl(run_dir / "rows.jsonl")
    for i, r in enumerate(rows, 1):
        missing = [k for k in ("task", "strategy", "metric") if k not in r]
        if missing:
            raise BenchError(f"{run_dir / 'rows.jsonl'}:{i}: row lacks {', '.join(missing)}")
    return manifest, rows


def _mean_latency(path: Path) -> Optional[float]:
    """Mean seconds per query from generations.jsonl (all samples of a query summed)."""
    per: dict[str, float] = {}
    for g in read_jsonl(path):
        s = g.get("seconds")
        if isinstance(s, (int, float)):
            per[str(g.get("example_id"))] = per.get(str(g.get("example_id")), 0.0) + float(s)
    return sum(per.values()) / len(per) if per else None


def load(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    manifest, rows = load_rows(run_dir)
    keys = list(dict.fromkeys((r["task"], r["strategy"], r.get("model", "?"), r.get("seed", 0)) for r in rows))
    cells = []
    for task, strategy, model, seed in keys:
        folder = run_dir / "cells" / cell_id(task, strategy, model, seed)
        cells.append(Cell(task, strategy, model, seed, folder, cost=read_json(folder / "cost.json"),
                          scores=read_jsonl(folder / "scores.jsonl"), train_log=read_jsonl(folder / "train_log.jsonl"),
                          latency_mean_s=_mean_latency(folder / "generations.jsonl")))
    return Run(run_dir, manifest, rows, cells)


def task_meta(manifest: dict, task: str) -> dict[str, Any]:
    """language and abstain_phrase of a task, read from its task.yaml when the folder still exists."""
    info = ((manifest.get("tasks") or {}).get(task) or {})
    out = {"language": info.get("language", "en"), "abstain_phrase": info.get("abstain_phrase")}
    path = info.get("path")
    if path and (Path(path) / "task.yaml").is_file():
        try:
            import yaml

            meta = yaml.safe_load((Path(path) / "task.yaml").read_text(encoding="utf-8")) or {}
            out["language"] = str(meta.get("language") or out["language"])
            out["abstain_phrase"] = meta.get("abstain_phrase") or out["abstain_phrase"]
        except Exception:
            pass
    return out
