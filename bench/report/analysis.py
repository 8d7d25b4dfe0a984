"""The numbers behind the report, per task: quality with honest intervals, the verdict, costs, diagnostics.

`analyse(run)` turns a loaded run into a `TaskAnalysis` per task: for each arm its main-metric score
per test item (seeds averaged; a failed or empty answer counts as wrong, 0), the mean with an interval
valid at any n (bench.stats), how its answers ended (answered, abstained, empty, failed), how it was
served (backend and weights format), its cost ledger and estimated money, and for fine-tuned arms how
training went (epochs, whether validation loss was still falling, the integrity checks). The verdict
is bench.report.rule.decide on those item scores with the run's margin, alpha and floor (and, after
`--until-decided`, sequentially in the order the items were evaluated). Diagnostics the verdict cites:
hallucination on unanswerable items, source support, forgetting probes, per-stratum scores, retrieval
outcome classes, and rag against rag_oracle. Nothing is drawn or written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np

from bench import stats
from bench.metrics.retrieval import retrieval_outcomes
from bench.report import costs, rule
from bench.report.data import Run

CORRECT_AT = 0.5  # an answer counts as right for retrieval outcomes when its main score is >= this
HALLU_RE = re.compile(r"halluc|abstention|false_abstention", re.I)
SUPPORT_RE = re.compile(r"unsupported|contradiction|novel_term|foreign_sentence|not_entailed", re.I)
OUTCOMES = ("answered", "abstained", "empty", "failed")
RESOLVE_PP = 0.05  # forgetting: a probe resolves a change when its interval is narrower than +-5 points


@dataclass
class StrategyResult:
    strategy: str
    family: str
    metric: str
    higher_is_better: bool
    value: Optional[float]  # mean over items (seeds averaged first), failed and empty answers counted as 0
    ci_low: Optional[float]
    ci_high: Optional[float]
    seed_values: list[float]
    seed_std: Optional[float]
    n: int  # test items scored
    n_failed: int  # item scorings that failed (summed over seeds)
    items: dict  # (example_id, seed) -> main score (None = failed)
    ledger: costs.Ledger
    money: costs.Money
    other: dict = field(default_factory=dict)  # every quality metric: name -> {value, ci_low, ci_high} over seeds
    diagnostic: bool = False  # reads gold information (rag_oracle): shown as a ceiling, never recommended
    outcomes: dict = field(default_factory=dict)  # answered / abstained / empty / failed, summed over seeds
    served: dict = field(default_factory=dict)  # backend and weights format
    training: dict = field(default_factory=dict)  # fine-tuned arms: epochs, convergence, integrity checks
    order: list = field(default_factory=list)  # example ids in the order they were evaluated
    tuned: dict = field(default_factory=dict)  # --tune: the chosen settings, validation items, seconds

    @property
    def seeds(self) -> int:
        return len(self.seed_values)

    @property
    def scores(self) -> dict[str, float]:
        """example_id -> score for the decision (seeds averaged, failed = 0)."""
        return rule.item_scores(self.items)


@dataclass
class TaskAnalysis:
    task: str
    metric: str
    higher_is_better: bool
    results: dict[str, StrategyResult]
    verdict: rule.Verdict
    hallucination: dict[str, dict]
    support: dict[str, dict]
    forgetting: dict[str, dict]
    strata: dict[str, dict[str, dict]]
    retrieval: dict[str, dict]
    oracle: list[dict]
    prices: dict
    volume: float
    failed_cells: dict[str, str] = field(default_factory=dict)  # strategy -> error of a cell that failed
    # strategy -> rate metric (hallucination, support) -> (example_id, seed) -> 0/1, for paired contrasts
    rate_items: dict[str, dict[str, dict]] = field(default_factory=dict)

    def ordered(self) -> list[StrategyResult]:
        sign = 1 if self.higher_is_better else -1
        return sorted(self.results.values(), key=lambda r: -sign * (r.value if r.value is not None else -sign * 1e18))

    @property
    def leader(self) -> Optional[str]:
        return self.verdict.leader


def _main_rows(rows: list[dict], task: str, strategy: str) -> list[dict]:
    return [r for r in rows if r["task"] == task and r["strategy"] == strategy and r.get("main")
            and r.get("kind", "quality") == "quality"]


def _item_scores(run: Run, task: str, strategy: str, metric: str) -> tuple[dict, list[str]]:
    """(example_id, seed) -> main score (None when the item failed), and the evaluation order of the items."""
    out, order = {}, []
    for c in run.cells_of(task, strategy):
        for s in c.scores:
            v = (s.get("scores") or {}).get(metric)
            ex = str(s.get("example_id"))
            out[(ex, c.seed)] = None if v is None else float(v)
            if ex not in order:
                order.append(ex)
    return out, order


def _outcome_counts(run: Run, task: str, strategy: str) -> dict[str, int]:
    counts = {o: 0 for o in OUTCOMES}
    for c in run.cells_of(task, strategy):
        for s in c.scores:
            o = s.get("outcome") or ("failed" if s.get("failed") else "answered")
            counts[o] = counts.get(o, 0) + 1
    return counts


def _served(run: Run, task: str, strategy: str) -> dict:
    for c in run.cells_of(task, strategy):
        s = c.cost.get("serve") or c.cost.get("serving")
        if s:
            return {"backend": s.get("backend") or c.cost.get("backend"), "format": s.get("format")}
        if c.cost.get("backend"):
            return {"backend": c.cost.get("backend"), "format": None}
    return {}


def _training(run: Run, task: str, strategy: str) -> dict:
    """How the fine-tune of an arm went, over its seeds: epochs, convergence, the integrity checks."""
    trains = [c.cost.get("train") for c in run.cells_of(task, strategy) if c.cost.get("train")]
    if not trains:
        return {}
    checks = [c.cost.get("integrity") or {} for c in run.cells_of(task, strategy)]
    agree = [x["merged_agreement"] for x in checks if x.get("merged_agreement") is not None]
    return {
        "epochs": float(np.mean([t.get("epochs") or 0 for t in trains])),
        "best_epoch": float(np.mean([t.get("best_epoch") or 0 for t in trains])),
        "still_improving": any(t.get("still_improving") for t in trains),
        "stopped_early": all(t.get("stopped_early") for t in trains),
        "steps": float(np.mean([t.get("steps") or 0 for t in trains])),
        "eval_loss_before": _mean([t.get("eval_loss_before") for t in trains]),
        "eval_loss_best": _mean([t.get("eval_loss_best") for t in trains]),
        "no_effect": any(x.get("no_effect") for x in checks),
        "changed_vs_base": _mean([x.get("changed_vs_base") for x in checks]),
        "integrity_prompts": next((x.get("prompts") for x in checks if x.get("prompts")), None),
        "merged_agreement": float(np.mean(agree)) if agree else None,
    }


def _mean(values: list) -> Optional[float]:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _ledger(run: Run, task: str, strategy: str) -> costs.Ledger:
    ledgers = [costs.ledger_from_cost(c.cost, gpu_run=run.gpu, latency_mean_s=c.latency_mean_s)
               for c in run.cells_of(task, strategy) if c.cost]
    if not ledgers:  # no cost.json: the cost rows still give latency and tokens
        led = costs.Ledger()
        for name, attr in (("latency_p50_s", "latency_p50_s"), ("prompt_tokens_mean", "prompt_tokens"),
                           ("completion_tokens_mean", "completion_tokens")):
            vals = [r["value"] for r in run.rows if r["task"] == task and r["strategy"] == strategy
                    and r["metric"] == name and r.get("value") is not None]
            if vals:
                setattr(led, attr, float(np.mean(vals)))
        ledgers = [led]
    return costs.mean_ledger(ledgers)


def _other_metrics(run: Run, task: str, strategy: str) -> dict:
    """Every quality metric (main included): value and the runner's interval, seeds averaged."""
    acc: dict[str, list[dict]] = {}
    for r in run.rows:
        if r["task"] == task and r["strategy"] == strategy and r.get("kind", "quality") == "quality" \
                and r.get("value") is not None:
            acc.setdefault(r["metric"], []).append(r)
    return {k: {"value": float(np.mean([x["value"] for x in rs])), "ci_low": _mean([x.get("ci_low") for x in rs]),
                "ci_high": _mean([x.get("ci_high") for x in rs]),
                "higher_is_better": bool(rs[0].get("higher_is_better", True))} for k, rs in acc.items()}


