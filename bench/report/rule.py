"""The decision rule: which strategy to recommend from per-item scores, as a pure function (no files, no I/O).

A recommendation must not come from noise: with 10 test items almost every pair of arms "ties", and
the old rule then picked the cheapest tie, which on the committed example was an arm at f1 0.05
over one at 0.20. This rule only recommends what the data show, and says "inconclusive" otherwise.

Input, per arm: its main-metric score on each test item (item id -> score in [0, 1], seeds averaged;
failed or empty answers already scored 0 by the caller), its cost (money per 1k queries at the
reference volume; None = unknown, treated as dearer than any priced arm), and whether it is
diagnostic (reads gold information, e.g. rag_oracle: shown, never recommended, left out of the
rule). Parameters: the margin delta (0.05), alpha (0.05), the floor (0.1). When the metric is lower-is-
better every score is read as 1 - score ("goodness") inside the rule; differences and intervals are
reported back in the metric's own units (arm minus leader).

The rule, checkable by hand (k = the number of non-diagnostic arms with scores, a = alpha / (k - 1)):

1. Leader L: the best mean (ties: the cheaper, then the name). If L's mean is below the floor, no
   arm does the task: "not informative", nothing is recommended.
2. For every other arm X, the paired differences X - L on the items both scored give a betting
   interval [lo, hi] with each end a one-sided bound at level a (`bench.stats.Evidence`; valid at
   any n, never zero width). X is
   - "non-inferior" when lo > -delta (p-value of "X is worse by delta or more" <= a);
   - else "worse" when hi < 0 (p-value of "X is as good as L" <= a);
   - else "below floor" when its own mean is below the floor;
   - else "not separated".
   The p-value shown is the one of the test that gave the status; "p adjusted" is (k - 1) x p, capped
   at 1 (Bonferroni), and the status holds exactly when p adjusted <= alpha.
3. Candidates: arms at or above the floor, cheapest first. A candidate R is *recommendable* when, for
   every other arm Y not shown "worse" (the leader included), the lower bound of R - Y at level a
   is above -delta. The first recommendable candidate is the recommendation, provided every cheaper
   candidate was shown "worse"; a cheaper candidate that is neither recommendable nor worse is
   *unresolved* and the verdict is **inconclusive** (decided = False): it names the leader, the
   unresolved arms, and `needed_items`, the number of test items at which the observed paired
   differences (repeated) would settle every unresolved arm, one way or the other.

Why this holds at alpha (Hsu's multiple comparisons with the best): let T be the truly best arm.
With probability >= 1 - alpha all k - 1 one-sided bounds on the differences between T and the
others hold at once (Bonferroni: k - 1 bounds at a). Then T is never shown "worse" than anything,
and a recommended R has its bound against T above -delta, so R is within delta of T. So the rule
recommends an arm worse than the best by more than delta in at most alpha of runs, whatever the
score distribution and n (benchmarks/statistics.py checks it by simulation). Multiplicity is
already in a: no further Holm step is needed, and a Holm step would not give the guarantee above.

Decide until decided (`sequential=True`, for `bench run --until-decided`): the caller evaluates all
arms on new items in rounds and calls `decide` after each round with the items in evaluation order.
The bets are then sized as confidence sequences, and since a betting bound holds at every n at once
(Ville's inequality), looking after every round, and stopping at the first decided verdict, keeps the
error at or under alpha: no alpha spending, no planned number of looks. `next_round_size` sizes the
next round from `needed_items`. The item order must be random (a seeded shuffle of the test set),
never the file order.

Edge cases: one arm: recommended if above the floor (nothing to compare). Equal point estimates:
the cheaper leads. Arms with no item in common: their difference is unknown, interval = the whole
range, so they stay unresolved. All differences zero: the cheapest arm is recommended once n is
large enough for its interval to fit inside +-delta (68 items at k = 2 with 0/1 scores), inconclusive before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from bench import stats
from bench.errors import BenchError

MARGIN = 0.05
ALPHA = 0.05
FLOOR = 0.1
NEEDED_CAP = 20_000  # needed_items beyond this is reported as None ("no practical number of items")

LEADER, NON_INFERIOR, WORSE, NOT_SEPARATED, BELOW_FLOOR, DIAGNOSTIC = (
    "leader", "non-inferior", "worse", "not separated", "below floor", "diagnostic")
STATUSES = (LEADER, NON_INFERIOR, WORSE, NOT_SEPARATED, BELOW_FLOOR, DIAGNOSTIC)


@dataclass(frozen=True)
class Arm:
    """One strategy's evidence: per-item main-metric scores in [0, 1], its cost, whether it is diagnostic."""

    name: str
    scores: Mapping[str, float]
    cost: Optional[float] = None
    diagnostic: bool = False


