"""Confidence intervals: percentile bootstrap over test items, seeded so a report re-renders the same."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[Optional[float], Optional[float]]:
    """95 % percentile bootstrap interval of the mean (None, None for no values)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None, None
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def bootstrap_ci_stat(
    records: Sequence, stat: Callable[[Sequence], Optional[float]], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap interval of any statistic over resampled records."""
    n = len(records)
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        v = stat([records[i] for i in rng.integers(0, n, size=n)])
        if v is not None:
            vals.append(v)
    if not vals:
        return None, None
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.percentile(vals, q)) if vals else None
