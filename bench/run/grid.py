"""Running the grid: `run_grid` plans every cell, reuses the finished ones, runs the rest, writes results.

It resolves everything first (a bad task, name or combination stops the run before any model work),
takes the results folder's lock (a second run on the same folder refuses with a clear message),
writes the manifest, and then, for every (task, arm, seed) cell:

- reuses it when its folder holds a complete cell (rows.jsonl, written last) computed under the same
  fingerprint: everything that decides its rows (the arm and its params, the model and backend, the
  seed, the test items it scored, the task parts the arm reads, decoding, probes, the scorer version);
  a cell with another fingerprint is recomputed, and the log says so;
- otherwise runs it (bench.run.cell.run_cell) and writes its files atomically, rows.jsonl last;
- a cell that fails at run time (a model error, out of memory) is recorded with its error in
  cells/<id>/error.txt and the manifest, the other cells finish, and the caller exits 1.

With `until_decided` the cells run in rounds on growing prefixes of the test items (all arms on the
same new items) until the report's rule decides every task, `max_items` is reached or the `budget`
is spent; the generation cache keeps every earlier answer, so each round only generates new items.
A killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from filelock import FileLock, Timeout

from bench import atomic
from bench.config import RunConfig, budget_seconds
from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.metrics.scoring import SCORING_VERSION
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
    read_json,
    versions,
)
from bench.run.cache import GenerationCache
from bench.run.cell import CellResult
from bench.run.context import CellContext
from bench.run.executors import CellFailure, LocalExecutor, RayExecutor
from bench.run.pipeline import Arm
from bench.run.plan import Plan, plan
from bench.run.pool import LazyBackend, ModelPool
from bench.run.rounds import run_rounds
from bench.run.tune import tune_arm
from bench.types import Row, Task

CELL_META = "cell.json"  # the fingerprint a cell was computed under (written before its rows.jsonl)
LOCK = ".lock"


def default_run_id(config: RunConfig, tasks: tuple[Task, ...], model: ModelSpec) -> str:
    """<tasks>_<model>_<hash of everything that changes results>: a rerun of the same config finds its folder.

    How cells are executed or served from (executor, endpoint concurrency and retries) changes no result
    and is left out; the name is made of safe characters only (a hub id or openai/NAME has a slash).
    """
    d = config.to_dict()
    for k in ("out", "run_id", "cache_dir", "executor", "ray_address"):
        d.pop(k, None)
    for k in ("max_concurrency", "timeout_s", "max_retries", "api_key_env"):
        d["endpoint"].pop(k, None)
    key = sha256_json([d, model.sha256, [t.sha256 for t in tasks]])[:8]
    names = "-".join(t.name for t in tasks)
    if len(names) > 40:
        names = f"{len(tasks)}tasks"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{names}_{model.name}_{key}").lstrip(".")


@dataclass
class GridResult:
    run_dir: Path
    rows: list[dict]
    cells_total: int
    cells_reused: int
    cells_failed: list[str]
    model_calls: int
    errors: dict[str, str] = field(default_factory=dict)  # cell id -> one line saying what went wrong
    rounds: list[dict] = field(default_factory=list)  # with until_decided: items per task and decisions per round


@dataclass(frozen=True)
class CellJob:
    """One cell to compute: which task, arm and seed, on how many test items, and its fingerprint."""

    task: Task
    arm: Arm
    seed: int
    items: int
    fingerprint: str


def task_part_hashes(task: Task) -> dict[str, Optional[str]]:
    files = dict(task.files_sha256)
    return {"meta": files.get("task.yaml"), "train": files.get("train.jsonl"), "docs": files.get("docs.jsonl")}


def fingerprint(task: Task, arm: Arm, model: ModelSpec, backend: str, seed: int, items: int, config: RunConfig) -> str:
    """Everything that decides a cell's rows, hashed: a cell stored under another fingerprint is stale."""
    parts = task_part_hashes(task)
    reads = {r for part in arm.parts for r in part.reads(task)}
    if config.strata or config.tune:
        reads.add("train")
    return sha256_json({
        "scoring": SCORING_VERSION, "task": task.name, "meta": parts["meta"],
        "test": sha256_json([asdict(e) for e in task.test[:items]]), "reads": {r: parts[r] for r in sorted(reads)},
        "arm": arm.key, "model": model.sha256, "backend": backend, "seed": seed, "generation": asdict(config.generation),
        "probes": config.probes, "strata": config.strata, "tune": config.tune, "support": asdict(config.support),
    })