@dataclass(frozen=True)
class Standing:
    """An arm against the leader, in the metric's units: diff = arm - leader, its interval, p, status.

    `p` belongs to the test that gave `status` (`test`: "non-inferiority" for non-inferior, else
    "difference"); `p_adjusted` = min(1, (k - 1) p). None for the leader itself.
    """

    arm: str
    value: Optional[float]
    n: int
    diff: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    p: Optional[float]
    p_adjusted: Optional[float]
    status: str
    test: Optional[str]
    cost: Optional[float]

    def as_tuple(self) -> tuple:
        return self.diff, self.ci_low, self.ci_high, self.p, self.p_adjusted, self.status

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "n": self.n, "diff": self.diff, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p": self.p, "p_adjusted": self.p_adjusted, "status": self.status, "test": self.test, "cost": self.cost}


@dataclass(frozen=True)
class Verdict:
    """The decision for one task. `strategy` is None unless `decided`; `comparisons` has every arm (leader too)."""

    decided: bool
    strategy: Optional[str]
    leader: Optional[str]
    margin: float
    needed_items: Optional[int]
    unresolved: tuple[str, ...]
    comparisons: Mapping[str, Standing]
    reason: str
    informative: bool = True
    alpha: float = ALPHA
    level: float = ALPHA  # the one-sided level of every bound: alpha / (k - 1)
    floor: float = FLOOR
    n_items: int = 0  # the largest number of items any arm was scored on
    sequential: bool = False
    would_be: Optional[str] = None  # the first recommendable arm when cheaper ones are unresolved
    blockers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # unresolved arm -> arms it could not clear

    def to_dict(self) -> dict[str, Any]:
        return {"decided": self.decided, "strategy": self.strategy, "leader": self.leader, "margin": self.margin,
                "needed_items": self.needed_items, "unresolved": list(self.unresolved), "reason": self.reason,
                "informative": self.informative, "alpha": self.alpha, "level": self.level, "floor": self.floor,
                "n_items": self.n_items, "sequential": self.sequential, "would_be": self.would_be,
                "blockers": {k: list(v) for k, v in self.blockers.items()},
                "comparisons": {k: s.to_dict() for k, s in self.comparisons.items()}}


def item_scores(items: Mapping[tuple[str, int], Optional[float]]) -> dict[str, float]:
    """(example_id, seed) -> score, as stored in scores.jsonl, to example_id -> score for `Arm.scores`:
    seeds averaged, and a failed or unscored item (None) counted as 0, so an arm that fails on the hard
    items cannot win on the easy ones."""
    acc: dict[str, list[float]] = {}
    for (ex, _), v in items.items():
        acc.setdefault(str(ex), []).append(0.0 if v is None else float(v))
    return {ex: float(np.mean(vs)) for ex, vs in acc.items()}


def _check(arms: Sequence[Arm], margin: float, alpha: float, floor: float) -> None:
    if not 0 < margin < 1:
        raise BenchError(f"decision margin {margin}: must be between 0 and 1 on a 0-1 metric "
                         "(set `decision: {margin: 0.05}` in the config or pass --margin)")
    if not 0 < alpha < 0.5:
        raise BenchError(f"decision alpha {alpha}: must be between 0 and 0.5 (e.g. 0.05)")
    if not 0 <= floor < 1:
        raise BenchError(f"decision floor {floor}: must be in [0, 1) on a 0-1 metric")
    seen = set()
    for a in arms:
        if a.name in seen:
            raise BenchError(f"decision: arm {a.name!r} given twice; give each strategy once")
        seen.add(a.name)
        for item, v in a.scores.items():
            if v is None or not (0.0 <= float(v) <= 1.0) or math.isnan(float(v)):
                raise BenchError(f"decision: arm {a.name!r}, item {item!r} has score {v!r}; the rule needs main-metric "
                                 "scores in [0, 1] for every item (score failed answers 0 before deciding)")


def _cost_key(cost: Optional[float]) -> float:
    return float("inf") if cost is None else float(cost)


