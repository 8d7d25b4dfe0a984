"""Forgetting as a number with an interval: adapted-model probe value minus the base model's.

Probe rows carry their per-item values (`items`: ids and values), so the delta is paired over the same
items: for accuracies a betting interval of the paired difference (bench.stats.paired_diff_ci, valid at
any n, never zero width: identical answers on 4 items do not make "+0.000 [+0.000, +0.000]"); for
perplexity a bootstrap over text chunks (none from a single chunk). The interval says whether a drop is
real or noise, and the report says when a probe set is too small to resolve a 5-point change.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from bench.stats import paired_diff_ci


def _stat(metric: str, vals: np.ndarray, toks: Optional[np.ndarray]) -> float:
    if metric.endswith("perplexity"):
        return float(math.exp(-vals.sum() / toks.sum()))
    return float(vals.mean())


def probe_delta(base_row: dict, row: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """{metric, delta, ci_low, ci_high, n, base, adapted} for one probe metric (row minus base_row)."""
    b = {i["id"]: i for i in base_row.get("items", [])}
    a = {i["id"]: i for i in row.get("items", [])}
    ids = sorted(set(a) & set(b))
    out = {"metric": row["metric"], "base": base_row.get("value"), "adapted": row.get("value"), "n": len(ids),
           "delta": None, "ci_low": None, "ci_high": None, "higher_is_better": row.get("higher_is_better", True)}
    if not ids:
        return out
    va = np.array([a[i]["value"] for i in ids], dtype=float)
    vb = np.array([b[i]["value"] for i in ids], dtype=float)
    ta = np.array([a[i].get("tokens", 1) for i in ids], dtype=float)
    tb = np.array([b[i].get("tokens", 1) for i in ids], dtype=float)
    m = row["metric"]
    out["delta"] = _stat(m, va, ta) - _stat(m, vb, tb)
    if not m.endswith("perplexity"):  # accuracies: a paired interval valid at any n, never zero width
        d = paired_diff_ci(va, vb)
        out["ci_low"], out["ci_high"] = d.ci_low, d.ci_high
        return out
    if len(ids) < 2:  # one text chunk: no interval
        return out
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n_boot):
        k = rng.integers(0, len(ids), size=len(ids))
        deltas.append(_stat(m, va[k], ta[k]) - _stat(m, vb[k], tb[k]))
    out["ci_low"], out["ci_high"] = float(np.quantile(deltas, 0.025)), float(np.quantile(deltas, 0.975))
    return out


def probe_deltas(base_rows: list[dict], rows: list[dict]) -> list[dict]:
    """Deltas for every probe metric present in both row lists."""
    base = {r["metric"]: r for r in base_rows}
    return [probe_delta(base[r["metric"]], r) for r in rows if r["metric"] in base]