def strategy_result(run: Run, task: str, strategy: str, prices: dict, volume: float) -> Optional[StrategyResult]:
    mains = _main_rows(run.rows, task, strategy)
    if not mains:
        return None
    metric = mains[0]["metric"]
    hib = bool(mains[0].get("higher_is_better", True))
    seed_values = [float(r["value"]) for r in mains if r.get("value") is not None]
    _, std = stats.seed_summary(seed_values)
    items, order = _item_scores(run, task, strategy, metric)
    if items:
        per_item = list(rule.item_scores(items).values())
        value = float(np.mean(per_item))
        lo, hi = stats.mean_ci(per_item, bounds=stats.unit_bounds(per_item))
    else:  # no per-item scores: the rows' own value and interval, seeds averaged
        value = _mean(seed_values)
        lo, hi = _mean([r.get("ci_low") for r in mains]), _mean([r.get("ci_high") for r in mains])
    ledger = _ledger(run, task, strategy)
    return StrategyResult(strategy, run.family(strategy), metric, hib, value, lo, hi, seed_values, std,
                          max(int(r.get("n") or 0) + int(r.get("n_failed") or 0) for r in mains),
                          sum(int(r.get("n_failed") or 0) for r in mains), items, ledger, costs.price(ledger, prices),
                          _other_metrics(run, task, strategy), diagnostic=run.arm(strategy).diagnostic,
                          outcomes=_outcome_counts(run, task, strategy), served=_served(run, task, strategy),
                          training=_training(run, task, strategy), order=order,
                          tuned=next((c.cost["tune"] for c in run.cells_of(task, strategy) if c.cost.get("tune")), {}))


