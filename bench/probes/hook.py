"""The runner's entry point to the probes: rows for one (model, arm) cell, with deltas against the base.

Kept apart from run_probes so the runner needs one call: it passes the cell's context after the
fine-tuning step (ctx.backend = the adapted model) and the base model's backend; both runs are cached
by model_id, so the base model is probed once per run however many arms there are.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from bench.probes import probe_deltas, run_probes


def probe_cell_rows(ctx, common: dict, which: str | dict = "default", base_backend=None) -> list[dict]:
    """Probe rows (kind="probe") for ctx.backend, plus `<metric>_delta` rows against `base_backend`.

    common: the cell's identifying keys (task, strategy, model, seed, ...), copied into every row.
    base_backend: the un-adapted model; None or the same model_id = no delta rows (a prompting arm).
    """
    rows = run_probes(ctx, which)
    out = [{**common, **r} for r in rows]
    base_id: Optional[str] = getattr(base_backend, "model_id", None) if base_backend is not None else None
    if base_id is not None and base_id != getattr(ctx.backend, "model_id", None):
        base_ctx = dataclasses.replace(ctx, backend=base_backend) if dataclasses.is_dataclass(ctx) else \
            type("BaseCtx", (), {"backend": base_backend, "config": getattr(ctx, "config", None)})()
        for d in probe_deltas(run_probes(base_ctx, which), rows):
            out.append({**common, "metric": f"{d['metric']}_delta", "family": "probe_delta", "value": d["delta"],
                        "n": d["n"], "n_failed": 0, "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                        "higher_is_better": d["higher_is_better"], "main": False, "kind": "probe",
                        "base": d["base"], "adapted": d["adapted"]})
    return out
