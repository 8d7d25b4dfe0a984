"""The numbers behind the report, per task: quality with intervals, paired tests, costs, and diagnostics.

`analyse(run)` turns a loaded run into a `TaskAnalysis` per task: for each strategy its main-metric
value (mean over seeds), a cluster-bootstrap interval over test items, its cost ledger and estimated
money; paired comparisons of every strategy against the best one and of every pair; break-even
volumes; and the diagnostics the decision cites: hallucination on unanswerable items, forgetting
probes, per-stratum scores, retrieval outcome classes, and rag against rag_oracle. Nothing is drawn
or written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from bench import stats
from bench.metrics.abstention import is_abstention
from bench.metrics.retrieval import retrieval_outcomes
from bench.report import costs
from bench.report.data import Run

CORRECT_AT = 0.5  # an answer counts as right for retrieval outcomes when its main score is >= this
HALLU_RE = re.compile(r"halluc|fabricat|abstain|abstention|refus", re.I)


@dataclass
class StrategyResult:
    strategy: str
    family: str
    metric: str
    higher_is_better: bool
    value: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    seed_values: list[float]
    seed_std: Optional[float]
    n: int
    n_failed: int
    items: dict  # (example_id, seed) -> main score
    ledger: costs.Ledger
    money: costs.Money
    other: dict = field(default_factory=dict)  # every quality metric: name -> {value, ci_low, ci_high} over seeds
    diagnostic: bool = False  # reads gold information (rag_oracle): shown as a ceiling, never recommended

    @property
    def seeds(self) -> int:
        return len(self.seed_values)


@dataclass
class TaskAnalysis:
    task: str
    metric: str
    higher_is_better: bool
    results: dict[str, StrategyResult]
    best: Optional[str]
    vs_best: dict[str, stats.Comparison]
    pairs: dict[tuple[str, str], stats.Comparison]
    break_even: dict[tuple[str, str], costs.BreakEven]
    hallucination: dict[str, dict]
    forgetting: dict[str, dict]
    strata: dict[str, dict[str, dict]]
    retrieval: dict[str, dict]
    oracle: list[dict]
    prices: dict
    volume: float

    def ordered(self) -> list[StrategyResult]:
        sign = 1 if self.higher_is_better else -1
        return sorted(self.results.values(), key=lambda r: -sign * (r.value if r.value is not None else -sign * 1e18))


def _main_rows(rows: list[dict], task: str, strategy: str) -> list[dict]:
    return [r for r in rows if r["task"] == task and r["strategy"] == strategy and r.get("main")
            and r.get("kind", "quality") == "quality"]


def _item_scores(run: Run, task: str, strategy: str, metric: str) -> dict:
    out = {}
    for c in run.cells_of(task, strategy):
        for s in c.scores:
            v = (s.get("scores") or {}).get(metric)
            out[(str(s.get("example_id")), c.seed)] = None if v is None else float(v)
    return out


def strategy_result(run: Run, task: str, strategy: str, prices: dict, volume: float) -> Optional[StrategyResult]:
    mains = _main_rows(run.rows, task, strategy)
    if not mains:
        return None
    metric = mains[0]["metric"]
    hib = bool(mains[0].get("higher_is_better", True))
    seed_values = [float(r["value"]) for r in mains if r.get("value") is not None]
    value, std = stats.seed_summary(seed_values)
    items = _item_scores(run, task, strategy, metric)
    lo = hi = None
    if items:
        by_item: dict[str, list] = {}
        for (ex, _), v in items.items():
            by_item.setdefault(ex, []).append(v)
        _, lo, hi = stats.cluster_bootstrap_ci(by_item)
    if lo is None:  # no per-item scores: fall back to the rows' own intervals, averaged over seeds
        los = [r["ci_low"] for r in mains if r.get("ci_low") is not None]
        his = [r["ci_high"] for r in mains if r.get("ci_high") is not None]
        lo = float(np.mean(los)) if los else None
        hi = float(np.mean(his)) if his else None
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
    ledger = costs.mean_ledger(ledgers)
    acc: dict[str, list[dict]] = {}
    for r in run.rows:  # every quality metric (main included): value and the runner's interval, seeds averaged
        if r["task"] == task and r["strategy"] == strategy and r.get("kind", "quality") == "quality" \
                and r.get("value") is not None:
            acc.setdefault(r["metric"], []).append(r)
    other = {}
    for k, rs in acc.items():
        los = [x["ci_low"] for x in rs if x.get("ci_low") is not None]
        his = [x["ci_high"] for x in rs if x.get("ci_high") is not None]
        other[k] = {"value": float(np.mean([x["value"] for x in rs])), "ci_low": float(np.mean(los)) if los else None,
                    "ci_high": float(np.mean(his)) if his else None,
                    "higher_is_better": bool(rs[0].get("higher_is_better", True))}
    return StrategyResult(strategy, run.family(strategy), metric, hib, value, lo, hi, seed_values, std,
                          sum(int(r.get("n") or 0) for r in mains), sum(int(r.get("n_failed") or 0) for r in mains),
                          items, ledger, costs.price(ledger, prices), other, diagnostic=run.arm(strategy).diagnostic)


def hallucination(run: Run, task: str, strategy: str) -> dict:
    """Metric rows about abstention/hallucination, and (when unanswerable items exist) rates from answers."""
    out: dict[str, Any] = {}
    for r in run.rows:
        if r["task"] == task and r["strategy"] == strategy and HALLU_RE.search(r["metric"]) and r.get("value") is not None \
                and r.get("kind", "quality") == "quality":
            out.setdefault("rows", {}).setdefault(r["metric"], []).append(float(r["value"]))
    if "rows" in out:
        out["rows"] = {k: float(np.mean(v)) for k, v in out["rows"].items()}
    recs = [s for c in run.cells_of(task, strategy) for s in c.scores]
    unans = [s for s in recs if s.get("answerable") is False]
    if unans:
        meta = run.task_info(task)
        extra = (meta["abstain_phrase"],) if meta.get("abstain_phrase") else ()

        def abstained(ans) -> bool:
            return is_abstention(ans, meta["language"], extra) or is_abstention(ans, "ru", extra)

        answered = [s for s in unans if s.get("answer") is not None and not abstained(s.get("answer"))]
        ans_items = [s for s in recs if s.get("answerable") is not False and s.get("answer") is not None]
        out["unanswerable"] = len(unans)
        out["hallucination_rate"] = len(answered) / len(unans)
        out["false_abstention_rate"] = (sum(abstained(s["answer"]) for s in ans_items) / len(ans_items)) if ans_items else None
    return out


def _is_delta(r: dict) -> bool:
    return r.get("scorer") == "probe_delta" or str(r.get("metric", "")).endswith("_delta")


def forgetting(run: Run, task: str, strategies: list[str]) -> dict[str, dict]:
    """Probe results of each fine-tuned arm as deltas against its base (non-trained) arm.

    Prefers the probes' own `<metric>_delta` rows (paired over probe items, with an interval); else
    differences of the plain probe rows (kind == 'probe') of the arm and its base. Probe rows of this
    task are used when there are any, otherwise every probe row of the run. `mean_delta` is signed so
    that negative is forgetting (lower-is-better metrics flipped) and leaves perplexity out of the
    mean when accuracy-like probes exist (its scale is not comparable).
    """
    probes = [r for r in run.rows if r.get("kind") == "probe" and r.get("value") is not None]
    mine = [r for r in probes if r["task"] == task] or probes
    if not mine:
        return {}
    out: dict[str, dict] = {}
    deltas = [r for r in mine if _is_delta(r) and run.family(r["strategy"]) == "fine-tuning"]
    for s in dict.fromkeys(r["strategy"] for r in deltas):
        acc: dict[str, dict[str, list]] = {}
        for r in deltas:
            if r["strategy"] != s:
                continue
            name = str(r["metric"])[: -len("_delta")] if str(r["metric"]).endswith("_delta") else r["metric"]
            d = acc.setdefault(name, {"v": [], "lo": [], "hi": [], "hib": bool(r.get("higher_is_better", True))})
            d["v"].append(float(r["value"]))
            if r.get("ci_low") is not None and r.get("ci_high") is not None:
                d["lo"].append(float(r["ci_low"]))
                d["hi"].append(float(r["ci_high"]))
        out[s] = _forgetting_entry(run.arm(s).base, {m: (float(np.mean(d["v"])), float(np.mean(d["lo"])) if d["lo"] else None,
                                                     float(np.mean(d["hi"])) if d["hi"] else None, d["hib"])
                                                 for m, d in acc.items()})
    raw = [r for r in mine if not _is_delta(r)]
    table: dict[str, dict[str, list[float]]] = {}
    hib: dict[str, bool] = {}
    for r in raw:
        table.setdefault(r["strategy"], {}).setdefault(r["metric"], []).append(float(r["value"]))
        hib[r["metric"]] = bool(r.get("higher_is_better", True))
    means = {s: {m: float(np.mean(v)) for m, v in d.items()} for s, d in table.items()}
    bases = [s for s in means if run.family(s) != "fine-tuning"]
    for s in means:
        if run.family(s) != "fine-tuning" or s in out:
            continue
        base = run.arm(s).base if run.arm(s).base in means else (bases[0] if bases else None)
        if base is None:
            continue
        ds = {m: (v - means[base][m], None, None, hib[m]) for m, v in means[s].items() if m in means[base]}
        if ds:
            out[s] = _forgetting_entry(base, ds)
    return out


def _forgetting_entry(base: str, ds: dict[str, tuple]) -> dict:
    signed = {m: (d if h else -d) for m, (d, _, _, h) in ds.items()}
    pick = [v for m, v in signed.items() if "perplexity" not in m] or list(signed.values())
    return {"base": base, "deltas": {m: d for m, (d, _, _, _) in ds.items()},
            "ci": {m: (lo, hi) for m, (_, lo, hi, _) in ds.items()},
            "higher_is_better": {m: h for m, (_, _, _, h) in ds.items()},
            "mean_delta": float(np.mean(pick)) if pick else None}


def strata(res: StrategyResult, run: Run, task: str) -> dict[str, dict]:
    """Main metric per stratum label (e.g. known / unknown) with a bootstrap interval."""
    groups: dict[str, dict[str, list]] = {}
    for c in run.cells_of(task, res.strategy):
        for s in c.scores:
            st = s.get("stratum")
            v = (s.get("scores") or {}).get(res.metric)
            if st is None or v is None:
                continue
            groups.setdefault(str(st), {}).setdefault(str(s.get("example_id")), []).append(float(v))
    out = {}
    for st, by_item in sorted(groups.items()):
        mean, lo, hi = stats.cluster_bootstrap_ci(by_item)
        out[st] = {"value": mean, "ci_low": lo, "ci_high": hi, "n": len(by_item)}
    if not out:  # labels only in rows (kind == 'stratum', e.g. SliCK strata): their values, seeds averaged
        acc: dict[str, list[dict]] = {}
        for r in run.rows:
            if r["task"] == task and r["strategy"] == res.strategy and r.get("kind") == "stratum" \
                    and r.get("metric") == res.metric and r.get("value") is not None and r.get("stratum"):
                acc.setdefault(str(r["stratum"]), []).append(r)
        for st, rs in acc.items():
            mean = lambda k: float(np.mean([x[k] for x in rs])) if all(x.get(k) is not None for x in rs) else None  # noqa: E731
            out[st] = {"value": mean("value"), "ci_low": mean("ci_low"), "ci_high": mean("ci_high"),
                       "n": int(np.mean([x.get("n") or 0 for x in rs]))}
    return out


def retrieval(res: StrategyResult, run: Run, task: str) -> Optional[dict]:
    """recall@k, MRR and the four outcome classes (bench.retrieval.metrics) over every seed's items."""
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
    """Paired on per-item scores when both have them; else unpaired from the two intervals (normal
    approximation, p-value unknown), so a run without scores.jsonl still separates clear gaps from ties."""
    c = stats.paired_compare(a.strategy, a.items, b.strategy, b.items)
    if c.diff is not None or a.value is None or b.value is None:
        return c
    diff = a.value - b.value
    if None in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        return stats.Comparison(a.strategy, b.strategy, diff, None, None, None, 0, 0)
    se = (((a.ci_high - a.ci_low) / 3.92) ** 2 + ((b.ci_high - b.ci_low) / 3.92) ** 2) ** 0.5
    return stats.Comparison(a.strategy, b.strategy, diff, diff - 1.96 * se, diff + 1.96 * se, None, 0, 0)


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
        cmp = compare(results[twin], results[name])
        row = {"rag": name, "oracle": twin, "no_context": no_ctx if no_ctx in results else None, "oracle_minus_rag": cmp}
        if no_ctx in results:
            row["oracle_minus_no_context"] = compare(results[twin], results[no_ctx])
        out.append(row)
    return out


