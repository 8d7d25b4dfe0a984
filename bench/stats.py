"""Statistics for the report: bootstrap intervals, paired comparisons, and when a difference is a tie.

Everything is seeded, so a report re-renders with the same numbers. Three kinds of question:

- how precise is one strategy's score?  `bootstrap_ci` (mean of items), `bootstrap_ci_stat` (any
  statistic), `cluster_bootstrap_ci` (items scored under several seeds: items are resampled whole,
  so seeds of one item are not counted as independent evidence);
- is strategy A better than B on the same items?  `paired_compare`: per-item differences matched by
  (example_id, seed), averaged over the seeds both ran, then a paired bootstrap interval of the mean
  difference and a sign-flip permutation p-value; a difference whose interval covers 0 is a tie;
- percentiles for latency (`percentile`).

bench.scoring imports bootstrap_ci, bootstrap_ci_stat and percentile: keep their signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

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


def cluster_bootstrap_ci(
    by_item: Mapping[str, Sequence[float]], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """(mean, low, high) of the grand mean when each item has one score per seed.

    Each item's scores are averaged first (an item is the unit that was sampled; seeds only add
    decoding or training noise on top), then the item means are bootstrapped.
    """
    means = [float(np.mean([v for v in vs if v is not None])) for vs in by_item.values()
             if any(v is not None for v in vs)]
    if not means:
        return None, None, None
    lo, hi = bootstrap_ci(means, n_boot=n_boot, alpha=alpha, seed=seed)
    return float(np.mean(means)), lo, hi


@dataclass(frozen=True)
class Comparison:
    """A minus B on the items both answered: mean difference, its interval, and a p-value."""

    a: str
    b: str
    diff: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    p_value: Optional[float]
    n_items: int
    n_seeds: int

    @property
    def significant(self) -> bool:
        """The interval excludes zero (a difference we can tell from noise); otherwise a tie."""
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def tie(self) -> bool:
        return not self.significant

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "diff": self.diff, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "n_items": self.n_items, "n_seeds": self.n_seeds,
                "significant": self.significant}


def paired_differences(
    a: Mapping[tuple[str, int], Optional[float]], b: Mapping[tuple[str, int], Optional[float]]
) -> tuple[list[float], int]:
    """Per-item mean of (a - b) over the seeds where both scored the item; and how many seeds matched.

    Keys are (example_id, seed). When the two strategies share no seed (e.g. a deterministic prompt
    run once, a fine-tune run under three seeds) items are matched by example_id on seed means.
    """
    common = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    diffs: dict[str, list[float]] = {}
    seeds = set()
    if common:
        for k in common:
            diffs.setdefault(k[0], []).append(float(a[k]) - float(b[k]))
            seeds.add(k[1])
        return [float(np.mean(v)) for v in diffs.values()], len(seeds)

    def item_means(m):
        acc: dict[str, list[float]] = {}
        for (ex, _), v in m.items():
            if v is not None:
                acc.setdefault(ex, []).append(float(v))
        return {k: float(np.mean(v)) for k, v in acc.items()}

    ma, mb = item_means(a), item_means(b)
    return [ma[k] - mb[k] for k in ma if k in mb], 0


def sign_flip_p(diffs: Sequence[float], n_perm: int = 5000, seed: int = 0) -> Optional[float]:
    """Two-sided permutation p-value of a paired mean difference (random sign flips of the differences)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return None
    obs = abs(d.mean())
    if np.allclose(d, 0):
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + np.sum(null >= obs - 1e-12)) / (n_perm + 1))


def paired_compare(
    name_a: str, a: Mapping[tuple[str, int], Optional[float]], name_b: str, b: Mapping[tuple[str, int], Optional[float]],
    *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
) -> Comparison:
    """Paired bootstrap interval and permutation p-value of mean(a - b) over matched items."""
    diffs, n_seeds = paired_differences(a, b)
    if not diffs:
        return Comparison(name_a, name_b, None, None, None, None, 0, 0)
    lo, hi = bootstrap_ci(diffs, n_boot=n_boot, alpha=alpha, seed=seed)
    return Comparison(name_a, name_b, float(np.mean(diffs)), lo, hi, sign_flip_p(diffs, seed=seed), len(diffs), n_seeds)


def seed_summary(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation over seeds (std None for a single seed)."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)