def _rate_rows(run: Run, task: str, strategy: str, pattern: re.Pattern) -> dict[str, dict]:
    """Quality rows whose metric matches `pattern`: value and interval, seeds averaged."""
    acc: dict[str, list[dict]] = {}
    for r in run.rows:
        if r["task"] == task and r["strategy"] == strategy and pattern.search(r["metric"]) \
                and r.get("value") is not None and r.get("kind", "quality") == "quality":
            acc.setdefault(r["metric"], []).append(r)
    return {m: {"value": float(np.mean([x["value"] for x in rs])), "ci_low": _mean([x.get("ci_low") for x in rs]),
                "ci_high": _mean([x.get("ci_high") for x in rs]), "n": int(np.mean([x.get("n") or 0 for x in rs])),
                "higher_is_better": bool(rs[0].get("higher_is_better", True))} for m, rs in acc.items()}


def hallucination(run: Run, task: str, strategy: str) -> dict:
    """Hallucination and abstention rates with their intervals; `unanswerable`: how many distinct test items
    had no answer (an item scored under three seeds counts once)."""
    rows = _rate_rows(run, task, strategy, HALLU_RE)
    if not rows:
        return {}
    unans = len({s.get("example_id") for c in run.cells_of(task, strategy) for s in c.scores
                 if s.get("answerable") is False})
    return {"rates": rows, "unanswerable": unans}


def rate_items(run: Run, task: str, strategy: str, metrics: list[str]) -> dict[str, dict]:
    """Per-item values of hallucination and support rates, for paired contrasts between arms: metric ->
    (example_id, seed) -> value. hallucination_rate counts on unanswerable items only (as its row does)."""
    out: dict[str, dict] = {}
    for c in run.cells_of(task, strategy):
        for s in c.scores:
            if s.get("failed"):
                continue
            for m in metrics:
                v = (s.get("scores") or {}).get(m)
                if v is None or (m == "hallucination_rate" and s.get("answerable") is not False):
                    continue
                out.setdefault(m, {})[(str(s.get("example_id")), c.seed)] = float(v)
    return out


