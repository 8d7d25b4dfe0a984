"""Running the grid: `run_cell` computes one (task, strategy, model, seed) cell; `run_grid` loops.

run_cell reads top to bottom: adapt the model (fine-tuning) → prepare retrieval → prepare prompting
→ answer every test item (generation cache first) → score → aggregate. It touches no global state
but the cache it is handed. run_grid resolves everything first (a bad task or name stops the run
before any model work), skips cells whose rows are already on disk, writes each finished cell
atomically, and renders the report. A killed run resumes where it stopped.
"""

from __future__ import annotations

import platform
import re
import resource
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from bench import atomic
from bench.backends.base import Backend
from bench.cache import GenerationCache
from bench.config import RunConfig
from bench.context import CellContext
from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.models import ModelSpec, resolve_model
from bench.pipeline import Arm, expand_strategies, parse_arm
from bench.registry import load_all
from bench.scoring import aggregate, score_prediction
from bench.stats import percentile
from bench.taskio import resolve_task
from bench.types import Prediction, Task


class ModelPool:
    """Loads each (model, backend) once per run, and only when a cell really needs it."""

    def __init__(self, config: RunConfig):
        self.config = config
        self._loaded: dict[tuple[str, str], Backend] = {}

    def backend_name(self, spec: ModelSpec) -> str:
        if self.config.backend != "auto":
            return self.config.backend
        return "llama" if spec.kind == "gguf" else "hf"

    def get(self, spec: ModelSpec, backend: Optional[str] = None) -> Backend:
        name = backend or self.backend_name(spec)
        key = (spec.sha256, name)
        if key not in self._loaded:
            if name == "llama":
                from bench.backends.llama import LlamaBackend

                self._loaded[key] = LlamaBackend(spec, threads=self.config.threads)
            else:
                from bench.backends.hf import HFBackend

                self._loaded[key] = HFBackend(spec, threads=self.config.threads, cache_dir=self.config.resolved_cache_dir())
        return self._loaded[key]

    def close(self) -> None:
        for b in self._loaded.values():
            b.close()
        self._loaded.clear()


class _LazyBackend:
    """Stands in for the base model until a strategy first uses it (cached cells never load it)."""

    def __init__(self, pool: ModelPool, spec: ModelSpec):
        self._pool, self._spec, self._real = pool, spec, None

    def _get(self) -> Backend:
        if self._real is None:
            self._real = self._pool.get(self._spec)
        return self._real

    def __getattr__(self, item):
        return getattr(self._get(), item)

    def __setattr__(self, key, value):
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            setattr(self._get(), key, value)


def _backend_name(backend) -> str:
    if isinstance(backend, _LazyBackend):
        return backend._real.name if backend._real is not None else "none"
    return backend.name


@dataclass
class CellResult:
    cell_id: str
    rows: list[dict]
    generations: list[dict]
    scores: list[dict]
    cost: dict
    model_calls: int = 0
    probe_items: dict = field(default_factory=dict)  # per-item probe values, saved as probes.json


def cell_id(task: str, arm: str, model: str, seed: int) -> str:
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.+-]", "_", s)  # noqa: E731
    return f"{safe(task)}__{safe(arm)}__{safe(model)}__s{seed}"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, mininterval=1.0, dynamic_ncols=True)


def run_cell(
    task: Task,
    arm: Arm,
    model: ModelSpec,
    config: RunConfig,
    *,
    seed: int,
    cache: GenerationCache,
    pool: ModelPool,
    work_dir: Optional[Path] = None,
    progress: bool = False,
    strata: Optional[dict[str, str]] = None,
) -> CellResult:
    """Compute one cell: every test item of `task` through `arm` on `model` with `seed`.

    strata: {example_id: SliCK stratum} from the base model, when the run asks for per-stratum rows.
    """
    t0 = time.perf_counter()
    base = _LazyBackend(pool, model)
    ctx = CellContext(task=task, config=config, seed=seed, model=model, backend=base, cache=cache,
                      strategy_key=arm.key, work_dir=work_dir, progress=progress, model_loader=pool.get)
    calls_before = cache.misses
    common = {"task": task.name, "task_version": task.version, "strategy": arm.name, "model": model.name,
              "model_sha256": model.short_id, "seed": seed}

    # 1. adapt the model (fine-tuning arms train or load a cached adapter)
    if arm.finetune is not None:
        ctx.backend = arm.finetune.adapt(ctx)
    try:
        return _answer_and_score(task, arm, model, config, ctx, base, common, seed, strata, cache,
                                 calls_before, t0, progress)
    finally:
        if ctx.backend is not base:  # a fine-tuned model is loaded per cell: free it
            ctx.backend.close()


