"""Where cells run: in this process one after another (`local`), or as Ray tasks (`ray`, `--executor ray`).

Both take the cells the grid still has to compute and yield (cell, CellResult) or (cell, CellFailure) as
each finishes; the driver alone writes the results folder (bench.run.grid), so executors never touch it.

The Ray executor (PyPI `ray`, core API; `pip install -e ".[ray]"`):

- runs each cell as a Ray task that rebuilds the arm from its name and the run config (strategies are
  registered in the worker by bench.plugins) and calls `run_cell`; each worker process keeps one model
  pool, so a model loads once per worker;
- asks for resources by cell kind: a cell that trains asks for all of a machine's cores (or one GPU when
  the run has CUDA), a generation cell one core (or a fraction of a GPU), and its model runs with that
  many threads;
- trains once per (task, fine-tune and its params, seed): when several arms share a training (`lora` and
  `lora+rag`), one of them runs first and the others wait for it, then find its adapter in the
  content-addressed adapter cache (the cache folder must be on storage every worker sees);
- opens the same generation cache (SQLite, safe for several processes) and also returns every answer
  it generated, which the driver puts into its own cache, so a later local run re-uses the workers'
  generations even when the workers had their own disks;
- retries a cell whose worker process died (`max_retries`); a cell that raises is a CellFailure with
  its error, and the other cells finish.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Iterator, Optional, Protocol

from bench.config import RunConfig
from bench.errors import BenchError, DiskFull, disk_full
from bench.models.resolve import ModelSpec
from bench.run.cache import GenerationCache
from bench.run.cell import CellResult, progress_bar, run_cell
from bench.run.pipeline import Arm, parse_arm
from bench.run.pool import ModelPool
from bench.types import Task

RAY_RETRIES = 2  # times a cell is retried when its worker process dies


@dataclass(frozen=True)
class CellFailure:
    """A cell that raised: one line for the summary and the traceback for cells/<id>/error.txt."""

    line: str
    traceback: str


class Job(Protocol):
    task: Task
    arm: Arm
    seed: int
    items: int


class Executor(Protocol):
    def execute(self, jobs: list, strata: dict[str, dict[str, str]]) -> Iterator[tuple[object, object]]:
        """Compute `jobs`, yielding (job, CellResult or CellFailure) in the order they finish."""


def _first_line(e: BaseException, width: int = 300) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:width]


def compute(job: Job, model: ModelSpec, config: RunConfig, cache: GenerationCache, pool: ModelPool, progress: bool,
            strata: Optional[dict[str, str]]) -> CellResult | CellFailure:
    """One cell, its failure caught and described: a broken cell never stops the others, a full disk stops the run."""
    try:
        return run_cell(job.task, job.arm, model, config.replace(limit=job.items), seed=job.seed, cache=cache,
                        pool=pool, progress=progress, strata=strata)
    except BenchError as e:  # found only when the cell ran (e.g. an adapter the architecture refuses)
        return CellFailure(str(e).splitlines()[0][:300], traceback.format_exc())
    except Exception as e:  # noqa: BLE001 - a broken cell (model error, out of memory); the next run retries it
        refused = disk_full(e)
        if refused is not None:
            raise DiskFull(f"cannot write while computing {job.task.name}/{job.arm.name}/seed {job.seed}: "
                           f"{_first_line(refused, 160)}; free disk space (converted weights alone take ~0.8 GB, one store can "
                           "serve every run: BENCH_MODELS_DIR) and run the same command again: finished cells are "
                           "kept") from e
        return CellFailure(_first_line(e), traceback.format_exc())


class LocalExecutor:
    """Cells one after another in this process, sharing the driver's cache and model pool."""

    def __init__(self, model: ModelSpec, config: RunConfig, cache: GenerationCache, pool: ModelPool, progress: bool):
        self.model, self.config, self.cache, self.pool, self.progress = model, config, cache, pool, progress

    def execute(self, jobs: list, strata: dict[str, dict[str, str]]) -> Iterator[tuple[object, object]]:
        for job in progress_bar(jobs, len(jobs), "cells", self.progress):
            yield job, compute(job, self.model, self.config, self.cache, self.pool, self.progress,
                               strata.get(job.task.name))