def _is_delta(r: dict) -> bool:
    return r.get("scorer") == "probe_delta" or str(r.get("metric", "")).endswith("_delta")


def forgetting(run: Run, task: str, strategies: list[str]) -> dict[str, dict]:
    """Probe results of each arm against its base (the same arm without its fine-tune), with intervals.

    Uses the probes' own `<metric>_delta` rows (paired over probe items). For every probe it says
    whether the interval can resolve a change of RESOLVE_PP; perplexity is reported separately (its scale
    is not an accuracy), and the verdict leans on it when no accuracy probe resolves anything.
    """
    probes = [r for r in run.rows if r.get("kind") == "probe" and r.get("value") is not None]
    mine = [r for r in probes if r["task"] == task] or probes
    out: dict[str, dict] = {}
    for s in dict.fromkeys(r["strategy"] for r in mine if _is_delta(r)):
        acc: dict[str, list[dict]] = {}
        for r in mine:
            if r["strategy"] == s and _is_delta(r):
                acc.setdefault(str(r["metric"])[: -len("_delta")], []).append(r)
        deltas = {}
        for m, rs in acc.items():
            lo, hi = _mean([x.get("ci_low") for x in rs]), _mean([x.get("ci_high") for x in rs])
            deltas[m] = {"delta": float(np.mean([x["value"] for x in rs])), "ci_low": lo, "ci_high": hi,
                         "n": int(np.mean([x.get("n") or 0 for x in rs])), "base": _mean([x.get("base") for x in rs]),
                         "higher_is_better": bool(rs[0].get("higher_is_better", True)),
                         "resolves": lo is not None and hi is not None and (hi - lo) / 2 < RESOLVE_PP}
        against = next((r.get("against") for r in mine if r["strategy"] == s and r.get("against")), None)
        probe_set = next((r.get("probe_set") for r in mine if r["strategy"] == s and r.get("probe_set")), None)
        out[s] = {"base": against or run.arm(s).base, "deltas": deltas, **forgetting_summary(deltas, probe_set)}
    return out


def forgetting_summary(deltas: dict[str, dict], probe_set: Optional[str] = None) -> dict:
    """What the probe deltas say, in words a reader can act on (the next larger probe set when they are too small)."""
    acc = {m: d for m, d in deltas.items() if "perplexity" not in m}
    ppl = {m: d for m, d in deltas.items() if "perplexity" in m}
    worse = [m for m, d in acc.items() if d["ci_high"] is not None and d["ci_high"] < 0]
    better = [m for m, d in acc.items() if d["ci_low"] is not None and d["ci_low"] > 0]
    resolving = [m for m, d in acc.items() if d["resolves"]]
    parts = []
    if worse:
        parts.append("forgot: " + ", ".join(f"{m} {acc[m]['delta']:+.3f}" for m in worse))
    if better:
        parts.append("improved: " + ", ".join(f"{m} {acc[m]['delta']:+.3f}" for m in better))
    if acc and not worse and not better:
        parts.append("no accuracy change shown" + ("" if resolving else
                     f" (the probe sets are too small to resolve a {RESOLVE_PP:.0%} change: use --probes "
                     f"{'large' if probe_set in ('default', 'large') else 'default'})"))
    for m, d in ppl.items():
        rel = d["delta"] / d["base"] if d.get("base") else None
        sig = d["ci_low"] is not None and (d["ci_low"] > 0 or d["ci_high"] < 0)
        parts.append(f"perplexity {d['delta']:+.2f}" + (f" ({rel:+.0%})" if rel is not None else "")
                     + (" (outside its interval)" if sig else ""))
    return {"forgot": bool(worse), "summary": "; ".join(parts) or "no probe data"}