def manifest_of(config: RunConfig, p: Plan, run_id: str) -> dict:
    """What manifest.json records: config, provenance, the model, every task and every arm with its family."""
    model = p.model
    return {
        "run_id": run_id, "config": config.to_dict(), "versions": versions(), "git_hash": git_hash(),
        "hardware": hardware(), "seeds": list(config.seeds), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": model.name, "kind": model.kind, "source": model.source, "sha256": model.sha256},
        "tasks": {t.name: {"version": t.version, "language": t.language, "kind": t.kind,
                           "abstain_phrase": t.abstain_phrase, "test_items": len(t.test),
                           "files_sha256": dict(t.files_sha256)} for t in p.tasks},
        "strategies": {a.name: a.describe() for a in p.arms},
    }


class Grid:
    """One run's state while it executes: the folder, the cache, the model pool and what is done."""

    def __init__(self, config: RunConfig, p: Plan, run_dir: Path, pool: ModelPool, progress: bool,
                 log: Callable[[str], None]):
        self.config, self.plan, self.run_dir, self.pool = config, p, run_dir, pool
        self.progress, self.log = progress, log
        self.cache = GenerationCache(config.resolved_cache_dir() / "generations.sqlite")
        self.done: dict[str, list[dict]] = {}
        self.reused = self.calls = 0
        self.errors: dict[str, str] = {}
        self.strata: dict[str, dict[str, str]] = {}
        self.tuned: dict[tuple[str, str], tuple[Arm, dict]] = {}  # (task, arm name) -> tuned arm, tuning record
        self._ray = None

    def tune(self) -> None:
        """--tune: every arm of every task at its best settings on a validation split of train (bench.run.tune)."""
        folder = self.run_dir / "tune"
        for t in self.plan.tasks:
            for a in self.plan.arms:
                self.tuned[(t.name, a.name)] = tune_arm(t, a, self.plan.model, self.config, self.cache, self.pool,
                                                        folder, self.log)

    def arm_for(self, task: Task, arm: Arm) -> Arm:
        return self.tuned.get((task.name, arm.name), (arm, None))[0]

    def jobs(self, items: dict[str, int]) -> list[CellJob]:
        """Every cell of the grid, each on the first items[task] test items."""
        backend = self.pool.backend_name(self.plan.model)
        out = []
        for t in self.plan.tasks:
            for a in self.plan.arms:
                arm = self.arm_for(t, a)
                for s in self.config.seeds:
                    out.append(CellJob(t, arm, s, items[t.name],
                                       fingerprint(t, arm, self.plan.model, backend, s, items[t.name], self.config)))
        return out

    def cid(self, job: CellJob) -> str:
        return cell_id(job.task.name, job.arm.name, self.plan.model.name, job.seed)

    def reusable(self, job: CellJob) -> bool:
        cdir = cell_dir(self.run_dir, self.cid(job))
        if not (cdir / CELL_ROWS).is_file():
            return False
        meta = read_json(cdir / CELL_META)
        if meta.get("fingerprint") == job.fingerprint:
            return True
        if meta.get("items") is not None and meta.get("items") != job.items:
            self.log(f"cell {self.cid(job)}: {meta['items']} -> {job.items} test items (cached answers are reused)")
        else:
            self.log(f"cell {self.cid(job)} was computed under another configuration (task files, params, model "
                     "or scorer changed); recomputing it")
        (cdir / CELL_ROWS).unlink()  # first, so a kill from here on never leaves a stale complete cell
        return False

    def run(self, jobs: list[CellJob]) -> None:
        """Compute every job whose cell is not on disk under its fingerprint; write each as it finishes."""
        todo = []
        for job in jobs:
            cid = self.cid(job)
            if self.reusable(job):
                self.done[cid] = atomic.read_jsonl(cell_dir(self.run_dir, cid) / CELL_ROWS)
                self.reused += 1
            else:
                todo.append(job)
        self.write_rows()  # drops the rows of cells just found stale: a kill from here on serves none of them
        if self.config.strata:
            for t in {j.task.name: j.task for j in todo}.values():
                if t.name not in self.strata:
                    self.strata[t.name] = self.slick(t)
        for job, outcome in self.executor().execute(todo, self.strata):
            cid = self.cid(job)
            cdir = cell_dir(self.run_dir, cid)
            if isinstance(outcome, CellFailure):
                self.fail(cid, cdir, outcome.line, outcome.traceback)
                self.write_rows()
                continue
            res = outcome
            self.calls += res.model_calls
            record = self.tuned.get((job.task.name, job.arm.name), (None, None))[1]
            if record is not None:
                res = with_tuning(res, record)
            write_cell(cdir, res, job.fingerprint)
            self.errors.pop(cid, None)
            self.done[cid] = [r.to_dict() for r in res.rows]
            self.write_rows()

    def executor(self):
        if self.config.executor == "ray":
            if self._ray is None:
                self._ray = RayExecutor(self.plan.model, self.config, self.cache, self.progress, self.config.ray_address)
            return self._ray
        return LocalExecutor(self.plan.model, self.config, self.cache, self.pool, self.progress)

    def fail(self, cid: str, cdir: Path, line: str, tb: str) -> None:
        cdir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(cdir / ERROR, tb)
        self.errors[cid] = line.splitlines()[0][:300] if line else "failed"
        self.done.pop(cid, None)
        self.log(f"cell {cid} failed: {self.errors[cid]} (traceback in {cdir / ERROR})")

    def slick(self, task: Task) -> dict[str, str]:
        """SliCK strata of a task's test items on the base model (only computed when a cell needs them)."""
        from bench.run.strata import slick_strata

        ctx = CellContext(task=task, config=self.config, seed=0, model=self.plan.model,
                          backend=LazyBackend(self.pool, self.plan.model), cache=self.cache, strategy_key="slick")
        strata = slick_strata(task, ctx, limit=self.config.limit)
        counts: dict[str, int] = {}
        for s in strata.values():
            counts[s] = counts.get(s, 0) + 1
        self.log(f"SliCK strata of {task.name} on {self.plan.model.name}: {counts}")
        return strata

    def write_rows(self) -> None:
        """rows.jsonl = the rows of every complete cell of this configuration, in grid order (rewritten atomically
        once the reusable cells are known and after every cell, so it never holds a stale cell's rows)."""
        rows = []
        for t in self.plan.tasks:
            for a in self.plan.arms:
                for s in self.config.seeds:
                    rows.extend(self.done.get(cell_id(t.name, a.name, self.plan.model.name, s), []))
        atomic.write_jsonl(self.run_dir / ROWS, rows)


