"""Statistics for the report: intervals that hold at the sizes people run (10 to 100 items), and paired evidence.

A report is read as "A is better than B"; with 10 or 30 test items the usual large-sample tools (a
percentile bootstrap, a t-interval) give intervals that are too narrow, and one item or all-equal items
give a zero-width interval. Everything here is valid at any n for scores in known bounds:

- one rate (values all 0 or 1: exact match, hallucination, abstention): **Clopper-Pearson**, exact;
- one mean of bounded continuous scores (F1, ROUGE in [0, 1]) and a **paired difference** (in [-1, 1]):
  **betting** intervals (Waudby-Smith & Ramdas 2024, "Estimating means of bounded random variables by
  betting", JRSSB 86(1)). For a candidate mean m a gambler bets on the items one at a time, a fraction
  lambda_t of her capital, that the next value lies above m (capital K_t(m) = prod (1 + lambda_t (x_t - m))).
  If m is the true mean, K is a nonnegative martingale, so by Ville's inequality it ever reaches 1/a with
  probability at most a: every m whose capital reached 1/a is excluded, whatever the distribution of the
  scores, at every n, and under any number of looks at the data. lambda_t depends on the items before t
  only (their running mean and variance); `Evidence` holds the two bets (mean above m, mean below m).
  Never zero width: one item cannot move the capital to 1/a, so one item gives the whole range.
  The price of that guarantee is width: about 1.2x a t-interval for 0/1 and F1-like differences, more
  for differences that are nearly constant (benchmarks/statistics.py prints the table).
- p-values are read from the same capital: p = 1/K (capped at 1), so a bound and the p-value of the same
  test can never disagree: m lies outside the level-a bound exactly when p(m) <= a.

The item order must not depend on the scores (a test file sorted by difficulty would bias the bets):
`Evidence` shuffles with a fixed seed unless the caller passes the order in which items were evaluated
(rounds of `bench run --until-decided`), which must itself be random.

Kept for callers (signatures unchanged, intervals now the honest ones above): `bootstrap_ci` (a mean of
item scores), `cluster_bootstrap_ci` (items scored under several seeds: item means first),
`bootstrap_ci_stat` (any statistic: a mean over a subset of items gets `mean_ci`, anything else a
percentile bootstrap, approximate), `paired_compare` and `Comparison`, `percentile`, `seed_summary`.
The decision rule that reads these is `bench.report.rule`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

ALPHA = 0.05
UNIT = (0.0, 1.0)
DIFF = (-1.0, 1.0)  # a difference of two scores in [0, 1]
BET_CAP = 0.9  # lambda_t (x_t - m) >= -0.9: one value at the far end keeps 10 % of the capital
_GRID = 33  # points per refinement pass when a bound is searched; three passes: 1/32768 of the range
_PASSES = 3

Interval = tuple[Optional[float], Optional[float]]


# ---------------------------------------------------------------------------------------------- one mean

def clopper_pearson(successes: int, trials: int, alpha: float = ALPHA) -> Interval:
    """Exact two-sided (1 - alpha) interval of a binomial rate; (None, None) for no trials."""
    from scipy.stats import beta  # lazy: scipy is heavy and only intervals need it

    if trials <= 0:
        return None, None
    k, n = int(successes), int(trials)
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def unit_bounds(values: Sequence[Optional[float]]) -> Optional[tuple[float, float]]:
    """(0, 1) when every value lies in [0, 1] (scores, rates), else None (scale unknown)."""
    vals = [v for v in values if v is not None]
    return UNIT if all(0.0 <= v <= 1.0 for v in vals) else None


def mean_ci(values: Sequence[Optional[float]], alpha: float = ALPHA,
            bounds: Optional[tuple[float, float]] = UNIT) -> Interval:
    """Two-sided (1 - alpha) interval of the mean of item values (None values left out).

    Values all at the two bounds (0/1: a rate): Clopper-Pearson. Other values within `bounds`: the
    betting interval (valid at any n). `bounds=None` (a scale without known limits, e.g. latency): a
    Student t interval, approximate, (None, None) below two values. (None, None) for no values.
    """
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None, None
    if bounds is None:
        if x.size < 2:
            return None, None
        from scipy.stats import t as student

        h = float(student.ppf(1 - alpha / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
        return float(x.mean() - h), float(x.mean() + h)
    lo, hi = bounds
    if np.any(x < lo - 1e-9) or np.any(x > hi + 1e-9):
        raise ValueError(f"mean_ci: values outside the declared bounds [{lo}, {hi}] (min {x.min()}, max {x.max()})")
    if np.all((np.abs(x - lo) < 1e-12) | (np.abs(x - hi) < 1e-12)):
        clo, chi = clopper_pearson(int(np.sum(np.abs(x - hi) < 1e-12)), x.size, alpha)
        return lo + (hi - lo) * clo, lo + (hi - lo) * chi
    ev = Evidence(x, bounds, tune=alpha / 2)
    return ev.lower(alpha / 2), ev.upper(alpha / 2)


# ----------------------------------------------------------------------------------------------- betting

class Evidence:
    """Two test martingales for the mean of values in `bounds`: the bet that it lies above m, and below m.

    `values` are taken in `order`'s sequence (indices; default a fixed-seed shuffle, since the order
    must not depend on the scores). `tune` is the one-sided level the bets are sized for; p-values and
    bounds at any other level stay valid, only less sharp. `sequential=False` sizes the bets for
    exactly these n items (the fixed-n interval, sharpest at n); `sequential=True` uses the
    confidence-sequence sizing, which does not know when the caller will stop (Waudby-Smith & Ramdas's
    predictable plug-in: lambda_t = sqrt(2 log(1/a) / (n sigma^2_{t-1})) for a fixed n, sqrt(2 log(1/a) /
    (sigma^2_{t-1} t log(1 + t))) for a sequence, sigma^2 the running variance with a prior of 1/4, both
    at most BET_CAP / m). Both are valid under repeated looks: the capital is read as its running maximum.
    """

    def __init__(self, values: Sequence[float], bounds: tuple[float, float] = UNIT, *, tune: float = ALPHA / 2,
                 sequential: bool = False, order: Optional[Sequence[int]] = None, seed: int = 0):
        v = np.asarray(values, dtype=float)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.span = self.bounds[1] - self.bounds[0]
        if order is None:
            order = np.random.default_rng(seed).permutation(v.size)
        v = v[np.asarray(order, dtype=int)] if v.size else v
        self.values = v
        self.n = int(v.size)
        self.mean = float(v.mean()) if self.n else None
        self.sd = float(v.std(ddof=1)) if self.n > 1 else None
        x = np.clip((v - self.bounds[0]) / self.span, 0.0, 1.0)
        self._x = x
        if self.n:
            t = np.arange(1, self.n + 1, dtype=float)
            mu = (0.5 + np.cumsum(x)) / (t + 1)
            s2 = (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)
            s2_before = np.concatenate([[0.25], s2[:-1]])
            scale = t * np.log1p(t) if sequential else np.full(self.n, float(self.n))
            self._lam = np.sqrt(2 * math.log(1 / tune) / (s2_before * scale))
        else:
            self._lam = np.zeros(0)

    def _to_unit(self, m: np.ndarray) -> np.ndarray:
        return (np.asarray(m, dtype=float) - self.bounds[0]) / self.span

    def log_e(self, m: float | np.ndarray, above: bool) -> np.ndarray:
        """log of the running-maximum capital of the bet that the mean is above m (`above`) or below m."""
        mu = np.clip(np.atleast_1d(self._to_unit(m)), 0.0, 1.0)
        if self.n == 0:
            return np.zeros(mu.shape)
        x, lam = self._x[None, :], self._lam[None, :]
        if above:  # capital grows when values exceed m; lambda <= cap/m keeps 1 + lambda (x - m) >= 1 - cap
            room = np.where(mu > 0, BET_CAP / np.maximum(mu, 1e-300), np.inf)[:, None]
            f = np.log1p(np.minimum(lam, room) * (x - mu[:, None]))
        else:
            room = np.where(mu < 1, BET_CAP / np.maximum(1 - mu, 1e-300), np.inf)[:, None]
            f = np.log1p(-np.minimum(lam, room) * (x - mu[:, None]))
        return np.maximum(np.cumsum(f, axis=1).max(axis=1), 0.0)

    def p_above(self, m: float) -> float:
        """p-value of "mean <= m" (small when the values show the mean is above m)."""
        return float(min(1.0, math.exp(-float(self.log_e(m, True)[0]))))

    def p_below(self, m: float) -> float:
        """p-value of "mean >= m" (small when the values show the mean is below m)."""
        return float(min(1.0, math.exp(-float(self.log_e(m, False)[0]))))

    def lower(self, level: float) -> float:
        """One-sided lower confidence bound at `level` (e.g. 0.025): every m below it has p_above(m) <= level."""
        return self._bound(level, above=True)

    def upper(self, level: float) -> float:
        """One-sided upper confidence bound at `level`: every m above it has p_below(m) <= level."""
        return self._bound(level, above=False)

    def _bound(self, level: float, above: bool) -> float:
        thresh = math.log(1 / level)
        lo, hi = self.bounds
        # the capital is monotone in m: rejected m form [lo, bound) for `above`, (bound, hi] otherwise
        for _ in range(_PASSES):
            grid = np.linspace(lo, hi, _GRID)
            rej = self.log_e(grid, above) >= thresh
            if above:
                k = int(np.argmin(rej)) if not rej.all() else _GRID - 1  # first not rejected
                if k == 0:
                    return float(grid[0])
                lo, hi = grid[k - 1], grid[k]
            else:
                idx = np.nonzero(~rej)[0]
                k = int(idx[-1]) if idx.size else 0  # last not rejected
                if k == _GRID - 1:
                    return float(grid[-1])
                lo, hi = grid[k], grid[k + 1]
        return float(lo if above else hi)  # the conservative end of the last bracket


# ------------------------------------------------------------------------------------- paired differences

@dataclass(frozen=True)
class PairedDiff:
    """mean(a - b) over matched items, its two-sided interval (each end at alpha/2), and its p-value."""

    n: int
    diff: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    p_value: Optional[float]
    sd: Optional[float]


def paired_diff_ci(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA, *, seed: int = 0) -> PairedDiff:
    """Betting interval and p-value of the mean of a_i - b_i (scores in [0, 1], matched by position).

    The p-value is two-sided, p = 2 / (the larger capital at 0), so `p <= alpha` exactly when the
    interval excludes 0.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_diff_ci: {len(a)} scores against {len(b)}; pair them by item first")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        return PairedDiff(0, None, None, None, None, None)
    ev = Evidence(d, DIFF, tune=alpha / 2, seed=seed)
    p = min(1.0, 2 * min(ev.p_above(0.0), ev.p_below(0.0)))
    return PairedDiff(int(d.size), float(d.mean()), ev.lower(alpha / 2), ev.upper(alpha / 2), p, ev.sd)


