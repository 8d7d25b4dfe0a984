"""Reading a finished run folder into plain Python objects, once, for every part of the report.

A run folder (DESIGN.md, bench.results) holds manifest.json, rows.jsonl and cells/<cell_id>/ with
scores.jsonl, cost.json, generations.jsonl and, for fine-tunes, train_log.jsonl. `load(run_dir)` reads
them and attaches each cell to its (task, strategy, model, seed). What an arm is (its family, its
parts, the arm it is compared with for forgetting, whether it is a diagnostic such as rag_oracle)
comes from the manifest, which the runner wrote from the strategy classes: the report keeps no list
of strategy names of its own. Missing cell files are tolerated (a cell without scores still has rows),
but a cell whose scores.jsonl is missing, empty or damaged says so in `unscored`: the analysis must not
decide between arms when it cannot see all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bench.atomic import read_jsonl
from bench.errors import BenchError
from bench.results import (
    COST,
    GENERATIONS,
    SCORES,
    cell_dir,
    cell_id,
    load_rows,
    read_json,
)

TRAIN_LOG = "train_log.jsonl"


@dataclass(frozen=True)
class ArmInfo:
    """What the manifest says of one arm (bench.run.pipeline.Arm.describe)."""

    name: str
    family: str
    parts: dict  # part name -> its family
    base: str  # the arm without its fine-tuning part
    without_retrieval: str  # the arm without its retrieval part
    diagnostic: bool = False  # reads gold information (rag_oracle): a ceiling, never recommended

    @property
    def retrieval_part(self) -> Optional[str]:
        return next((p for p, f in self.parts.items() if f == "retrieval"), None)


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
    unscored: Optional[str] = None  # why the cell has no per-item scores (missing, empty or damaged file)


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

    def arm(self, strategy: str) -> ArmInfo:
        """The manifest's description of an arm; for a name it lacks, what its rows say (family only)."""
        d = (self.manifest.get("strategies") or {}).get(strategy)
        if isinstance(d, dict):
            return ArmInfo(strategy, d.get("family", "prompting"), dict(d.get("parts") or {}), d.get("base", strategy),
                           d.get("without_retrieval", strategy), bool(d.get("diagnostic")))
        fam = next((r.get("family") for r in self.rows if r["strategy"] == strategy and r.get("family")), "prompting")
        return ArmInfo(strategy, fam, {}, strategy, strategy)

    def family(self, strategy: str) -> str:
        return self.arm(strategy).family

    def task_info(self, task: str) -> dict[str, Any]:
        """language, abstain_phrase, kind of a task as the manifest recorded them."""
        info = (self.manifest.get("tasks") or {}).get(task) or {}
        return {"language": info.get("language", "en"), "abstain_phrase": info.get("abstain_phrase"),
                "kind": info.get("kind")}

    @property
    def gpu(self) -> bool:
        return bool((self.manifest.get("hardware") or {}).get("cuda"))


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
        folder = cell_dir(run_dir, cell_id(task, strategy, model, seed))
        scores, unscored = _scores(folder / SCORES)
        cells.append(Cell(task, strategy, model, seed, folder, cost=read_json(folder / COST), scores=scores,
                          train_log=read_jsonl(folder / TRAIN_LOG, appended=True),
                          latency_mean_s=_mean_latency(folder / GENERATIONS), unscored=unscored))
    return Run(run_dir, manifest, rows, cells)


def _scores(path: Path) -> tuple[list[dict], Optional[str]]:
    """A cell's per-item scores, or [] and why there are none."""
    if not path.is_file():
        return [], f"{path.parent.name}/{SCORES} is missing"
    try:
        scores = read_jsonl(path)
    except BenchError:
        return [], f"{path.parent.name}/{SCORES} is damaged"
    return scores, None if scores else f"{path.parent.name}/{SCORES} is empty"
