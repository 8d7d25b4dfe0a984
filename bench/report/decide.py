"""The recommendation: which strategy to use for a task, why, and what would change the answer.

The rule, stated so a reader can check it by hand:

1. If the best strategy's main metric is below `floor` (default 0.1 on a 0-1 metric), every arm sits
   at the floor: the comparison is not informative, and no strategy is recommended.
2. Contenders are the best strategy and every strategy whose paired difference from it is not
   significant (its 95 % interval covers 0: a tie).
3. Of the contenders, recommend the cheapest in total at the reference volume V (one-off setup +
   V queries, estimated money from the price sheet); equal costs go to the higher score.

What would flip it, each computed from the same numbers:
- volume: the break-even volumes between the recommendation and the other contenders;
- weight on cost: with utility = score - w x ($ per 1k queries at V), the w at which another
  strategy overtakes the recommendation;
- quality margin: how large a loss you would have to accept (or a gain to demand) before a cheaper
  (or better) strategy is chosen.
"""

from __future__ import annotations

from typing import Any, Optional

from bench.report.analysis import StrategyResult, TaskAnalysis
from bench.report.costs import break_even, fmt_volume
from bench.report.fmt import money, num, pval

FLOOR = 0.1


def cost_at(r: StrategyResult, volume: float) -> Optional[float]:
    """Estimated money per 1k queries at `volume`, the one-off cost spread over the volume."""
    if r.money.per_query is None:
        return None
    return 1000 * (r.money.setup / volume + r.money.per_query)


def _diff_text(a: TaskAnalysis, name: str) -> str:
    c = a.vs_best.get(name)
    if c is None or c.diff is None:
        return "no paired items"
    p = f", p{'' if pval(c.p_value).startswith('<') else '='}{pval(c.p_value)}" if c.p_value is not None else ""
    if c.ci_low is None:
        return f"{-c.diff:+.3f}, no interval{p}"
    return f"{-c.diff:+.3f} [{-c.ci_high:+.3f}, {-c.ci_low:+.3f}]{p}"


def hallucination_rate(h: dict) -> Optional[float]:
    """The metric row when the task reports one, else the rate computed from the stored answers."""
    rows = h.get("rows") or {}
    return rows.get("hallucination_rate", h.get("hallucination_rate"))


