"""The recommendation of one task, machine-readable: the rule's verdict plus what a decision-maker asks next.

The rule itself (leader, non-inferiority within a margin, inconclusive with the items it would need)
is bench.report.rule, stated in its module docstring so a reader can check it by hand. This module
adds, for the pick against its runner-up (the leader when the pick is a cheaper non-inferior arm, the
next best arm otherwise):

- quality and money of both (estimated: measured seconds x the price sheet, one-off costs spread over
  the reference volume);
- what would flip the choice: the query volume at which the runner-up becomes cheaper, how much
  quality a cheaper but worse arm gives up for its saving, the margin under which the leader would be
  chosen instead, and the items an inconclusive verdict still needs;
- the pick's hallucination, source-support and forgetting figures, and its hallucination cost: every
  hallucination or support rate (all lower-is-better) on which the pick and the runner-up differ with a
  paired 95 % interval that excludes zero (the same betting interval as the main metric);
- warnings the reader must see:
  arms whose cells failed, fine-tunes with no effect or stopped before convergence, arms served in a
  different format.

`recommendation.json` holds `decide()` per task (DESIGN.md: strategy, decided, leader, margin,
needed_items, reason, ...).
"""

from __future__ import annotations

from typing import Any, Optional

from bench.report.analysis import StrategyResult, TaskAnalysis
from bench.report.costs import break_even, fmt_volume, per_1k_at
from bench.report.fmt import money, num
from bench.report.rule import DIAGNOSTIC, WORSE
from bench.stats import paired_compare


FORM_GAP = 0.2  # gold_in_output this far above exact match: "has the answer but not the form"


def cost_at(r: StrategyResult, volume: float) -> Optional[float]:
    """Estimated money per 1k queries at `volume` (one-off costs spread over the volume)."""
    return per_1k_at(r.money, volume)


def runner_up(a: TaskAnalysis, pick: str) -> Optional[str]:
    """The arm the pick is compared with: the leader when the pick is not the leader, else the next best."""
    if a.verdict.leader and pick != a.verdict.leader:
        return a.verdict.leader
    others = [r for r in a.ordered() if r.strategy != pick and not r.diagnostic and r.value is not None]
    return others[0].strategy if others else None


def hallucination_rate(h: dict) -> Optional[float]:
    rate = (h.get("rates") or {}).get("hallucination_rate")
    return None if rate is None else rate["value"]


def hallucination_cost(a: TaskAnalysis, pick: str, other: Optional[str]) -> list[dict]:
    """Rates (hallucination, unsupported numbers, contradictions, ...) where pick and runner-up differ: paired
    over the items both answered, kept when the 95 % interval of pick minus runner-up excludes zero."""
    if other is None:
        return []
    mine, theirs, out = a.rate_items.get(pick, {}), a.rate_items.get(other, {}), []
    for metric in sorted(mine.keys() & theirs.keys()):
        c = paired_compare(pick, mine[metric], other, theirs[metric])
        if c.diff is None or not c.significant:
            continue
        both = sorted(mine[metric].keys() & theirs[metric].keys())  # a set's order varies by process: sum in one order
        out.append({"metric": metric, "strategy": pick, "versus": other, "n": c.n_items,
                    "value": sum(mine[metric][k] for k in both) / len(both),
                    "versus_value": sum(theirs[metric][k] for k in both) / len(both),
                    "diff": c.diff, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value})
    return out


def hallucination_cost_line(a: TaskAnalysis, d: dict) -> Optional[str]:
    """"lora: exact_match +0.05 but unsupported_number_rate 20 % vs 4 % for rag (+16 points [+6, +27])"."""
    hc = d.get("hallucination_cost") or []
    if not hc:
        return None
    pick, other = hc[0]["strategy"], hc[0]["versus"]
    p, o = a.results[pick].value, a.results[other].value
    lead = f"`{pick}`: {a.metric} {p - o:+.3f} against `{other}`" if p is not None and o is not None else f"`{pick}`"
    parts = [f"{h['metric']} {h['value']:.0%} vs {h['versus_value']:.0%} ({100 * h['diff']:+.0f} points "
             f"[{100 * h['ci_low']:+.0f}, {100 * h['ci_high']:+.0f}], {h['n']} paired items)" for h in hc]
    worse = any(h["diff"] > 0 for h in hc)
    return f"{lead}, {'but' if worse else 'and'} " + "; ".join(parts)