def analyse_task(run: Run, task: str, prices: dict, volume: float) -> Optional[TaskAnalysis]:
    results = {}
    for s in run.strategies(task):
        r = strategy_result(run, task, s, prices, volume)
        if r is not None:
            results[s] = r
    if not results:
        return None
    first = next(iter(results.values()))
    hib = first.higher_is_better
    # diagnostic arms (rag_oracle) read the gold documents: a ceiling, never a strategy to deploy
    scored = [r for r in results.values() if r.value is not None and not r.diagnostic]
    best = None
    if scored:
        best = (max if hib else min)(scored, key=lambda r: r.value).strategy
    vs_best, pairs, be = {}, {}, {}
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs[(a, b)] = compare(results[a], results[b])
            be[(a, b)] = costs.break_even(a, results[a].money, b, results[b].money)
    if best is not None:
        for s in names:
            if s != best and not results[s].diagnostic:
                vs_best[s] = compare(results[best], results[s])
    return TaskAnalysis(
        task=task, metric=first.metric, higher_is_better=hib, results=results, best=best, vs_best=vs_best, pairs=pairs,
        break_even=be, hallucination={s: h for s in names if (h := hallucination(run, task, s))},
        forgetting=forgetting(run, task, names), strata={s: st for s in names if (st := strata(results[s], run, task))},
        retrieval={s: rt for s in names if (rt := retrieval(results[s], run, task))},
        oracle=oracle_pairs(run, results), prices=prices, volume=volume,
    )


def analyse(run: Run, volume: float) -> list[TaskAnalysis]:
    prices = costs.prices_from(run.manifest)
    return [a for t in run.tasks if (a := analyse_task(run, t, prices, volume)) is not None]