def holm(pvalues: Mapping[str, Optional[float]]) -> dict[str, Optional[float]]:
    """Holm step-down adjusted p-values (None stays None); reject at alpha where adjusted p <= alpha."""
    named = sorted(((p, k) for k, p in pvalues.items() if p is not None))
    m, out, running = len(named), {k: None for k, p in pvalues.items() if p is None}, 0.0
    for i, (p, k) in enumerate(named):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


# ------------------------------------------------------------------------- kept names, honest intervals

def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, alpha: float = ALPHA, seed: int = 0
) -> Interval:
    """Interval of the mean of item values: `mean_ci` on [0, 1] when they fit, else a t interval.

    The name is historical (it was a percentile bootstrap, far too narrow at small n); `n_boot` and
    `seed` are ignored.
    """
    return mean_ci(values, alpha, unit_bounds(values))


def subset_mean_form(records: Sequence[tuple], stat: Callable[[list], Optional[float]],
                     seed: int = 0) -> Optional[tuple[float, float, list[int]]]:
    """(c, b, S) when stat(records) == c + b * mean(value of records[i] for i in S), else None.

    `records` are tuples whose first element is the item's value (None = not scored), e.g. (value,
    example). Rates such as hallucination (1 - share of unanswerable items where the model abstained)
    are a mean over a subset of the items: probing the statistic with one value set to 1 at a time
    finds the subset, two more inputs (the real values, a seeded random 0/1 vector) check the form.
    """
    idx = [i for i, r in enumerate(records) if r[0] is not None]
    if not idx:
        return None

    def at(vs: dict[int, float]) -> Optional[float]:
        probe = [r if r[0] is None else (vs.get(i, 0.0), *r[1:]) for i, r in enumerate(records)]
        out = stat(probe)
        return None if out is None else float(out)

    c0 = at({})
    if c0 is None:
        return None
    steps = {}
    for i in idx:
        r = at({i: 1.0})
        if r is None:
            return None
        if abs(r - c0) > 1e-12:
            steps[i] = r - c0
    if not steps:
        return None
    S = sorted(steps)
    b = steps[S[0]] * len(S)
    if any(abs(s * len(S) - b) > 1e-9 for s in steps.values()):
        return None
    rng = np.random.default_rng(seed)
    for vs in ({i: float(records[i][0]) for i in idx}, {i: float(rng.integers(0, 2)) for i in idx}):
        r = at(vs)
        if r is None or abs(r - (c0 + b * float(np.mean([vs[i] for i in S])))) > 1e-9:
            return None
    return c0, b, S