def strata(res: StrategyResult, run: Run, task: str) -> dict[str, dict]:
    """Main metric per stratum label (e.g. known / unknown) with an interval."""
    groups: dict[str, dict[str, list]] = {}
    for c in run.cells_of(task, res.strategy):
        for s in c.scores:
            st = s.get("stratum")
            v = (s.get("scores") or {}).get(res.metric)
            if st is None:
                continue
            groups.setdefault(str(st), {}).setdefault(str(s.get("example_id")), []).append(0.0 if v is None else float(v))
    out = {}
    for st, by_item in sorted(groups.items()):
        means = [float(np.mean(v)) for v in by_item.values()]
        lo, hi = stats.mean_ci(means, bounds=stats.unit_bounds(means))
        out[st] = {"value": float(np.mean(means)), "ci_low": lo, "ci_high": hi, "n": len(means)}
    return out


def retrieval(res: StrategyResult, run: Run, task: str) -> Optional[dict]:
    """recall@k, MRR and the four outcome classes (bench.metrics.retrieval) over every seed's items."""
    recs = []
    for c in run.cells_of(task, res.strategy):
        for s in c.scores:
            got = (s.get("info") or {}).get("retrieved")
            if got is None:
                continue
            v = (s.get("scores") or {}).get(res.metric)
            right = None if v is None else (v >= CORRECT_AT if res.higher_is_better else v <= CORRECT_AT)
            recs.append({"example_id": s.get("example_id"), "doc_ids": s.get("doc_ids") or [], "retrieved": got,
                         "correct": right})
    if not recs:
        return None
    k = max(len(dict.fromkeys(r["retrieved"])) for r in recs) or 1
    out = retrieval_outcomes(recs, k)
    out.pop("items", None)
    return out


def compare(a: StrategyResult, b: StrategyResult) -> stats.Comparison:
    """a minus b, paired on the items both scored (failed = 0)."""
    return stats.paired_compare(a.strategy, a.items, b.strategy, b.items)


def oracle_pairs(run: Run, results: dict[str, StrategyResult]) -> list[dict]:
    """Each retrieval arm next to its diagnostic twin (the same arm reading the gold documents, rag_oracle)
    and the same arm without retrieval: how much do retrieval misses cost, and can the reader use context?"""
    out = []
    arms = {name: run.arm(name) for name in results}
    for name, arm in arms.items():
        if arm.retrieval_part is None or arm.diagnostic:
            continue
        twin = next((t for t, o in arms.items() if o.diagnostic and o.retrieval_part is not None
                     and o.without_retrieval == arm.without_retrieval), None)
        if twin is None:
            continue
        no_ctx = arm.without_retrieval
        row = {"rag": name, "oracle": twin, "no_context": no_ctx if no_ctx in results else None,
               "oracle_minus_rag": compare(results[twin], results[name])}
        if no_ctx in results:
            row["oracle_minus_no_context"] = compare(results[twin], results[no_ctx])
        out.append(row)
    return out


def decision_settings(manifest: dict) -> dict[str, Any]:
    """margin, alpha, floor of the run (config `decision:`), and whether it evaluated items in rounds."""
    d = (manifest.get("config") or {}).get("decision") or {}
    return {"margin": float(d.get("margin", rule.MARGIN)), "alpha": float(d.get("alpha", rule.ALPHA)),
            "floor": float(d.get("floor", rule.FLOOR)), "sequential": bool(manifest.get("rounds"))}


def verdict_of(results: dict[str, StrategyResult], volume: float, settings: dict, metric: str,
               higher_is_better: bool) -> rule.Verdict:
    """The rule applied to the arms' item scores, with each arm's cost at the reference volume."""
    arms = [rule.Arm(r.strategy, r.scores, cost=costs.per_1k_at(r.money, volume), diagnostic=r.diagnostic)
            for r in results.values() if r.items]
    order = list(dict.fromkeys(i for r in results.values() for i in r.order)) or None
    return rule.decide(arms, higher_is_better=higher_is_better, margin=settings["margin"], alpha=settings["alpha"],
                       floor=settings["floor"], sequential=settings["sequential"],
                       order=order if settings["sequential"] else None, metric=metric)