def warnings(a: TaskAnalysis) -> list[str]:
    """What a reader must know before trusting the comparison at all."""
    out = []
    for s, err in a.failed_cells.items():
        out.append(f"{s} did not run ({err}); it is missing from the comparison")
    served = {(r.served.get("backend"), r.served.get("format")) for r in a.results.values() if r.served}
    if len(served) > 1:
        out.append("arms were served differently (" + ", ".join(sorted(f"{b} {f}" for b, f in served if b)) +
                   "): part of a cost or quality difference may come from the serving, not the strategy")
    for s, r in a.results.items():
        t = r.training
        if t.get("no_effect"):
            out.append(f"{s}: training had no effect (greedy answers identical to the base on "
                       f"{t.get('integrity_prompts')} test prompts)")
        if t.get("still_improving"):
            out.append(f"{s}: validation loss was still falling when its {t['epochs']:.1f} epochs ran out; "
                       "it is probably undertrained (raise epochs)")
        if t.get("merged_agreement") is not None and t["merged_agreement"] < 1.0:
            out.append(f"{s}: the merged GGUF answers like the unmerged adapter on {t['merged_agreement']:.0%} "
                       "of the integrity prompts (export precision)")
        gold, exact = (r.other.get(m, {}).get("value") for m in ("gold_in_output", "exact_match"))
        if gold is not None and exact is not None and gold - exact >= FORM_GAP:
            out.append(f"{s}: the answer is in {gold:.0%} of its outputs but in the exact form in {exact:.0%}: it answers "
                       "in sentences, the model has the answer but not the form; few-shot exemplars in the answer's "
                       "form, a completion prompt (params: {form: completion}) or fine-tuning on the pairs fix the form")
        fails = r.outcomes.get("failed", 0) + r.outcomes.get("empty", 0)
        if fails:
            out.append(f"{s}: {r.outcomes.get('failed', 0)} failed and {r.outcomes.get('empty', 0)} empty answers, "
                       "counted as wrong")
    return out


def flips(a: TaskAnalysis, pick: str, other: Optional[str]) -> list[str]:
    """What would change the choice, each computed from the same numbers."""
    v, res, out = a.verdict, a.results, []
    if not v.informative:
        return out  # no recommendation: its reason says what would change that, not more items or a margin
    if not v.decided:
        if v.needed_items:
            out.append(f"about {v.needed_items} test items would settle it (now {v.n_items}): "
                       "run with --until-decided or a larger --limit")
        else:
            out.append("no practical number of items would separate the unresolved arms at this margin: "
                       "they are as good as each other; widen --margin or choose by cost")
        return out
    p = res[pick]
    if other is not None:
        be = break_even(pick, p.money, other, res[other].money)
        if be.kind == "crossover":
            c = v.comparisons.get(other)
            if c is not None and c.status == WORSE and c.diff is not None:
                # the rule picks on quality first: volume alone does not turn to an arm shown worse
                out.append(f"query volume, only if {a.metric} may be traded for money: {be.statement}, but "
                           f"{other} is shown worse ({c.diff:+.3f} {a.metric})")
            else:
                out.append(f"query volume: {be.statement}")
    cheaper = [r for r in res.values() if r.strategy != pick and not r.diagnostic and r.value is not None
               and cost_at(r, a.volume) is not None and cost_at(p, a.volume) is not None
               and cost_at(r, a.volume) < cost_at(p, a.volume)]
    if cheaper and p.value is not None:
        c = max(cheaper, key=lambda r: r.value or 0)
        saving = cost_at(p, a.volume) - cost_at(c, a.volume)
        status = v.comparisons[c.strategy].status if c.strategy in v.comparisons else "not compared"
        out.append(f"cost weight: {c.strategy} saves {money(saving)} per 1k queries at {c.value - p.value:+.3f} "
                   f"{a.metric} ({status})")
    if pick != v.leader and v.leader in v.comparisons:
        s = v.comparisons[pick]
        if s.ci_low is not None:
            out.append(f"margin: with a margin under {-s.ci_low:.3f} (now {v.margin}) the pick would not be "
                       f"non-inferior to {v.leader}, the leader")
    return out