def with_tuning(res: CellResult, record: dict) -> CellResult:
    """The cell with what --tune chose: its settings on every quality row, the tuning seconds in its costs."""
    rows = [Row(r.key, dataclasses.replace(r.measure, extra={**r.measure.extra, "settings": record["chosen"]}))
            if r.measure.kind == "quality" else r for r in res.rows]
    cost = {**res.cost, "tune": {k: record[k] for k in ("seconds", "chosen", "validation_items")}}
    return dataclasses.replace(res, rows=rows, cost=cost)


def write_cell(cdir: Path, res: CellResult, fp: str) -> None:
    """A finished cell's files, each atomic; its rows.jsonl last, which marks the cell complete."""
    atomic.write_jsonl(cdir / GENERATIONS, res.generations)
    atomic.write_jsonl(cdir / SCORES, res.scores)
    atomic.write_json(cdir / COST, res.cost)
    if res.probe_items:
        atomic.write_json(cdir / PROBES, res.probe_items)
    for name, data in res.files.items():
        atomic.write_bytes(cdir / name, data)
    atomic.write_json(cdir / CELL_META, {"fingerprint": fp, "items": res.cost.get("per_query", {}).get("queries")})
    atomic.write_jsonl(cdir / CELL_ROWS, [r.to_dict() for r in res.rows])
    (cdir / ERROR).unlink(missing_ok=True)


