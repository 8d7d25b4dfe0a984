"""Running the grid: `run_grid` plans every cell, skips finished ones, runs the rest, writes results.

It resolves everything first (a bad task or name stops the run before any model work), writes the
manifest, skips cells whose rows are already on disk, writes each finished cell atomically (its
rows.jsonl last, which marks it complete), rewrites the run's rows.jsonl after each cell, and leaves
the report to the caller. A killed run resumes where it stopped.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from bench import atomic
from bench.config import RunConfig
from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.models.resolve import ModelSpec
from bench.results import (
    CELL_ROWS,
    COST,
    ERROR,
    GENERATIONS,
    MANIFEST,
    PROBES,
    ROWS,
    SCORES,
    cell_dir,
    cell_id,
    git_hash,
    hardware,
    versions,
)
from bench.run.cache import GenerationCache
from bench.run.cell import CellResult, progress_bar, run_cell
from bench.run.context import CellContext
from bench.run.plan import Plan, plan
from bench.run.pool import LazyBackend, ModelPool
from bench.run.strata import slick_strata
from bench.types import Task


def default_run_id(config: RunConfig, tasks: tuple[Task, ...], model: ModelSpec) -> str:
    d = config.to_dict()
    for k in ("out", "run_id", "cache_dir"):
        d.pop(k, None)
    key = sha256_json([d, model.sha256, [t.sha256 for t in tasks]])[:8]
    names = "-".join(t.name for t in tasks)
    if len(names) > 40:
        names = f"{len(tasks)}tasks"
    return f"{names}_{model.name}_{key}"


@dataclass
class GridResult:
    run_dir: Path
    rows: list[dict]
    cells_total: int
    cells_reused: int
    cells_failed: list[str]
    model_calls: int


def manifest_of(config: RunConfig, p: Plan, run_id: str) -> dict:
    """What manifest.json records: config, provenance, the model, every task and every arm with its family."""
    model = p.model
    return {
        "run_id": run_id, "config": config.to_dict(), "versions": versions(), "git_hash": git_hash(),
        "hardware": hardware(), "seeds": list(config.seeds), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": model.name, "kind": model.kind, "source": model.source, "sha256": model.sha256},
        "tasks": {t.name: {"version": t.version, "language": t.language, "kind": t.kind,
                           "abstain_phrase": t.abstain_phrase, "files_sha256": dict(t.files_sha256)} for t in p.tasks},
        "strategies": {a.name: a.describe() for a in p.arms},
    }


def run_grid(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print,
             pool: Optional[ModelPool] = None) -> GridResult:
    """Run every (task, arm, seed) cell of `config` that is not already on disk; see the module docstring."""
    p = plan(config)
    tasks, arms, model = p.tasks, p.arms, p.model
    run_id = config.run_id or default_run_id(config, tasks, model)
    run_dir = Path(config.out) / run_id
    manifest = manifest_of(config, p, run_id)
    atomic.write_json(run_dir / MANIFEST, manifest)
    log(f"run {run_id}: {len(tasks)} task(s) x {len(arms)} strategies x {len(config.seeds)} seed(s) on {model.name}; "
        f"load average {manifest['hardware']['load_avg']}")

    cache = GenerationCache(config.resolved_cache_dir() / "generations.sqlite")
    own_pool = pool is None
    pool = pool or ModelPool(config)
    cells = [(t, a, s) for t in tasks for a in arms for s in config.seeds]
    reused, failed, calls = 0, [], 0
    done: dict[str, list[dict]] = {}
    strata: dict[str, dict[str, str]] = {}
    try:
        for task, arm, seed in progress_bar(cells, len(cells), "cells", progress):
            cid = cell_id(task.name, arm.name, model.name, seed)
            cdir = cell_dir(run_dir, cid)
            if (cdir / CELL_ROWS).is_file():
                done[cid] = atomic.read_jsonl(cdir / CELL_ROWS)
                reused += 1
                continue
            if config.strata and task.name not in strata:
                strata[task.name] = _slick(task, model, config, cache, pool, log)
            try:
                res = run_cell(task, arm, model, config, seed=seed, cache=cache, pool=pool, work_dir=cdir,
                               progress=progress, strata=strata.get(task.name))
            except BenchError:
                raise
            except Exception as e:  # a broken cell is recorded and retried by the next run
                cdir.mkdir(parents=True, exist_ok=True)
                atomic.write_text(cdir / ERROR, traceback.format_exc())
                failed.append(cid)
                log(f"cell {cid} failed: {type(e).__name__}: {e} (traceback in {cdir / ERROR})")
                continue
            calls += res.model_calls
            write_cell(cdir, res)
            done[cid] = [r.to_dict() for r in res.rows]
            _write_rows(run_dir, cells, model, done)
        _write_rows(run_dir, cells, model, done)
    finally:
        cache.close()
        if own_pool:
            pool.close()
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["cells"] = {"total": len(cells), "reused": reused, "failed": failed, "model_calls": calls}
    atomic.write_json(run_dir / MANIFEST, manifest)
    rows = atomic.read_jsonl(run_dir / ROWS)
    return GridResult(run_dir, rows, len(cells), reused, failed, calls)


def write_cell(cdir: Path, res: CellResult) -> None:
    """A finished cell's files, each atomic; its rows.jsonl last, which marks the cell complete."""
    atomic.write_jsonl(cdir / GENERATIONS, res.generations)
    atomic.write_jsonl(cdir / SCORES, res.scores)
    atomic.write_json(cdir / COST, res.cost)
    if res.probe_items:
        atomic.write_json(cdir / PROBES, res.probe_items)
    atomic.write_jsonl(cdir / CELL_ROWS, [r.to_dict() for r in res.rows])
    (cdir / ERROR).unlink(missing_ok=True)


def _slick(task: Task, model: ModelSpec, config: RunConfig, cache: GenerationCache, pool, log) -> dict[str, str]:
    """SliCK strata of a task's test items on the base model (only computed when a cell needs them)."""

    ctx = CellContext(task=task, config=config, seed=0, model=model, backend=LazyBackend(pool, model), cache=cache,
                      strategy_key="slick")
    strata = slick_strata(task, ctx, limit=config.limit)
    counts: dict[str, int] = {}
    for s in strata.values():
        counts[s] = counts.get(s, 0) + 1
    log(f"SliCK strata of {task.name} on {model.name}: {counts}")
    return strata


def _write_rows(run_dir: Path, cells, model: ModelSpec, done: dict[str, list[dict]]) -> None:
    """rows.jsonl = the rows of every complete cell, in grid order (rewritten atomically)."""
    rows = []
    for task, arm, seed in cells:
        rows.extend(done.get(cell_id(task.name, arm.name, model.name, seed), []))
    atomic.write_jsonl(run_dir / ROWS, rows)
