"""bench.stats: intervals cover the truth, paired tests find real differences and call noise a tie."""

from __future__ import annotations

import numpy as np

from bench import stats


def test_bootstrap_ci_covers_known_mean_in_simulation():
    rng = np.random.default_rng(123)
    truth, hits = 0.3, 0
    for sim in range(200):
        x = rng.binomial(1, truth, size=60).astype(float)
        lo, hi = stats.bootstrap_ci(x, n_boot=1000, seed=sim)
        hits += lo <= truth <= hi
    assert hits / 200 >= 0.90, hits


def test_cluster_bootstrap_covers_known_mean_with_seed_noise():
    rng = np.random.default_rng(7)
    truth, hits = 0.5, 0
    for sim in range(200):
        item_mean = rng.normal(truth, 0.2, size=40)  # items differ; three seeds add decoding noise
        by_item = {f"q{i}": list(m + rng.normal(0, 0.1, size=3)) for i, m in enumerate(item_mean)}
        mean, lo, hi = stats.cluster_bootstrap_ci(by_item, n_boot=1000, seed=sim)
        hits += lo <= truth <= hi
    assert hits / 200 >= 0.90, hits


def test_paired_compare_finds_a_real_difference_and_ties_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, size=80)
    a = {(f"q{i}", 0): float(v + 0.1) for i, v in enumerate(base)}
    b = {(f"q{i}", 0): float(v) for i, v in enumerate(base)}
    c = stats.paired_compare("a", a, "b", b)
    assert c.significant and abs(c.diff - 0.1) < 1e-9 and c.p_value < 0.01
    noisy = {k: v + float(rng.normal(0, 0.05)) for k, v in b.items()}
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


def test_sign_flip_p_is_large_under_the_null_and_small_for_a_shift():
    rng = np.random.default_rng(1)
    assert stats.sign_flip_p(rng.normal(0, 1, size=50)) > 0.01
    assert stats.sign_flip_p(rng.normal(1, 1, size=50)) < 0.01
    assert stats.sign_flip_p([0.0, 0.0]) == 1.0


def test_kept_signatures_for_scoring():
    assert stats.bootstrap_ci([]) == (None, None)
    assert stats.bootstrap_ci([0.5]) == (0.5, 0.5)
    lo, hi = stats.bootstrap_ci_stat([1, 2, 3, 4], lambda rs: sum(rs) / len(rs), n_boot=200)
    assert 1 <= lo <= hi <= 4
    assert stats.percentile([1.0, 2.0, 3.0], 50) == 2.0 and stats.percentile([], 50) is None
