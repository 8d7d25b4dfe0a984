"""Benchmark: do bench's intervals and decision rule keep their promises at 10, 30 and 100 items?

Simulations against known truth (seeded), the same code the tests call with fewer repetitions
(tests/test_stats.py, tests/test_decision_rule.py):

- coverage of 95 % intervals of one mean (Clopper-Pearson for 0/1 rates, computed exactly; betting
  intervals for F1-like scores in [0, 1]) and of a paired difference (betting), per n and truth;
  the width next to a t-interval's shows what validity at small n costs;
- the decision rule (`bench.report.rule.decide`) on grids of arms whose true means and costs are
  known: how often it recommends an arm truly worse than the best by more than the margin (must be
  <= 5 %), how often it decides at all, and the same with a look after every round of 10 items
  (`sequential=True`, stopping at the first decided verdict).

    python benchmarks/statistics.py               # 2,000 repetitions per coverage cell, 500 per decision cell (~10 min)
    python benchmarks/statistics.py --reps 300    # quicker, noisier
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench import stats  # noqa: E402
from bench.report.rule import MARGIN, Arm, decide  # noqa: E402

NS = (10, 30, 100)
RATES = (0.05, 0.1, 0.2, 0.3, 0.5)
F1_FULL, F1_PARTIAL = 0.5, (0.2, 1.0)  # F1-like: a right answer scores 1 half the time, else U(0.2, 1)
F1_RIGHT_MEAN = F1_FULL + (1 - F1_FULL) * sum(F1_PARTIAL) / 2  # 0.8: the mean score of a right answer


# ------------------------------------------------------------------------------------------ score models

def _probit(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def hit_rate_for(mean: float, kind: str) -> float:
    """The rate of fully right answers that gives `mean` under the score model `kind`."""
    if kind == "binary":
        return mean
    return mean / F1_RIGHT_MEAN


def scores(rng: np.random.Generator, means: list[float], n: int, reps: int, kind: str = "binary",
           rho: float = 0.5) -> np.ndarray:
    """(reps, arms, n) per-item scores with the given true means, arms correlated through item difficulty.

    kind "binary": exact-match-like 0/1. kind "f1": 0 when wrong; when right 1 half the time, else
    U(0.2, 1) (mass at 0 and 1 and values between, like token F1); its true mean is 0.8 x the hit rate.
    """
    hard = rng.standard_normal((reps, 1, n))
    z = math.sqrt(rho) * hard + math.sqrt(1 - rho) * rng.standard_normal((reps, len(means), n))
    cut = np.array([_probit(min(max(hit_rate_for(m, kind), 1e-12), 1 - 1e-12)) for m in means])[None, :, None]
    right = (z < cut).astype(float)
    if kind == "binary":
        return right
    credit = np.where(rng.random(right.shape) < F1_FULL, 1.0, rng.uniform(*F1_PARTIAL, right.shape))
    return right * credit


# ------------------------------------------------------------------------------------------------ coverage

def exact_binomial_coverage(n: int, p: float, alpha: float = 0.05) -> float:
    """Exact coverage of Clopper-Pearson at (n, p): the probability of the counts whose interval holds p."""
    from scipy.stats import binom

    cover = 0.0
    for k in range(n + 1):
        lo, hi = stats.clopper_pearson(k, n, alpha)
        if lo <= p <= hi:
            cover += float(binom.pmf(k, n, p))
    return cover


def t_interval(x: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    from scipy.stats import t as student

    h = float(student.ppf(1 - alpha / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0
    return float(x.mean() - h), float(x.mean() + h)


@dataclass
class Coverage:
    what: str
    n: int
    truth: float
    coverage: float
    width: float
    t_coverage: float
    t_width: float


def mean_coverage(n: int, truth: float, reps: int, seed: int = 0) -> Coverage:
    """Betting interval of an F1-like mean (continuous scores) against the truth, and a t-interval's."""
    rng = np.random.default_rng(seed)
    x = scores(rng, [truth], n, reps, kind="f1")[:, 0, :]
    hit = width = t_hit = t_width = 0.0
    for row in x:
        lo, hi = stats.mean_ci(row)
        hit += lo <= truth <= hi
        width += hi - lo
        tlo, thi = t_interval(row)
        t_hit += tlo <= truth <= thi
        t_width += thi - tlo
    return Coverage("mean, F1-like", n, truth, hit / reps, width / reps, t_hit / reps, t_width / reps)


def paired_coverage(n: int, means: tuple[float, float], reps: int, kind: str, seed: int = 0,
                    rho: float = 0.5) -> Coverage:
    """Betting interval of a paired difference (two correlated arms) against the true difference."""
    rng = np.random.default_rng(seed)
    x = scores(rng, list(means), n, reps, kind=kind, rho=rho)
    truth = means[0] - means[1]
    hit = width = t_hit = t_width = 0.0
    for r in range(reps):
        pd_ = stats.paired_diff_ci(x[r, 0], x[r, 1], seed=r)
        hit += pd_.ci_low <= truth <= pd_.ci_high
        width += pd_.ci_high - pd_.ci_low
        tlo, thi = t_interval(x[r, 0] - x[r, 1])
        t_hit += tlo <= truth <= thi
        t_width += thi - tlo
    return Coverage(f"paired diff, {kind}", n, truth, hit / reps, width / reps, t_hit / reps, t_width / reps)


# ---------------------------------------------------------------------------------------- decision rule

