"""The runner's entry point to the probes: Measures for one (model, arm) cell, with deltas against the base.

Kept apart from run_probes so the runner needs one call: it passes the cell's context after the
fine-tuning step (ctx.backend = the adapted model) and the base model's backend; both runs are cached
by model_id, so the base model is probed once per run however many arms there are.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from bench.prompts import format_passages
from bench.run.probes import probe_deltas, run_probes
from bench.types import Example, Measure

MEASURE_KEYS = ("metric", "value", "n", "n_failed", "ci_low", "ci_high", "higher_is_better")


def probe_measures(ctx, which: str | dict = "default", base_backend=None, retrieval=None,
                   retrieval_key: str = "") -> tuple[list[Measure], dict]:
    """(Measures of kind "probe" for the arm plus `<metric>_delta` Measures against the base model,
    {metric: per-item values} for probes.json).

    base_backend: the un-adapted model. retrieval: the arm's RetrievalStrategy, whose passages for each
    probe question are put before it (retrieval can disturb unrelated answers too). An arm that neither
    changes the model nor retrieves gets no delta rows (it is the base).
    """
    context = None
    if retrieval is not None:
        def context(question: str) -> str:
            probe = Example(id="probe", instruction=question, input="", output="")
            return format_passages(retrieval.retrieve(probe, ctx), ctx.task)
    rows = run_probes(ctx, which, context=context, context_key=retrieval_key)
    items = {r["metric"]: r["items"] for r in rows if "items" in r}
    out = [_measure(r) for r in rows]
    base_id: Optional[str] = getattr(base_backend, "model_id", None) if base_backend is not None else None
    if base_id is not None and (base_id != getattr(ctx.backend, "model_id", None) or retrieval is not None):
        base_ctx = dataclasses.replace(ctx, backend=base_backend)
        for d in probe_deltas(run_probes(base_ctx, which), rows):
            out.append(Measure(metric=f"{d['metric']}_delta", value=d["delta"], n=d["n"], ci_low=d["ci_low"],
                               ci_high=d["ci_high"], higher_is_better=d["higher_is_better"], kind="probe",
                               scorer="probe_delta",
                               extra={"base": d["base"], "adapted": d["adapted"], "against": "base model"}))
    return out, items


def _measure(r: dict) -> Measure:
    extra = {k: v for k, v in r.items() if k not in MEASURE_KEYS and k not in ("items", "family", "main", "kind")}
    return Measure(**{k: r[k] for k in MEASURE_KEYS}, kind="probe", scorer="probe", extra=extra)