def lock_run(run_dir: Path) -> FileLock:
    """The results folder's lock; a second `bench run` on the same folder refuses instead of interleaving."""
    lock = FileLock(str(run_dir / LOCK))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise BenchError(f"{run_dir}: another bench run is writing this results folder; wait for it to finish, "
                         "or give this run another --run-id or --out") from None
    except OSError as e:
        raise BenchError(f"cannot write {run_dir}: {e.strerror or e}; fix the permissions or choose another "
                         "--out (the results folder and its lock are made there)") from None
    return lock


def _invocation(manifest: dict) -> dict:
    """One finished `bench run` on this folder: when, under what load, and how many cells it computed."""
    cells = manifest.get("cells") or {}
    computed = int(cells.get("total") or 0) - int(cells.get("reused") or 0) - len(cells.get("failed") or {})
    return {"started": manifest.get("started"), "finished": manifest.get("finished"),
            "load_avg": (manifest.get("hardware") or {}).get("load_avg"), "computed": computed,
            "model_calls": cells.get("model_calls", 0)}


def _invocations(path: Path) -> list[dict]:
    """The earlier finished invocations of a resumed run folder (a manifest from before this record: one)."""
    try:
        old = read_json(path)
    except BenchError:
        return []  # a broken manifest is rewritten; the cells on disk keep their own costs and times
    if not old.get("finished"):
        return list(old.get("invocations") or [])  # a run that never finished: its cells count when reused
    return list(old.get("invocations") or [_invocation(old)])


def run_grid(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print,
             pool: Optional[ModelPool] = None) -> GridResult:
    """Run every cell of `config` that is not already on disk under its fingerprint (module docstring)."""
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit makes writes fail with EFBIG instead of killing the run
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    p = plan(config)
    run_id = config.run_id or default_run_id(config, p.tasks, p.model)
    run_dir = Path(config.out) / run_id
    lock = lock_run(run_dir)
    own_pool = pool is None
    pool = pool or ModelPool(config)
    grid = Grid(config, p, run_dir, pool, progress, log)
    try:
        history = _invocations(run_dir / MANIFEST)
        manifest = manifest_of(config, p, run_id) | {"invocations": history}
        atomic.write_json(run_dir / MANIFEST, manifest)
        log(f"run {run_id}: {len(p.tasks)} task(s) x {len(p.arms)} strategies x {len(config.seeds)} seed(s) on "
            f"{p.model.name}; load average {manifest['hardware']['load_avg']}")
        if config.tune:
            grid.tune()
        rounds: list[dict] = []
        if config.until_decided:
            rounds = run_rounds(grid, budget_seconds(config.budget) if config.budget else None)
            manifest["rounds"] = rounds
        else:
            grid.run(grid.jobs({t.name: min(config.limit or len(t.test), len(t.test)) for t in p.tasks}))
        grid.write_rows()
        total = len(p.tasks) * len(p.arms) * len(config.seeds)
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest["cells"] = {"total": total, "reused": grid.reused, "failed": grid.errors, "model_calls": grid.calls}
        manifest["invocations"] = history + [_invocation(manifest)]
        atomic.write_json(run_dir / MANIFEST, manifest)
    finally:
        grid.cache.close()
        if own_pool:
            pool.close()
        lock.release()
    return GridResult(run_dir, atomic.read_jsonl(run_dir / ROWS), total, grid.reused, sorted(grid.errors), grid.calls,
                      dict(grid.errors), rounds)