@dataclass(frozen=True)
class Scenario:
    """Arms with known true means and costs; `worse` are the arms truly worse than the best by more than margin."""

    name: str
    means: tuple[float, ...]
    costs: tuple[float, ...]
    kind: str = "binary"
    rho: float = 0.5

    @property
    def names(self) -> list[str]:
        return [f"arm{i}" for i in range(len(self.means))]

    @property
    def worse(self) -> set[str]:
        best = max(self.means)
        return {a for a, m in zip(self.names, self.means) if m < best - MARGIN - 1e-12}


SCENARIOS = {
    "cheap arm worse by 0.15": Scenario("cheap arm worse by 0.15", (0.35, 0.50), (1.0, 2.0)),
    "facts case (0.05 / 0.157 / 0.20)": Scenario("facts case (0.05 / 0.157 / 0.20)", (0.05, 0.157, 0.20),
                                                 (1.0, 1.8, 2.2), kind="f1"),
    "cheap arm worse by 0.1": Scenario("cheap arm worse by 0.1", (0.4, 0.50), (1.0, 2.0)),
    "cheap arm worse by 0.06 (at the margin)": Scenario("cheap arm worse by 0.06 (at the margin)", (0.44, 0.50),
                                                        (1.0, 2.0)),
    "cheap arm better by 0.3": Scenario("cheap arm better by 0.3", (0.6, 0.3, 0.3), (1.0, 2.0, 3.0)),
    "dear arm better by 0.3": Scenario("dear arm better by 0.3", (0.3, 0.3, 0.6), (1.0, 2.0, 3.0)),
    "8 arms, dear one better by 0.25 (F1-like)": Scenario(
        "8 arms, dear one better by 0.25 (F1-like)", (0.05, 0.1, 0.1, 0.15, 0.2, 0.25, 0.3, 0.55),
        (1, 2, 3, 4, 5, 6, 7, 8), kind="f1"),
    "four equal arms": Scenario("four equal arms", (0.4, 0.4, 0.4, 0.4), (1.0, 2.0, 3.0, 4.0)),
}


@dataclass
class DecisionRates:
    scenario: str
    n: int
    sequential: bool
    error: float  # recommended an arm truly worse than the best by more than the margin
    decided: float
    mean_items: float  # items used (sequential: at the stop)
    picks: dict


def decision_rates(sc: Scenario, n: int, reps: int, seed: int = 0, sequential: bool = False,
                   round_size: int = 10) -> DecisionRates:
    """Run the rule `reps` times on fresh simulated items; with `sequential`, look after every round of
    `round_size` items up to n and stop at the first decided verdict."""
    rng = np.random.default_rng(seed)
    x = scores(rng, list(sc.means), n, reps, kind=sc.kind, rho=sc.rho)
    ids = [f"q{i}" for i in range(n)]
    errors = decided = 0
    items_used = 0
    picks: dict[str, int] = {}
    for r in range(reps):
        looks = range(round_size, n + 1, round_size) if sequential else [n]
        verdict, used = None, n
        for m in looks:
            arms = [Arm(a, dict(zip(ids[:m], x[r, j, :m].tolist())), c)
                    for j, (a, c) in enumerate(zip(sc.names, sc.costs))]
            verdict = decide(arms, sequential=sequential, order=ids[:m] if sequential else None, seed=r, estimate=False)
            used = m
            if verdict.decided:
                break
        items_used += used
        if verdict.decided:
            decided += 1
            picks[verdict.strategy] = picks.get(verdict.strategy, 0) + 1
            errors += verdict.strategy in sc.worse
    return DecisionRates(sc.name, n, sequential, errors / reps, decided / reps, items_used / reps, picks)


# ------------------------------------------------------------------------------------------------ report

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2000)
    args = ap.parse_args()
    from bench.cpu import cpu_info

    print(f"# bench statistics benchmark: {args.reps} repetitions per cell")
    print(f"# {cpu_info().summary()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t0 = time.time()
    print("\n## Coverage of 95 % intervals (truth inside the interval); width beside a t-interval's\n")
    print("| interval | n | truth | coverage | width | t coverage | t width |")
    print("|---|---|---|---|---|---|---|")
    for n in NS:
        for p in RATES:
            cover = exact_binomial_coverage(n, p)
            print(f"| rate, Clopper-Pearson (exact) | {n} | {p} | {cover:.3f} | – | – | – |")
    rows = []
    for n in NS:
        for m in RATES:
            rows.append(mean_coverage(n, m, args.reps, seed=n))
        for pair in ((0.1, 0.05), (0.3, 0.2), (0.5, 0.5), (0.5, 0.2)):
            rows.append(paired_coverage(n, pair, args.reps, "binary", seed=n))
            rows.append(paired_coverage(n, pair, args.reps, "f1", seed=n + 1))
    for c in rows:
        print(f"| {c.what} | {c.n} | {c.truth:+.3f} | {c.coverage:.3f} | {c.width:.3f} | {c.t_coverage:.3f} | "
              f"{c.t_width:.3f} |")
    print("\n## Decision rule: margin 0.05, alpha 0.05, floor 0.1\n")
    print("| scenario | n | looks | picks a truly worse arm | decided | mean items used | picks |")
    print("|---|---|---|---|---|---|---|")
    for sc in SCENARIOS.values():
        for n in (10, 30, 50, 100):
            for seq in (False, True):
                if seq and n < 30:
                    continue
                d = decision_rates(sc, n, max(args.reps // 4, 50), seed=n, sequential=seq)
                print(f"| {sc.name} | {n} | {'every 10 items' if seq else 'one'} | {d.error:.3f} | {d.decided:.3f} | "
                      f"{d.mean_items:.0f} | {dict(sorted(d.picks.items()))} |")
    print(f"\n# {time.time() - t0:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
