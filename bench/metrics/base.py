"""What a metric is: a scorer that gives every answer a value and a reason, and the task-level aggregate.

A metric (`rouge`, registered in `bench.registry.METRICS`) reports one or more metric names
(`rouge1`, ..., `rougeLsum`). `score` returns a per-example Score with a reason for every name; a Score
whose value is None could not be computed and is counted in n_failed, never averaged in. `aggregate`
turns per-example scores into the task value (the mean, unless a metric needs something else, e.g.
precision over abstentions).

Adding a metric:

    @METRICS.register("contains")
    class Contains(Metric):
        names = ("contains",)
        def score(self, answer, example, task):
            ok = normalize_answer(example.output) in normalize_answer(answer)
            return {"contains": Score("contains", float(ok), "reference inside answer" if ok else "not found")}
"""

from __future__ import annotations

from typing import ClassVar, Optional

from bench.registry import METRICS
from bench.types import Example, Score, Task


class Metric:
    """A registered scorer. Attributes: `names` (the metric names it reports), `higher_is_better`,
    `description` (one line for `bench ls metrics`), `inputs` (what else of the prediction `score` is
    given as keyword arguments: "sources", the passages the arm showed the model; "raw", the model's
    output before answer extraction)."""

    names: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool] = True
    description: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()

    def score(self, answer: str, example: Example, task: Task) -> dict[str, Score]:
        """{name: Score} for one answer; a Score with value None could not be computed (counted, not zeroed)."""
        raise NotImplementedError

    def aggregate(self, name: str, records: list[tuple[Optional[float], Example]]) -> Optional[float]:
        """Task-level value of `name` from (per-example value, example) pairs; None values excluded."""
        vals = [v for v, _ in records if v is not None]
        return sum(vals) / len(vals) if vals else None


def references(example: Example) -> list[str]:
    """The gold answer plus any alternatives a task lists under `answers`."""
    alts = example.get("answers") or ()
    return [example.output, *[str(a) for a in alts]]


def reported_names(metrics: list[str]) -> list[str]:
    """Every metric name the given registered metrics report, in order."""
    out: list[str] = []
    for name in metrics:
        out.extend(METRICS.get(name).names)
    return out


def metric_reporting(name: str) -> Optional[str]:
    """The registered metric that reports `name` (e.g. rouge for rougeL), or None."""
    for metric in METRICS.names():
        if name in METRICS.get(metric).names:
            return metric
    return None
