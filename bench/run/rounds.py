"""Decide until decided: evaluate test items in rounds until every task has a verdict (`--until-decided`).

Each task's test items are put in a seeded random order once (the decision's bounds are only valid
when the order cannot depend on the scores; a file sorted by difficulty would bias them), and every
round evaluates all arms on the same next items of that order. After each round the report's rule
decides every task sequentially (bench.report.rule with `sequential=True`: its confidence sequences
stay valid however often they are looked at, so stopping at the first decided verdict does not inflate
the error rate). A decided task stops growing; an undecided one grows by `rule.next_round_size` towards
the items its verdict says it needs, up to `max_items` (default: all its test items). The run stops
when every task is decided, every undecided task has used all its items, or the wall-clock `budget`
would be exceeded by the next round (estimated from the seconds per item so far).

Every answer lands in the generation cache, so a round only generates its new items, and a later run
with a larger `--max-items` extends an earlier one instead of redoing it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Optional

from bench import atomic
from bench.report.rule import next_round_size
from bench.report.writer import build
from bench.results import MANIFEST, read_json
from bench.seeding import rng
from bench.types import Task

if TYPE_CHECKING:
    from bench.run.grid import Grid

FIRST_ROUND = 20  # items per task in the first round when the config gives no --limit
ORDER_SEED = 0  # the evaluation order is fixed for a task, so reruns extend instead of reshuffling


def evaluation_order(task: Task) -> Task:
    """The task with its test items in the seeded random order they are evaluated in."""
    items = list(task.test)
    rng(ORDER_SEED, "until-decided", task.name).shuffle(items)
    return dataclasses.replace(task, test=tuple(items))


def run_rounds(grid: "Grid", budget_s: Optional[float]) -> list[dict]:
    """Run `grid` in rounds (module docstring); returns one record per round: items and verdict per task."""
    cfg = grid.config
    grid.plan = dataclasses.replace(grid.plan, tasks=tuple(evaluation_order(t) for t in grid.plan.tasks))
    tasks = grid.plan.tasks
    cap = {t.name: min(cfg.max_items or len(t.test), len(t.test)) for t in tasks}
    items = {t.name: min(cfg.limit or FIRST_ROUND, cap[t.name]) for t in tasks}
    rounds: list[dict] = []
    start = time.perf_counter()
    before = {t.name: 0 for t in tasks}
    while True:
        t0 = time.perf_counter()
        grid.run(grid.jobs(items))
        grid.write_rows()
        decisions = _decide(grid, rounds, items)
        spent = time.perf_counter() - t0
        record = {"round": len(rounds) + 1, "items": dict(items), "seconds": round(spent, 1),
                  "decided": {t: d.get("decided", False) for t, d in decisions.items()},
                  "strategy": {t: d.get("strategy") for t, d in decisions.items()},
                  "needed_items": {t: d.get("needed_items") for t, d in decisions.items()}}
        rounds.append(record)
        _record(grid, rounds)
        grow = {}
        for t in tasks:
            d = decisions.get(t.name, {})
            if d.get("decided") or not d.get("informative", True) or items[t.name] >= cap[t.name]:
                continue
            step = next_round_size(items[t.name], d.get("needed_items"), cap[t.name])
            if step > 0:
                grow[t.name] = step
        if not grow:
            grid.log(f"until-decided: stopped after round {record['round']}: "
                     + ("every task is decided" if all(record["decided"].values()) else
                        "the undecided tasks have no more items (raise --max-items or add test items)"))
            break
        new_items = sum(grow.values())
        per_item = spent / max(sum(items.values()) - sum(before.values()), 1)  # seconds per new item, all arms
        before = dict(items)
        if budget_s is not None and time.perf_counter() - start + per_item * new_items > budget_s:
            grid.log(f"until-decided: stopped after round {record['round']}: the next round ({new_items} items, "
                     f"about {per_item * new_items:.0f} s) would exceed the budget")
            break
        for name, step in grow.items():
            items[name] += step
        grid.log(f"until-decided: round {record['round'] + 1}: " + ", ".join(f"{n} -> {items[n]} items" for n in grow))
    return rounds


def _record(grid: "Grid", rounds: list[dict]) -> None:
    """The rounds so far, and the cells failed so far, go into the manifest: the report reads them to decide
    sequentially, and counts a failed arm as failed rather than as not computed yet."""
    manifest = read_json(grid.run_dir / MANIFEST)
    manifest["rounds"] = rounds
    manifest["cells"] = {**(manifest.get("cells") or {}), "failed": dict(grid.errors)}
    atomic.write_json(grid.run_dir / MANIFEST, manifest)


def _decide(grid: "Grid", rounds: list[dict], items: dict[str, int]) -> dict[str, dict]:
    """This round's verdict per task, sequential (the manifest says a run has rounds)."""
    _record(grid, rounds + [{"round": len(rounds) + 1, "items": dict(items)}])
    _, _, decisions, _ = build(grid.run_dir, plots=False)
    return decisions