def bootstrap_ci_stat(
    records: Sequence, stat: Callable[[Sequence], Optional[float]], n_boot: int = 1000, alpha: float = ALPHA,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of any statistic over resampled records (approximate at small n).

    (None, None) below two records, or when every resample gives the same value: no honest interval
    (use `mean_ci` or `statistic_ci` when the statistic is a mean or a rate).
    """
    n = len(records)
    if n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        v = stat([records[i] for i in rng.integers(0, n, size=n)])
        if v is not None:
            vals.append(v)
    if not vals or max(vals) - min(vals) < 1e-12:
        return None, None
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def statistic_ci(records: Sequence[tuple], stat: Callable[[list], Optional[float]], alpha: float = ALPHA,
                 seed: int = 0) -> Interval:
    """Interval of stat(records) (tuples, value first): `mean_ci` of the subset when the statistic is a
    rate or mean over a subset of the items (`subset_mean_form`), else `bootstrap_ci_stat` (approximate)."""
    form = subset_mean_form(records, stat, seed=seed)
    values = [r[0] for r in records]
    if form is not None and unit_bounds(values) is not None:
        c, b, S = form
        lo, hi = mean_ci([values[i] for i in S], alpha)
        if lo is None or hi is None:
            return None, None
        ends = sorted((c + b * lo, c + b * hi))
        return float(ends[0]), float(ends[1])
    return bootstrap_ci_stat(list(records), stat, alpha=alpha, seed=seed)


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.percentile(vals, q)) if vals else None


def cluster_bootstrap_ci(
    by_item: Mapping[str, Sequence[float]], n_boot: int = 2000, alpha: float = ALPHA, seed: int = 0
) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """(mean, low, high) of the grand mean when each item has one score per seed.

    Each item's scores are averaged first (an item is the unit that was sampled; seeds only add
    decoding or training noise on top), then the item means get `mean_ci` (`n_boot` is ignored).
    """
    means = [float(np.mean([v for v in vs if v is not None])) for vs in by_item.values()
             if any(v is not None for v in vs)]
    if not means:
        return None, None, None
    lo, hi = mean_ci(means, alpha, unit_bounds(means))
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
    """Two-sided permutation p-value of a paired mean difference (random sign flips of the differences).

    Exact (all 2^k flips of the k non-zero differences) up to k = 16, Monte Carlo above. Valid for the
    null "the two arms are exchangeable on each item"; not used by the decision (see `Evidence`).
    """
    d = np.asarray([x for x in diffs if abs(x) > 1e-12], dtype=float)
    if len(diffs) == 0:
        return None
    if d.size == 0:
        return 1.0
    obs = abs(d.sum())
    if d.size <= 16:
        signs = ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1) * 2.0 - 1.0
        return float(np.mean(np.abs(signs @ d) >= obs - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(n_perm, d.size))
    null = np.abs(signs @ d)
    return float((1 + np.sum(null >= obs - 1e-12)) / (n_perm + 1))


def paired_compare(
    name_a: str, a: Mapping[tuple[str, int], Optional[float]],
    name_b: str, b: Mapping[tuple[str, int], Optional[float]],
    *, n_boot: int = 2000, alpha: float = ALPHA, seed: int = 0,
) -> Comparison:
    """Betting interval and p-value (`paired_diff_ci`) of mean(a - b) over matched items (`n_boot` ignored).

    Scores outside [0, 1] fall back to a t interval on the differences (approximate, p-value None).
    """
    diffs, n_seeds = paired_differences(a, b)
    if not diffs:
        return Comparison(name_a, name_b, None, None, None, None, 0, 0)
    scores = [v for m in (a, b) for v in m.values() if v is not None]
    if unit_bounds(scores) is None:
        lo, hi = mean_ci(diffs, alpha, None)
        return Comparison(name_a, name_b, float(np.mean(diffs)), lo, hi, None, len(diffs), n_seeds)
    pd_ = paired_diff_ci(diffs, [0.0] * len(diffs), alpha, seed=seed)
    return Comparison(name_a, name_b, pd_.diff, pd_.ci_low, pd_.ci_high, pd_.p_value, len(diffs), n_seeds)


def seed_summary(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation over seeds (std None for a single seed)."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)