# -- Ray ----------------------------------------------------------------------------------------------
_WORKER: dict = {}  # per worker process: the model pool of the run it serves


def _worker_cell(task: Task, arm_name: str, seed: int, items: int, model: ModelSpec, config: RunConfig,
                 strata: Optional[dict[str, str]], _after: object = None) -> tuple[object, list]:
    """A Ray task's body: rebuild the arm, run the cell with this worker's pool, return it and its new answers."""
    from bench.plugins import load_plugins

    load_plugins()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    key = (config.to_dict().__repr__(), model.sha256)
    if _WORKER.get("key") != key:
        if _WORKER.get("pool") is not None:
            _WORKER["pool"].close()
        _WORKER.update(key=key, pool=ModelPool(config))
    cache = GenerationCache(config.resolved_cache_dir() / "generations.sqlite", journal=True)
    try:
        job = _RemoteJob(task, parse_arm(arm_name, config), seed, items)
        result = compute(job, model, config, cache, _WORKER["pool"], False, strata)
        return result, list(cache.journal)
    finally:
        cache.close()


@dataclass(frozen=True)
class _RemoteJob:
    task: Task
    arm: Arm
    seed: int
    items: int


def training_key(job: Job) -> Optional[tuple]:
    """Cells that share one training: the same task, fine-tune with the same params, and seed."""
    ft = job.arm.finetune
    if ft is None:
        return None
    return job.task.name, ft.name, repr(ft.params), job.seed


class RayExecutor:
    """Cells as Ray tasks (module docstring). `address` None starts a local Ray with this machine's cores."""

    def __init__(self, model: ModelSpec, config: RunConfig, cache: GenerationCache, progress: bool,
                 address: Optional[str] = None):
        try:
            import ray
        except ImportError:
            raise BenchError("--executor ray needs Ray; run `pip install -e \".[ray]\"`") from None
        self.ray, self.model, self.config, self.cache, self.progress = ray, model, config, cache, progress
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, include_dashboard=False)
                else:
                    ray.init(num_cpus=os.cpu_count() or 1, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise BenchError(f"--ray-address {address}: cannot connect to a Ray cluster ({e}); start one with "
                                 "`ray start --head` or omit --ray-address for a local one") from None
        self.remote = ray.remote(_worker_cell)

    def resources(self, job: Job) -> dict:
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        gpu = self.ray.cluster_resources().get("GPU", 0) > 0
        if job.arm.finetune is not None:
            return {"num_gpus": 1} if gpu else {"num_cpus": max(1, min(cpus, os.cpu_count() or 1))}
        return {"num_gpus": 0.25, "num_cpus": 1} if gpu else {"num_cpus": 1}

    def execute(self, jobs: list, strata: dict[str, dict[str, str]]) -> Iterator[tuple[object, object]]:
        ray = self.ray
        first_of: dict[tuple, object] = {}
        pending: dict[object, object] = {}
        for job in jobs:
            res = self.resources(job)
            threads = int(res.get("num_cpus", 1))
            config = self.config.replace(threads=threads)
            tkey = training_key(job)
            after = first_of.get(tkey) if tkey is not None else None
            ref = self.remote.options(max_retries=RAY_RETRIES, retry_exceptions=False, **res).remote(
                job.task, job.arm.name, job.seed, job.items, self.model, config, strata.get(job.task.name), after)
            if tkey is not None and tkey not in first_of:
                first_of[tkey] = ref
            pending[ref] = job
        bar = progress_bar(range(len(pending)), len(pending), "cells (ray)", self.progress)
        ticks = iter(bar)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            job = pending.pop(ref)
            try:
                result, journal = ray.get(ref)
            except DiskFull as e:  # Ray re-raises it as a subclass of RayTaskError and of the cause's class
                raise DiskFull(str(getattr(e, "cause", e))) from None
            except Exception as e:  # noqa: BLE001 - the worker died more often than it may be retried
                yield job, CellFailure(_first_line(e), traceback.format_exc())
            else:
                for k, gen in journal:
                    self.cache.put(k, gen)
                yield job, result
            next(ticks, None)
