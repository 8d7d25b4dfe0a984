"""bench.stats: intervals cover the truth at 10, 30 and 100 items, are never zero width, and agree with their p-values.

Coverage is checked against known truth: exactly for Clopper-Pearson (every count enumerated), by
seeded simulation for the betting intervals (the same code as benchmarks/statistics.py, fewer
repetitions). Figures at 2,000 repetitions are in docs/report.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import stats
from benchmarks.statistics import (NS, RATES, exact_binomial_coverage, mean_coverage, paired_coverage,
                                   scores)

REPS = 200  # per cell: a coverage of 0.95 is estimated to +-0.015 (one standard error)


@pytest.mark.parametrize("n", NS)
def test_clopper_pearson_covers_every_rate_exactly(n):
    for p in RATES:
        assert exact_binomial_coverage(n, p) >= 0.95 - 1e-9, (n, p)


def test_mean_ci_covers_f1_like_scores_at_small_n():
    for n in NS:
        for truth in (0.05, 0.2, 0.5):
            c = mean_coverage(n, truth, REPS, seed=n)
            assert c.coverage >= 0.93, c  # n = 10 included: betting intervals are valid at any n


def test_paired_diff_ci_covers_binary_and_f1_like_differences():
    for n in NS:
        for kind in ("binary", "f1"):
            for means in ((0.1, 0.05), (0.5, 0.2), (0.4, 0.4)):
                c = paired_coverage(n, means, REPS, kind, seed=n)
                assert c.coverage >= 0.93, c


def test_a_t_interval_would_not_cover_rare_outcomes_at_n_10():
    """The failure the betting interval exists for: with few non-zero scores a t interval is far too narrow."""
    c = mean_coverage(10, 0.05, REPS, seed=1)
    assert c.t_coverage < 0.8 and c.coverage >= 0.93, c


def test_never_zero_width():
    assert stats.mean_ci([1.0]) == pytest.approx((0.025, 1.0))  # Clopper-Pearson, one success
    lo, hi = stats.mean_ci([0.4])
    assert (lo, hi) == (0.0, 1.0)  # one continuous value says nothing
    for vals in ([0.0] * 10, [1.0] * 10, [0.3] * 10, [0.3] * 100):
        lo, hi = stats.mean_ci(vals)
        assert hi - lo > 0.02 and lo <= vals[0] <= hi, vals
    one = stats.paired_diff_ci([1.0], [0.0])
    assert one.ci_low == -1.0 and one.ci_high == 1.0 and one.p_value == 1.0
    same = stats.paired_diff_ci([0.5] * 30, [0.5] * 30)
    assert same.ci_low < -0.05 and same.ci_high > 0.05 and same.p_value == 1.0


def test_rate_interval_is_clopper_pearson():
    lo, hi = stats.mean_ci([1.0] * 3 + [0.0] * 7)
    assert (lo, hi) == pytest.approx(stats.clopper_pearson(3, 10))
    assert stats.clopper_pearson(3, 10) == pytest.approx((0.0667, 0.6525), abs=1e-4)  # published table value
    assert stats.clopper_pearson(0, 0) == (None, None)


def test_p_value_and_interval_agree():
    rng = np.random.default_rng(3)
    x = scores(rng, [0.5, 0.3], 40, 60, kind="f1")
    agree = 0
    for r in range(60):
        pd_ = stats.paired_diff_ci(x[r, 0], x[r, 1], seed=r)
        excludes_zero = pd_.ci_low > 0 or pd_.ci_high < 0
        assert excludes_zero == (pd_.p_value <= 0.05), pd_
        agree += excludes_zero
    assert 0 < agree < 60  # both outcomes occur, so the check above is not vacuous
    ev = stats.Evidence(x[0, 0] - x[0, 1], stats.DIFF, tune=0.01)
    lo = ev.lower(0.01)
    assert ev.p_above(lo - 1e-3) <= 0.01 < ev.p_above(lo + 1e-3)
    hi = ev.upper(0.01)
    assert ev.p_below(hi + 1e-3) <= 0.01 < ev.p_below(hi - 1e-3)


def test_sequential_evidence_holds_under_repeated_looks():
    """Looking after every item and stopping at the first exclusion: the truth is excluded in <= 5 % of runs."""
    rng = np.random.default_rng(11)
    x = scores(rng, [0.3, 0.3], 150, 300, kind="binary")
    ever_wrong = 0
    for r in range(300):
        d = x[r, 0] - x[r, 1]
        ev = stats.Evidence(d, stats.DIFF, tune=0.025, sequential=True, order=range(d.size))
        ever_wrong += ev.p_above(0.0) <= 0.025 or ev.p_below(0.0) <= 0.025  # running maximum = every look
    assert ever_wrong / 300 <= 0.05


def test_statistic_ci_finds_a_rate_over_a_subset():
    """hallucination-style rate: 1 - share of the flagged items that scored 1; gets Clopper-Pearson of the subset."""
    records = [(1.0, True), (0.0, True), (1.0, False), (1.0, True), (0.0, False), (None, True), (0.0, True)]

    def rate(rs):
        sub = [v for v, flagged in rs if flagged and v is not None]
        return 1 - sum(sub) / len(sub) if sub else None

    c, b, subset = stats.subset_mean_form(records, rate)
    assert (c, b, subset) == (1.0, -1.0, [0, 1, 3, 6])
    lo, hi = stats.statistic_ci(records, rate)
    cp = stats.clopper_pearson(2, 4)
    assert (lo, hi) == pytest.approx((1 - cp[1], 1 - cp[0]))

    def ratio(rs):  # precision-like: not a mean over a fixed subset -> bootstrap
        ab = [flag for v, flag in rs if v is not None and v >= 0.5]
        return sum(ab) / len(ab) if ab else None

    assert stats.subset_mean_form(records, ratio) is None


def test_paired_compare_finds_a_real_difference_and_ties_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.8, size=80)
    a = {(f"q{i}", 0): float(v + 0.2) for i, v in enumerate(base)}
    b = {(f"q{i}", 0): float(v) for i, v in enumerate(base)}
    c = stats.paired_compare("a", a, "b", b)
    assert c.significant and abs(c.diff - 0.2) < 1e-9 and c.p_value < 0.01 and c.ci_low > 0.1
    noisy = {k: min(1.0, max(0.0, v + float(rng.normal(0, 0.05)))) for k, v in b.items()}
    t = stats.paired_compare("b", b, "noisy", noisy)
    assert t.tie and t.ci_low <= 0 <= t.ci_high


def test_paired_compare_matches_by_example_and_seed_and_falls_back_to_item_means():
    a = {("q1", 0): 1.0, ("q1", 1): 0.0, ("q2", 0): 1.0, ("q2", 1): 1.0, ("q3", 0): None}
    b = {("q1", 0): 0.0, ("q1", 1): 0.0, ("q2", 0): 1.0, ("q2", 1): 0.0}
    diffs, seeds = stats.paired_differences(a, b)
    assert sorted(diffs) == [0.5, 0.5] and seeds == 2
    only_seed5 = {("q1", 5): 1.0, ("q2", 5): 0.0}
    diffs, seeds = stats.paired_differences(a, only_seed5)  # no common seed: item means
    assert sorted(diffs) == [-0.5, 1.0] and seeds == 0
    assert stats.paired_compare("a", {}, "b", b).diff is None


def test_sign_flip_p_is_exact_for_few_differences():
    assert stats.sign_flip_p([0.3, 0.2, 0.5, 0.1, 0.0, 0.0]) == 0.125  # 4 non-zero: 2 of 16 sign patterns
    rng = np.random.default_rng(1)
    assert stats.sign_flip_p(rng.normal(0, 1, size=50)) > 0.01
    assert stats.sign_flip_p(rng.normal(1, 1, size=50)) < 0.01
    assert stats.sign_flip_p([0.0, 0.0]) == 1.0


def test_holm_adjusts_step_down():
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adj == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": None})


def test_kept_signatures_for_callers():
    assert stats.bootstrap_ci([]) == (None, None)
    lo, hi = stats.bootstrap_ci([0.5])
    assert lo < 0.5 < hi  # one item: never a zero-width interval
    lo, hi = stats.bootstrap_ci([10.0, 12.0, 11.0])  # outside [0, 1]: a t interval
    assert lo < 11 < hi
    mean, lo, hi = stats.cluster_bootstrap_ci({"q1": [1.0, 0.0], "q2": [1.0, 1.0], "q3": [0.0, 0.0]})
    assert mean == 0.5 and lo < 0.5 < hi
    lo, hi = stats.bootstrap_ci_stat([1, 2, 3, 4], lambda rs: sum(rs) / len(rs), n_boot=200)
    assert 1 <= lo <= hi <= 4
    assert stats.bootstrap_ci_stat([1], lambda rs: rs[0]) == (None, None)
    assert stats.percentile([1.0, 2.0, 3.0], 50) == 2.0 and stats.percentile([], 50) is None
    assert stats.seed_summary([0.2, 0.4]) == pytest.approx((0.3, 0.1414), abs=1e-4)
