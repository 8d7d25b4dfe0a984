"""Small, honest hyperparameter tuning per arm (`--tune`): every arm at its best before it is compared.

A comparison is only as fair as its weakest arm's setup. With `--tune`, before the grid runs, each arm
of each task tries a few settings of each of its parts (`Strategy.tune_grid`: prompt form, few-shot k and
selection, retrieval k and retriever, fine-tuning learning rate) on a **validation split carved from the
train split** with the run's first seed — never on test items — and keeps the one with the best main
metric (failures count as 0; ties go to the earlier, cheaper candidate). Parts are tuned one after the
other (prompting, then retrieval, then fine-tuning), each with the others at their current best, so the
number of evaluations is the sum, not the product, of the grids.

Tuning cells run through `run_cell` like any other (generation and adapter caches included), so tuning
again costs nothing; the choice is stored in <run>/tune/<task>__<arm>.json with a fingerprint of what it
depended on. The chosen settings go into the cells' rows (`settings`) and the report; the seconds tuning
took are charged to the arm's one-off cost.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from bench import atomic
from bench.config import RunConfig
from bench.hashing import sha256_json
from bench.models.resolve import ModelSpec
from bench.results import read_json
from bench.run.cache import GenerationCache
from bench.run.cell import run_cell
from bench.run.pipeline import Arm, parse_arm
from bench.run.pool import ModelPool
from bench.seeding import rng
from bench.types import Task

VAL_SHARE = 0.2
VAL_MAX = 40  # validation items at most: tuning must stay a fraction of the run
VAL_MIN = 8


def validation_task(task: Task, seed: int) -> Task:
    """The task with a seeded validation slice of its train split as test items and the rest as train."""
    items = list(task.train)
    n = min(VAL_MAX, max(VAL_MIN, round(len(items) * VAL_SHARE)))
    if len(items) < n + 2:
        return dataclasses.replace(task, test=())
    order = list(range(len(items)))
    rng(seed, "tune-val", task.name).shuffle(order)
    val = {i for i in order[:n]}
    return dataclasses.replace(task, name=f"{task.name}.tune",
                               train=tuple(e for i, e in enumerate(items) if i not in val),
                               test=tuple(e for i, e in enumerate(items) if i in val))


def settings_of(arm: Arm) -> dict:
    """The arm's part settings as they differ from each part's defaults (what tuning changed)."""
    out = {}
    for part in arm.parts:
        default = type(part.params)()
        diff = {f.name: getattr(part.params, f.name) for f in dataclasses.fields(part.params)
                if getattr(part.params, f.name) != getattr(default, f.name)}
        if diff:
            out[part.name] = diff
    return out


def with_settings(arm: Arm, settings: dict, config: RunConfig) -> Arm:
    """The same arm with some parts' params replaced (validated by the run config's own checks)."""
    params = {part.name: {**dataclasses.asdict(part.params), **settings.get(part.name, {})} for part in arm.parts}
    return parse_arm(arm.name, config.replace(params=params))


def _score(task: Task, arm: Arm, model: ModelSpec, config: RunConfig, cache: GenerationCache, pool: ModelPool) -> float:
    res = run_cell(task, arm, model, config.replace(limit=None, probes="none"), seed=config.seeds[0], cache=cache,
                   pool=pool, progress=False)
    main = next((r.measure for r in res.rows if r.measure.main), None)
    if main is None:
        return 0.0
    per_item = [s["scores"].get(main.metric) for s in res.scores]
    vals = [0.0 if v is None else float(v) for v in per_item]
    mean = sum(vals) / len(vals) if vals else 0.0
    return mean if main.higher_is_better else -mean


def tune_arm(task: Task, arm: Arm, model: ModelSpec, config: RunConfig, cache: GenerationCache, pool: ModelPool,
             folder: Path, log: Callable[[str], None]) -> tuple[Arm, dict]:
    """The arm with its best settings on the validation split, and the record of what was tried."""
    val = validation_task(task, config.seeds[0])
    key = sha256_json([arm.key, model.sha256, [dataclasses.asdict(e) for e in val.test], task.sha256])
    path = folder / f"{task.name}__{arm.name}.json".replace("/", "_")
    stored = read_json(path)
    if stored.get("key") == key:
        return with_settings(arm, stored["chosen"], config), stored
    t0 = time.perf_counter()
    tried: list[dict] = []
    best_arm = arm
    if val.test:
        for part in [p for p in (arm.prompting, arm.retrieval, arm.finetune) if p is not None]:
            grid = part.tune_grid(val)
            if len(grid) < 2:
                continue
            scored = []
            for candidate in grid:
                settings = {**settings_of(best_arm), part.name: {**settings_of(best_arm).get(part.name, {}), **candidate}}
                trial = with_settings(best_arm, settings, config)
                value = _score(val, trial, model, config, cache, pool)
                scored.append((value, -len(scored), trial))
                tried.append({"part": part.name, "settings": candidate, "score": round(abs(value), 4)})
            best_arm = max(scored, key=lambda x: (x[0], x[1]))[2]
    record = {"key": key, "chosen": settings_of(best_arm), "tried": tried, "validation_items": len(val.test),
              "seconds": round(time.perf_counter() - t0, 2)}
    atomic.write_json(path, record)
    log(f"tuned {task.name}/{arm.name} on {len(val.test)} validation items: {record['chosen'] or 'defaults'}")
    return best_arm, record