def decide(a: TaskAnalysis) -> dict[str, Any]:
    """task -> the machine-readable decision (DESIGN.md recommendation.json), also rendered in the report."""
    v = a.verdict
    pick = v.strategy if v.decided else v.leader
    other = runner_up(a, pick) if pick else None
    out: dict[str, Any] = {
        "strategy": v.strategy if v.decided else None, "decided": v.decided, "leader": v.leader,
        "margin": v.margin, "needed_items": None if v.decided else v.needed_items, "reason": v.reason,
        "informative": v.informative, "metric": a.metric, "n_items": v.n_items, "alpha": v.alpha,
        "sequential": v.sequential, "unresolved": list(v.unresolved), "volume": a.volume, "prices": a.prices,
        "basis": "estimated", "comparisons": {k: s.to_dict() for k, s in v.comparisons.items()},
        "warnings": warnings(a), "failed": dict(a.failed_cells),
    }
    if pick is None or pick not in a.results:
        return {**out, "flips": flips(a, pick, None) if pick else []}
    p = a.results[pick]
    out.update(family=p.family, value=p.value, ci_low=p.ci_low, ci_high=p.ci_high, served=p.served,
               cost_per_1k_queries=cost_at(p, a.volume), setup_cost=p.money.setup, per_query_cost=p.money.per_query,
               hallucination=a.hallucination.get(pick), support=a.support.get(pick),
               forgetting=a.forgetting.get(pick), flips=flips(a, pick, other),
               hallucination_cost=hallucination_cost(a, pick, other))
    if other is not None:
        o = a.results[other]
        out["runner_up"] = {"strategy": other, "value": o.value, "ci_low": o.ci_low, "ci_high": o.ci_high,
                            "cost_per_1k_queries": cost_at(o, a.volume),
                            "status": v.comparisons[other].status if other in v.comparisons else None}
    return out


def headline(a: TaskAnalysis, d: dict) -> str:
    """One line per task for the top of the report: the decision, or "not decided yet: need ~N items"."""
    v = a.verdict
    if not v.informative:
        return f"**{a.task}: no recommendation.** {v.reason}"
    if not v.decided:
        need = f"need ~{v.needed_items:,} items" if v.needed_items else "no practical number of items separates them"
        open_ = [f"`{s}`" for s in v.unresolved if s != v.leader]
        return (f"**{a.task}: not decided yet — {need}** (now {v.n_items}). Leader `{v.leader}` "
                f"({a.metric} {num(a.results[v.leader].value)}); not yet separated from: {', '.join(open_) or '–'}.")
    p = a.results[v.strategy]
    line = (f"**{a.task}: use `{v.strategy}`** ({p.family}) — {a.metric} {num(p.value)} "
            f"[{num(p.ci_low)}, {num(p.ci_high)}], {money(cost_at(p, a.volume))} per 1k queries")
    ru = d.get("runner_up")
    if ru:
        status = ru.get("status")
        rel = "the leader" if ru["strategy"] == v.leader else ("shown worse" if status == WORSE else status)
        line += (f"; runner-up `{ru['strategy']}` ({rel}): {num(ru['value'])} "
                 f"[{num(ru['ci_low'])}, {num(ru['ci_high'])}], {money(ru['cost_per_1k_queries'])} per 1k")
    return line + f". Decided at {v.n_items} items, margin {v.margin}."


__all__ = ["decide", "headline", "warnings", "hallucination_cost", "hallucination_cost_line", "flips", "runner_up", "cost_at", "hallucination_rate", "DIAGNOSTIC",
           "fmt_volume"]