def unseen_arms(verdict: rule.Verdict, cells: list) -> rule.Verdict:
    """No recommendation while some cells of the task have per-item scores and others do not (a scores.jsonl
    missing, empty or damaged): the rule would compare only the arms it can see, and the best arm may be
    the one it cannot. A run with no per-item scores at all (rows only) is left to the rule (nothing to decide)."""
    blind = [c for c in cells if c.unscored]
    if not blind or len(blind) == len(cells):
        return verdict
    what = "; ".join(c.unscored for c in blind[:3]) + (f"; and {len(blind) - 3} more" if len(blind) > 3 else "")
    return _no_recommendation(verdict, f"Per-item scores of {len(blind)} cell(s) cannot be read ({what}), so the "
                              "arms cannot all be compared; delete those cell folders under cells/ and rerun the "
                              "same `bench run` to recompute them.")


def uncomputed_arms(verdict: rule.Verdict, run: Run, names: list[str], failed: dict) -> rule.Verdict:
    """No recommendation while a planned arm has no results and did not fail (a run killed or still
    running): the arm not computed yet may be the best. Failed arms are counted and warned about instead."""
    planned = [s for s, d in (run.manifest.get("strategies") or {}).items()
               if isinstance(d, dict) and not d.get("diagnostic")]
    missing = [s for s in planned if s not in names and s not in failed]
    if not missing:
        return verdict
    return _no_recommendation(verdict, f"No results yet for {', '.join(f'`{s}`' for s in missing)}: the run has "
                              "not finished (it was interrupted, or is still running); run the same `bench run` "
                              "again to complete it.")


def _no_recommendation(verdict: rule.Verdict, reason: str) -> rule.Verdict:
    """The verdict withdrawn: not decided and not informative (no "need ~N items": items are not what is missing)."""
    return replace(verdict, decided=False, strategy=None, informative=False, needed_items=None, reason=reason)


def analyse_task(run: Run, task: str, prices: dict, volume: float) -> Optional[TaskAnalysis]:
    results = {}
    for s in run.strategies(task):
        r = strategy_result(run, task, s, prices, volume)
        if r is not None:
            results[s] = r
    if not results:
        return None
    first = next(iter(results.values()))
    names = list(results)
    failed = {c.split("__")[1]: e for c, e in ((run.manifest.get("cells") or {}).get("failed") or {}).items()
              if c.split("__")[0] == task}
    halluc = {s: h for s in names if (h := hallucination(run, task, s))}
    support = {s: sp for s in names if (sp := _rate_rows(run, task, s, SUPPORT_RE))}
    rated = {s: [m for m in ((halluc.get(s, {}).get("rates") or {}).keys() | support.get(s, {}).keys())
                 if m == "hallucination_rate" or SUPPORT_RE.search(m)] for s in names}
    verdict = verdict_of(results, volume, decision_settings(run.manifest), first.metric, first.higher_is_better)
    verdict = unseen_arms(verdict, [c for s in names for c in run.cells_of(task, s)])
    return TaskAnalysis(
        task=task, metric=first.metric, higher_is_better=first.higher_is_better, results=results,
        verdict=uncomputed_arms(verdict, run, names, failed),
        hallucination=halluc, support=support,
        rate_items={s: ri for s in names if rated[s] and (ri := rate_items(run, task, s, rated[s]))},
        forgetting=forgetting(run, task, names), strata={s: st for s in names if (st := strata(results[s], run, task))},
        retrieval={s: rt for s in names if (rt := retrieval(results[s], run, task))},
        oracle=oracle_pairs(run, results), prices=prices, volume=volume, failed_cells=failed,
    )


def analyse(run: Run, volume: float) -> list[TaskAnalysis]:
    prices = costs.prices_from(run.manifest)
    return [a for t in run.tasks if (a := analyse_task(run, t, prices, volume)) is not None]
