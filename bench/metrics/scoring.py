"""Scoring: per-example scores for every metric of a task, and their aggregation into rows.

A prediction without an answer (the strategy failed) and a metric that cannot score an example both
give value None: they are counted in n_failed and left out of the mean, never scored as zero.
"""

from __future__ import annotations

from typing import Optional

from bench.metrics import support
from bench.metrics.base import Metric
from bench.registry import METRICS
from bench.stats import mean_ci, statistic_ci, unit_bounds
from bench.types import Example, Measure, Prediction, Task


# Bump when a change here or in a metric changes any stored score: cells scored under another version are recomputed.
SCORING_VERSION = "3"  # 3: support metrics on every task, Clopper-Pearson and betting intervals


def score_prediction(pred: Prediction, example: Example, task: Task) -> dict[str, dict]:
    """{metric name: {"value": float|None, "reason": str}} for every metric the task reports, plus the
    source-support checks that score every task (`support.scorers_for`); a metric with `uses_sources`
    also gets the texts the arm showed the model (`pred.sources`)."""
    out: dict[str, dict] = {}
    for scorer in support.scorers_for(task):
        metric = METRICS.get(scorer)()
        if pred.answer is None:
            for name in metric.names:
                out[name] = {"value": None, "reason": f"no answer: {pred.error or 'generation failed'}"}
            continue
        try:
            if getattr(metric, "uses_sources", False):
                scores = metric.score(pred.answer, example, task, sources=pred.sources)
            else:
                scores = metric.score(pred.answer, example, task)
        except Exception as e:  # a scorer bug must not take the cell down; it is counted instead
            scores = {}
            for name in metric.names:
                out[name] = {"value": None, "reason": f"scorer error: {type(e).__name__}: {e}"}
        for name, s in scores.items():
            out[name] = {"value": s.value, "reason": s.reason}
    return out


def aggregate(task: Task, examples: list[Example], per_example: list[dict[str, dict]], seed: int = 0,
              stratum: Optional[str] = None) -> list[Measure]:
    """One Measure per metric name the task reports (value, n, n_failed, interval, direction, main)."""
    rows = []
    for scorer in support.scorers_for(task):
        metric: Metric = METRICS.get(scorer)()
        for name in metric.names:
            records = [(s.get(name, {}).get("value"), ex) for s, ex in zip(per_example, examples)]
            value = metric.aggregate(name, records)
            n = sum(v is not None for v, _ in records)
            if type(metric).aggregate is Metric.aggregate:  # a mean: Clopper-Pearson for 0/1, betting otherwise
                values = [v for v, _ in records]
                lo, hi = mean_ci(values, bounds=unit_bounds(values))
            else:  # a rate over a subset of items gets the same; other statistics a bootstrap (approximate)
                def stat(rs, _m=metric, _n=name) -> Optional[float]:
                    return _m.aggregate(_n, list(rs))

                lo, hi = statistic_ci(records, stat, seed=seed)
            rows.append(Measure(
                metric=name, scorer=scorer, value=value, n=n, n_failed=len(records) - n, ci_low=lo, ci_high=hi,
                higher_is_better=metric.higher_is_better, main=stratum is None and name == task.main_metric,
                kind="quality" if stratum is None else "stratum", stratum=stratum,
            ))
    return rows