class _Pairs:
    """Paired evidence between arms on goodness scores, computed once per unordered pair."""

    def __init__(self, good: Mapping[str, Mapping[str, float]], rank: Mapping[str, int], level: float,
                 sequential: bool):
        self.good, self.rank, self.level, self.sequential = good, rank, level, sequential
        self._cache: dict[tuple[str, str], stats.Evidence] = {}

    def diffs(self, x: str, y: str) -> np.ndarray:
        """x - y on the items both scored, in the decision's item order."""
        gx, gy = self.good[x], self.good[y]
        items = sorted((i for i in gx if i in gy), key=self.rank.__getitem__)
        return np.asarray([gx[i] - gy[i] for i in items], dtype=float)

    def evidence(self, x: str, y: str) -> tuple[stats.Evidence, float]:
        """Evidence on x - y, or on y - x with sign -1 (the bets are symmetric, so one serves both)."""
        key, sign = ((x, y), 1.0) if x <= y else ((y, x), -1.0)
        if key not in self._cache:
            d = self.diffs(*key)
            self._cache[key] = stats.Evidence(d, stats.DIFF, tune=self.level, sequential=self.sequential,
                                              order=range(d.size))
        return self._cache[key], sign

    def p_above(self, x: str, y: str, m: float) -> float:
        """p-value of "mean(x - y) <= m"."""
        ev, s = self.evidence(x, y)
        return ev.p_above(m) if s > 0 else ev.p_below(-m)

    def p_below(self, x: str, y: str, m: float) -> float:
        """p-value of "mean(x - y) >= m"."""
        ev, s = self.evidence(x, y)
        return ev.p_below(m) if s > 0 else ev.p_above(-m)

    def interval(self, x: str, y: str) -> tuple[Optional[float], float, float, int]:
        """(mean, lower, upper) of x - y at the decision's one-sided level, and the number of items."""
        ev, s = self.evidence(x, y)
        lo, hi = ev.lower(self.level), ev.upper(self.level)
        if s < 0:
            lo, hi = -hi, -lo
        return (None if ev.mean is None else s * ev.mean), lo, hi, ev.n