def _answer_and_score(task, arm, model, config, ctx, base, common, seed, strata, cache, calls_before, t0,
                      progress) -> CellResult:
    """Steps 1b-5 of run_cell (split out so the adapted model is closed whatever happens)."""
    # 1b. forgetting probes on the (adapted) model, with paired deltas against the base model;
    #     cached by model_id, so prompting and retrieval arms reuse the base model's numbers
    probe_rows: list[dict] = []
    if config.probes != "none":
        from bench.probes.hook import probe_cell_rows

        probe_rows = probe_cell_rows(ctx, common, config.probes, base_backend=base)
    # 2. prepare retrieval (build or load the index) and 3. prompting (e.g. exemplar embeddings)
    if arm.retrieval is not None:
        arm.retrieval.prepare(ctx)
    arm.prompting.prepare(ctx)

    # 4. answer every test item
    examples = list(task.test[: config.limit] if config.limit else task.test)
    preds: list[Prediction] = []
    for ex in _progress(examples, len(examples), f"{task.name}/{arm.name}", progress):
        try:
            passages = arm.retrieval.retrieve(ex, ctx) if arm.retrieval is not None else None
            pred = arm.prompting.predict(ex, ctx, passages)
        except BenchError as e:  # e.g. a prompt longer than the context: counted, not fatal
            pred = Prediction(ex.id, None, error=str(e))
        preds.append(pred)
    finish = getattr(arm.retrieval, "finish", None)
    if finish:
        finish(ctx)

    # 5. score and aggregate
    per_example = [score_prediction(p, ex, task) for p, ex in zip(preds, examples)]
    metric_rows = aggregate(task, examples, per_example, seed=seed)

    generations, scores, latencies, ptoks, ctoks = [], [], [], [], []
    for p, ex, sc in zip(preds, examples, per_example):
        for i, g in enumerate(p.generations):
            generations.append({"example_id": ex.id, "sample": i, "prompt": g.prompt, "output": g.output,
                                "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                                "seconds": round(g.seconds, 4), "cached": g.cached, "finish_reason": g.finish_reason})
        if p.generations:
            latencies.append(sum(g.seconds for g in p.generations))
            ptoks.append(sum(g.prompt_tokens for g in p.generations))
            ctoks.append(sum(g.completion_tokens for g in p.generations))
        stratum = strata.get(ex.id, ex.stratum) if strata else ex.stratum
        scores.append({"example_id": ex.id, "answerable": ex.answerable, "stratum": stratum,
                       "doc_ids": list(ex.doc_ids), "reference": ex.output, "answer": p.answer,
                       "failed": p.answer is None, "error": p.error,
                       "scores": {k: v["value"] for k, v in sc.items()},
                       "reasons": {k: v["reason"] for k, v in sc.items()}, "info": p.info})
    n = max(len(examples), 1)
    per_query = {
        "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95),
        "prompt_tokens_mean": sum(ptoks) / n if ptoks else None,
        "completion_tokens_mean": sum(ctoks) / n if ctoks else None,
        "samples_per_query": sum(len(p.generations) for p in preds) / n,
        "model_calls": cache.misses - calls_before, "queries": len(examples),
        "failed": sum(p.answer is None for p in preds),
    }
    cost = {**ctx.costs, "per_query": per_query, "memory": {"peak_rss_mb": round(_peak_rss_mb(), 1)},
            "backend": _backend_name(ctx.backend),
            "wall_seconds": round(time.perf_counter() - t0, 3)}

    rows = [{**common, **r} for r in metric_rows]
    if strata:
        from bench.strata import stratum_rows

        rows += [{**common, **r} for r in stratum_rows(task, examples, per_example, strata, seed)]
    probe_items = {r["metric"]: r.pop("items") for r in probe_rows if "items" in r}
    rows += probe_rows
    for name in ("latency_p50_s", "prompt_tokens_mean", "completion_tokens_mean"):
        v = per_query[name]
        rows.append({**common, "metric": name, "family": "cost", "value": v, "n": len(latencies),
                     "n_failed": 0, "ci_low": None, "ci_high": None, "higher_is_better": False,
                     "main": False, "kind": "cost"})
    return CellResult(cell_id(task.name, arm.name, model.name, seed), rows, generations, scores, cost,
                      model_calls=per_query["model_calls"], probe_items=probe_items)


# ---------------------------------------------------------------------------------------------
def _git_hash() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("bench", "torch", "transformers", "peft", "trl", "bitsandbytes", "sentence-transformers",
                "faiss-cpu", "llama-cpp-python", "rouge-score", "pandas", "gguf"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def hardware() -> dict:
    import os

    info = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["cuda"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def default_run_id(config: RunConfig, tasks: list[Task], model: ModelSpec) -> str:
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


def plan(config: RunConfig) -> tuple[list[Task], list[Arm], ModelSpec]:
    """Resolve every task, strategy and the model before any model work: bad input stops here."""
    load_all()
    tasks = [resolve_task(w) for w in config.tasks]
    arms = [parse_arm(s, config) for s in expand_strategies(config.strategies)]
    model = resolve_model(config.model, config.resolved_cache_dir())
    return tasks, arms, model


def run_grid(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print,
             pool: Optional[ModelPool] = None) -> GridResult:
    tasks, arms, model = plan(config)
    run_id = config.run_id or default_run_id(config, tasks, model)
    run_dir = Path(config.out) / run_id
    cells_dir = run_dir / "cells"
    manifest = {
        "run_id": run_id, "config": config.to_dict(), "versions": _versions(), "git_hash": _git_hash(),
        "hardware": hardware(), "seeds": list(config.seeds), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": model.name, "kind": model.kind, "path": str(model.path or model.hf_id), "sha256": model.sha256},
        "tasks": {t.name: {"version": t.version, "path": str(t.path), "files_sha256": dict(t.files_sha256)} for t in tasks},
        "strategies": [a.name for a in arms],
    }
    atomic.write_json(run_dir / "manifest.json", manifest)
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
        for task, arm, seed in _progress(cells, len(cells), "cells", progress):
            cid = cell_id(task.name, arm.name, model.name, seed)
            cdir = cells_dir / cid
            if (cdir / "rows.json").is_file():
                done[cid] = atomic.read_jsonl(cdir / "rows.json")
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
                atomic.write_text(cdir / "error.txt", traceback.format_exc())
                failed.append(cid)
                log(f"cell {cid} failed: {type(e).__name__}: {e} (traceback in {cdir / 'error.txt'})")
                continue
            calls += res.model_calls
            atomic.write_jsonl(cdir / "generations.jsonl", res.generations)
            atomic.write_jsonl(cdir / "scores.jsonl", res.scores)
            atomic.write_json(cdir / "cost.json", res.cost)
            if res.probe_items:
                atomic.write_json(cdir / "probes.json", res.probe_items)
            atomic.write_jsonl(cdir / "rows.json", res.rows)  # last: marks the cell complete
            (cdir / "error.txt").unlink(missing_ok=True)
            done[cid] = res.rows
            _write_rows(run_dir, cells, model, done)
        _write_rows(run_dir, cells, model, done)
    finally:
        cache.close()
        if own_pool:
            pool.close()
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["cells"] = {"total": len(cells), "reused": reused, "failed": failed, "model_calls": calls}
    atomic.write_json(run_dir / "manifest.json", manifest)
    rows = atomic.read_jsonl(run_dir / "rows.jsonl")
    return GridResult(run_dir, rows, len(cells), reused, failed, calls)


def _slick(task: Task, model: ModelSpec, config: RunConfig, cache: GenerationCache, pool, log) -> dict[str, str]:
    """SliCK strata of a task's test items on the base model (only computed when a cell needs them)."""
    from bench.strata import slick_strata

    ctx = CellContext(task=task, config=config, seed=0, model=model, backend=_LazyBackend(pool, model), cache=cache,
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
    atomic.write_jsonl(run_dir / "rows.jsonl", rows)
