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
SCORING_VERSION = "4"  # 3: support metrics on every task, Clopper-Pearson and betting intervals


ALWAYS = ("support",)  # diagnostics every task gets, beside the metrics its task.yaml names
ALWAYS_QA = ("gold_in_output",)  # and every qa task


def scorers_for(task: Task) -> tuple[str, ...]:
    """The registered metrics that score a task's predictions: the task's own, then the diagnostics every
    task gets (source support; for qa tasks gold_in_output), then support_nli when an NLI model is configured."""
    extra = ALWAYS + (ALWAYS_QA if task.kind == "qa" else ()) + (("support_nli",) if support.nli_enabled() else ())
    return tuple(task.metrics) + tuple(m for m in extra if m not in task.metrics)


def score_prediction(pred: Prediction, example: Example, task: Task) -> dict[str, dict]:
    """{metric name: {"value": float|None, "reason": str}} for every metric of `scorers_for(task)`; a metric
    gets the parts of the prediction its `inputs` name (the passages shown, the raw output) as keywords."""
    out: dict[str, dict] = {}
    for scorer in scorers_for(task):
        metric = METRICS.get(scorer)()
        if pred.answer is None:
            for name in metric.names:
                out[name] = {"value": None, "reason": f"no answer: {pred.error or 'generation failed'}"}
            continue
        try:
            scores = metric.score(pred.answer, example, task, **{k: getattr(pred, k) for k in metric.inputs})
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
    for scorer in scorers_for(task):
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