def needed_items(d: np.ndarray, level: float, sequential: bool, side: str, target: float) -> Optional[int]:
    """Items at which the bound would pass `target` if future differences looked like these (tiled).

    side "lower": lower bound > target; "upper": upper bound < target. None beyond NEEDED_CAP.
    """
    if d.size == 0:
        return None
    mean = float(d.mean())
    if (side == "lower" and mean <= target) or (side == "upper" and mean >= target):
        return None  # at the observed mean the bound never gets there

    def ok(n: int) -> bool:
        ev = stats.Evidence(np.resize(d, n), stats.DIFF, tune=level, sequential=sequential, order=range(n))
        return ev.lower(level) > target if side == "lower" else ev.upper(level) < target

    n = d.size
    if ok(n):
        return n
    while True:  # double until it passes, then bisect the last doubling to 2 %
        lo, n = n, 2 * n
        if n > NEEDED_CAP:
            return None
        if ok(n):
            break
    hi = n
    while hi - lo > max(1, lo // 50):
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def decide(arms: Sequence[Arm], *, higher_is_better: bool = True, margin: float = MARGIN, alpha: float = ALPHA,
           floor: float = FLOOR, sequential: bool = False, order: Optional[Sequence[str]] = None, seed: int = 0,
           metric: str = "score", estimate: bool = True) -> Verdict:
    """Apply the rule of this module's docstring to per-item scores; see `Verdict` for the result.

    `order`: item ids in the order they were evaluated (required when `sequential`; otherwise the items
    are shuffled with `seed`). `metric` only names the metric in the reason. `estimate=False` skips
    `needed_items` (simulations).

        v = decide([Arm("rag", {"q1": 1.0, "q2": 0.0}, cost=0.017), Arm("cot", {"q1": 0.0, "q2": 0.0}, cost=0.009)])
        v.decided, v.strategy, v.leader, v.needed_items, v.comparisons["cot"].status
    """
    _check(arms, margin, alpha, floor)
    sign = 1.0 if higher_is_better else -1.0
    good = {a.name: {i: (float(v) if higher_is_better else 1.0 - float(v)) for i, v in a.scores.items()}
            for a in arms if a.scores}
    by_name = {a.name: a for a in arms}
    items = sorted({i for g in good.values() for i in g})
    if sequential:
        if order is None:
            raise ValueError("decide(sequential=True) needs `order`: the item ids in the order they were evaluated")
        missing = [i for i in items if i not in set(order)]
        if missing:
            raise ValueError(f"decide: items {missing[:3]} are not in `order`")
        rank = {i: r for r, i in enumerate(order)}
    elif order is not None:
        rank = {i: r for r, i in enumerate(order)}
        rank.update({i: len(rank) + r for r, i in enumerate(x for x in items if x not in rank)})
    else:
        perm = np.random.default_rng(seed).permutation(len(items))
        rank = {items[p]: r for r, p in enumerate(perm)}
    eligible = [a.name for a in arms if a.name in good and not a.diagnostic]
    k = len(eligible)
    level = alpha / max(k - 1, 1)
    n_items = max((len(g) for g in good.values()), default=0)
    common = {"margin": margin, "alpha": alpha, "level": level, "floor": floor, "n_items": n_items,
              "sequential": sequential}
    if not eligible:
        return Verdict(False, None, None, needed_items=None, unresolved=(), comparisons={}, informative=False,
                       reason="no strategy has scored items: nothing to decide", **common)

    mean = {a: float(np.mean(list(g.values()))) for a, g in good.items()}
    cost = {a.name: a.cost for a in arms}
    leader = min(eligible, key=lambda a: (-mean[a], _cost_key(cost[a]), a))
    pairs = _Pairs(good, rank, level, sequential)
    m = max(k - 1, 1)

    def adj(p: float) -> float:
        return min(1.0, m * p)

    def shown(value: float) -> float:  # goodness -> metric units
        return value if higher_is_better else 1.0 - value

    standings: dict[str, Standing] = {leader: Standing(leader, shown(mean[leader]), len(good[leader]), 0.0, None,
                                                       None, None, None, LEADER, None, cost[leader])}
    status: dict[str, str] = {leader: LEADER}
    for name in [a.name for a in arms if a.name in good and a.name != leader]:
        d, lo, hi, _ = pairs.interval(name, leader)
        p_sep, p_ni = pairs.p_below(name, leader, 0.0), pairs.p_above(name, leader, -margin)
        if by_name[name].diagnostic:
            st, p, test = DIAGNOSTIC, p_sep, "difference"
        elif adj(p_ni) <= alpha:
            st, p, test = NON_INFERIOR, p_ni, "non-inferiority"
        elif adj(p_sep) <= alpha:
            st, p, test = WORSE, p_sep, "difference"
        elif mean[name] < floor:
            st, p, test = BELOW_FLOOR, p_sep, "difference"
        else:
            st, p, test = NOT_SEPARATED, p_sep, "difference"
        ends = sorted((sign * lo, sign * hi))
        standings[name] = Standing(name, shown(mean[name]), len(good[name]), None if d is None else sign * d,
                                   ends[0], ends[1], p, adj(p), st, test, cost[name])
        status[name] = st
    ordered = {a.name: standings[a.name] for a in arms if a.name in standings}

    def worded(value: float) -> str:
        return f"{metric} {shown(value):.3f}"

    if mean[leader] < floor:
        return Verdict(False, None, leader, needed_items=None, unresolved=(), comparisons=ordered, informative=False,
                       reason=(f"not informative: the best arm, {leader}, scores {worded(mean[leader])}, below the "
                               f"floor {floor} (on a 0-1 scale, read as 'does the task'); no strategy does this task "
                               "with this model, so the differences are noise. Try a larger or better-matched model."),
                       **common)

    candidates = sorted((a for a in eligible if mean[a] >= floor), key=lambda a: (_cost_key(cost[a]), -mean[a], a))
    live = [a for a in eligible if status[a] != WORSE]  # arms that may still be the best
    recommended, unresolved, blockers = None, [], {}
    for r in candidates:
        blocking = tuple(y for y in live if y != r and adj(pairs.p_above(r, y, -margin)) > alpha)
        if not blocking:
            recommended = r
            break
        if status[r] == WORSE:
            continue
        unresolved.append(r)
        blockers[r] = blocking

    needed = None
    if unresolved and estimate:
        needed = _estimate_needed(unresolved, blockers, leader, pairs, margin, level, sequential)
    decided = recommended is not None and not unresolved
    reason = _reason(decided, recommended, leader, unresolved, blockers, standings, mean, cost, worded, margin, alpha,
                     k, needed, n_items)
    return Verdict(decided, recommended if decided else None, leader, needed_items=needed, unresolved=tuple(unresolved),
                   comparisons=ordered, reason=reason, would_be=recommended, blockers=blockers, **common)


def _estimate_needed(unresolved: list[str], blockers: dict[str, tuple[str, ...]], leader: str, pairs: _Pairs,
                     margin: float, level: float, sequential: bool) -> Optional[int]:
    """Items that would settle every unresolved arm: for each, the cheaper of excluding it (shown worse
    than the leader) or clearing all its blockers; the most any arm needs. None when one cannot be settled."""
    memo: dict[tuple, Optional[int]] = {}

    def needed(x: str, y: str, side: str, target: float) -> Optional[int]:
        d = pairs.diffs(x, y)
        key = (d.tobytes(), side, target)
        if key not in memo:
            memo[key] = needed_items(d, level, sequential, side, target)
        return memo[key]

    worst = 0
    for r in unresolved:
        routes = []
        if r != leader:
            routes.append(needed(r, leader, "upper", 0.0))
        clear = [needed(r, y, "lower", -margin) for y in blockers[r]]
        routes.append(None if any(c is None for c in clear) else max(clear, default=0))
        known = [n for n in routes if n is not None]
        if not known:
            return None
        worst = max(worst, min(known))
    return worst


def _reason(decided: bool, rec: Optional[str], leader: str, unresolved: list[str], blockers: dict,
            standings: dict[str, Standing], mean: dict, cost: dict, worded, margin: float, alpha: float, k: int,
            needed: Optional[int], n_items: int) -> str:
    conf = f"{100 * (1 - alpha):.0f} % confidence" + (f" over all {k} arms" if k > 2 else "")

    def vs(a: str) -> str:
        s = standings[a]
        if s.diff is None:
            return f"{a} (no items in common)"
        return f"{a} {s.diff:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"

    def names(xs) -> str:
        xs = list(xs)
        return ", ".join(xs[:4]) + (f" and {len(xs) - 4} more" if len(xs) > 4 else "")

    if decided:
        if k == 1:
            return f"{rec} is the only strategy with scores ({worded(mean[rec])}); nothing to compare it with."
        cheaper = [a for a in standings if a != rec and standings[a].status == WORSE
                   and _cost_key(cost[a]) < _cost_key(cost[rec])]
        tail = f"; every cheaper arm is shown worse ({', '.join(vs(a) for a in cheaper)})" if cheaper else ""
        if rec == leader:
            return f"{rec} leads with {worded(mean[rec])} and no arm can be better by {margin} or more ({conf}){tail}."
        return (f"{rec} ({worded(mean[rec])}) costs less than the leader {leader} ({worded(mean[leader])}) and is "
                f"within {margin} of it ({vs(rec)}) and of every other arm that might be best ({conf}){tail}.")
    parts = []
    for r in unresolved:
        if r == leader:
            parts.append(f"the leader is not yet shown within {margin} of {names(blockers[r])}")
        else:
            parts.append(f"{vs(r)} is cheaper, neither shown worse nor within {margin}"
                         + (f" of {names(blockers[r])}" if blockers[r] != (leader,) else ""))
    more = (f"more than {NEEDED_CAP:,} items (a difference sits near the margin)" if needed is None
            else f"about {needed:,} items in all")
    would = f" If they are resolved against, the choice is {rec}." if rec is not None else ""
    return (f"inconclusive at {n_items} items: leader {leader} ({worded(mean[leader])}); {'; '.join(parts)}. "
            f"Settling it needs {more} at the observed differences.{would}")


def next_round_size(n_so_far: int, needed_items: Optional[int], max_items: int, min_round: int = 10) -> int:
    """How many new test items to evaluate (on every arm) before deciding again; 0 when `max_items` is reached.

    Aims at `needed_items` but at most doubles the items so far (the estimate is noisy, and a decision
    may come sooner), and adds at least `min_round`. Without an estimate the items grow by half.
    """
    left = max_items - n_so_far
    if left <= 0:
        return 0
    if needed_items is None:
        step = max(min_round, n_so_far // 2)
    else:
        step = min(max(needed_items - n_so_far, min_round), max(n_so_far, min_round))
    return int(min(step, left))