def decide(a: TaskAnalysis, floor: float = FLOOR) -> dict[str, Any]:
    """task -> {strategy, reason, ...}: the machine-readable decision (also rendered in the report)."""
    res = a.results
    out: dict[str, Any] = {"metric": a.metric, "volume": a.volume, "prices": a.prices, "basis": "estimated"}
    if a.best is None:
        return {**out, "strategy": None, "informative": False, "reason": "no strategy produced a score"}
    best = res[a.best]
    scale01 = all(r.value is None or 0 <= r.value <= 1 for r in res.values())
    if a.higher_is_better and scale01 and best.value is not None and best.value < floor:
        return {**out, "strategy": None, "informative": False, "best_quality": a.best, "value": best.value,
                "reason": (f"not informative: every strategy sits at the floor (best {a.metric} {best.value:.3f} "
                           f"by {a.best}, below {floor}); the model cannot do this task with any strategy, so the "
                           "differences are noise. Try a larger or better-matched model (see the estimate) before choosing.")}

    contenders = [a.best] + [s for s, c in a.vs_best.items() if c.tie]
    priced = [s for s in contenders if cost_at(res[s], a.volume) is not None]
    sign = 1 if a.higher_is_better else -1
    if priced:
        rec = min(priced, key=lambda s: (cost_at(res[s], a.volume), -sign * (res[s].value or 0)))
    else:
        rec = a.best
    r = res[rec]
    deployable = [x for x in res if not res[x].diagnostic]
    all_tied = len(contenders) == len(deployable) and len(deployable) > 1

    reason = [f"{rec} ({r.family}): {a.metric} {num(r.value)} [{num(r.ci_low)}, {num(r.ci_high)}]"
              + (f" over {r.seeds} seeds" if r.seeds > 1 else "")]
    if rec == a.best:
        beaten = [s for s, c in a.vs_best.items() if c.significant]
        if beaten:
            nxt = max(beaten, key=lambda s: sign * (res[s].value or 0))
            c = a.vs_best[nxt]
            reason.append(f"best, and better than {nxt} by {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                          + (f" (p{'' if pval(c.p_value).startswith('<') else '='}{pval(c.p_value)})" if c.p_value is not None else ""))
        if len(contenders) > 1:
            reason.append(f"ties with {', '.join(s for s in contenders if s != rec)} but costs least")
    else:
        share = (cost_at(r, a.volume) / cost_at(best, a.volume)) if cost_at(best, a.volume) else None
        frac = f" at {100 * share:.0f} % of its cost" if share is not None else ""
        reason.append(f"within the noise of the best, {a.best} ({_diff_text(a, rec)}){frac}")
    if all_tied:
        reason.append("no strategy is distinguishable from the others on this test set; the cheapest is chosen")
    c_rec = cost_at(r, a.volume)
    reason.append(f"estimated {money(c_rec)} per 1k queries at {fmt_volume(a.volume)} queries "
                  f"(one-off {money(r.money.setup)}, per query {money(r.money.per_query)})")
    # prompting within the noise of the best, at a fraction of its cost
    prompting_note = None
    cheap_prompt = [s for s in contenders if res[s].family == "prompting" and s != a.best]
    if res[a.best].family != "prompting" and cheap_prompt:
        s = min(cheap_prompt, key=lambda s: cost_at(res[s], a.volume) or float("inf"))
        cb, cs = cost_at(best, a.volume), cost_at(res[s], a.volume)
        if cb and cs is not None and cs < cb:
            prompting_note = (f"prompting ({s}) is within the noise of the best ({a.best}: {_diff_text(a, s)}) "
                              f"at {100 * cs / cb:.0f} % of its cost")
            reason.append(prompting_note)
    # hallucination and forgetting of the recommendation
    h = a.hallucination.get(rec, {})
    hr = hallucination_rate(h)
    if hr is not None:
        others = [f"{s} {hallucination_rate(a.hallucination.get(s, {})):.3f}" for s in contenders
                  if s != rec and hallucination_rate(a.hallucination.get(s, {})) is not None]
        reason.append(f"hallucination_rate {hr:.3f} (unanswerable items answered anyway)"
                      + (f" vs {', '.join(others)}" if others else ""))
    fa = (h.get("rows") or {}).get("false_abstention", h.get("false_abstention_rate"))
    if fa is not None:
        reason.append(f"false abstention {fa:.3f}")
    fg = a.forgetting.get(rec)
    if fg and fg.get("mean_delta") is not None:
        reason.append(f"forgetting: probe delta {fg['mean_delta']:+.3f} vs {fg['base']} (negative = forgot)")

    flips = flip_conditions(a, rec, contenders)
    return {**out, "strategy": rec, "informative": True, "reason": "; ".join(reason), "family": r.family,
            "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high, "best_quality": a.best,
            "contenders": contenders, "all_tied": all_tied, "prompting_within_noise": prompting_note,
            "cost_per_1k_queries": c_rec, "setup_cost": r.money.setup, "per_query_cost": r.money.per_query,
            "hallucination": h or None, "forgetting": fg, "flips": flips}


def flip_conditions(a: TaskAnalysis, rec: str, contenders: list[str]) -> dict[str, Any]:
    """The query volume, the weight on cost and the quality margin at which the choice changes."""
    res = a.results
    r = res[rec]
    sign = 1 if a.higher_is_better else -1
    out: dict[str, Any] = {"volume": [], "cost_weight": None, "quality_margin": None, "text": []}
    for s in contenders:
        if s == rec:
            continue
        be = break_even(rec, r.money, s, res[s].money)
        if be.kind == "crossover":
            side = "above" if be.volume > a.volume else "below"
            out["volume"].append({"other": s, "volume": be.volume, "statement": be.statement})
            out["text"].append(f"{s} becomes the cheaper tie {side} {fmt_volume(be.volume)} queries")
    if not out["volume"] and len(contenders) > 1:
        out["text"].append("no query volume changes the cost order among the tied strategies")
    # weight on cost: U = sign*score - w * cost_per_1k ; smallest w > 0 at which another strategy wins
    c_rec = cost_at(r, a.volume)
    best_w = None
    if c_rec is not None and r.value is not None:
        for s, o in res.items():
            c_o = cost_at(o, a.volume)
            if s == rec or o.value is None or c_o is None or o.diagnostic:
                continue
            dq = sign * (r.value - o.value)
            dc = c_rec - c_o
            if dc > 0 and dq > 0:  # o is cheaper but worse: wins once cost weighs more than dq/dc
                w = dq / dc
                if best_w is None or w < best_w[0]:
                    best_w = (w, s, dq, dc)
    if best_w:
        w, other, dq, dc = best_w
        out["cost_weight"] = {"weight": w, "other": other, "quality_loss": dq, "saving_per_1k": dc}
        out["text"].append(f"{other} wins if saving ${dc:.3g} per 1k queries is worth more than {dq:.3f} {a.metric} "
                           f"(a weight on cost above {w:.3g} {a.metric} per $ per 1k queries)")
    elif c_rec is not None:
        out["text"].append(f"no weight on cost flips it: nothing cheaper scores as well")
    # quality margin
    if rec != a.best and a.vs_best[rec].diff is not None:
        c = a.vs_best[rec]
        out["quality_margin"] = {"other": a.best, "margin": abs(c.diff) if c.diff is not None else None}
        out["text"].append(f"if a difference of {abs(c.diff):.3f} {a.metric} matters to you despite the noise "
                           f"(or more test items make it significant), choose {a.best}")
    else:
        cheaper = [s for s in res if s != rec and cost_at(res[s], a.volume) is not None and c_rec is not None
                   and cost_at(res[s], a.volume) < c_rec and s in a.vs_best and a.vs_best[s].diff is not None]
        if cheaper:
            s = min(cheaper, key=lambda s: abs(a.vs_best[s].diff))
            m = abs(a.vs_best[s].diff)
            out["quality_margin"] = {"other": s, "margin": m}
            out["text"].append(f"if you would accept {m:.3f} less {a.metric} for a lower cost, choose {s}")
    return out
