"""A study's claims checked on a finished run: paired 95 % intervals and a verdict per claim (study.md).

Each claim of `study.json` (bench.study) is one or more paired comparisons on per-item scores of one
metric (default: the task's main metric). An item's score is its mean over the run's seeds, and a failed
or unscored item counts 0 (bench.report.rule.item_scores), so noise across training seeds is inside
the interval and a failing arm cannot look good.

- arms: `better` against each arm of `than`, on the items both scored;
- strata: within `arm`, items of `better_stratum` against items of `than_stratum`, paired by fact
  (example ids `<fact>-<stratum>`, what bench.synth.facts writes).

The interval is the two-sided 95 % betting interval of the mean difference (bench.stats.paired_diff_ci).
A comparison is `holds` when the interval lies above 0 (in the claimed direction), `opposite` when it
lies below, and otherwise `unresolved` with the number of items at which the interval would exclude
0 if further differences looked like these (bench.report.rule.needed_items; when the observed
difference is against the claim, that is the items that would show the opposite: "points the other
way"). The claim's verdict: **reproduced** when every comparison holds, **opposite** when one is
opposite, else **not resolved at this scale (needs ~N items)**, N the largest need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from bench import atomic, stats
from bench.report import rule
from bench.report.data import Run, load
from bench.report.plots import _plt, _save
from bench.results import PROBES, read_json

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    label: str  # "rag+few_shot vs lora" or "lora: verbatim vs rephrased"
    n: int
    diff: Optional[float]  # mean(better - than), in the claimed direction (positive supports the claim)
    ci_low: Optional[float]
    ci_high: Optional[float]
    better_value: Optional[float]  # the claimed-better side's mean of the metric as measured (lower_is_better too)
    than_value: Optional[float]
    seeds: int
    status: str  # holds | opposite | unresolved | no data
    needed: Optional[int] = None


def _main_metric(run: Run, task: str) -> str:
    for r in run.rows:
        if r["task"] == task and r.get("main") and r.get("kind", "quality") == "quality":
            return r["metric"]
    raise ValueError(f"task {task} has no main metric row")


def _scores(run: Run, task: str, arm: str, metric: str, claim: dict) -> dict[tuple[str, int], Optional[float]]:
    """(example_id, seed) -> the metric, for the items the claim's filters keep (or a probe's items)."""
    out: dict[tuple[str, int], Optional[float]] = {}
    if claim.get("probe"):
        for c in run.cells_of(task, arm):
            for item in read_json(c.folder / PROBES).get(claim["probe"]) or []:
                v = item.get("value")
                out[(str(item.get("id")), c.seed)] = None if v is None else float(v)
        return out
    for c in run.cells_of(task, arm):
        for s in c.scores:
            if _strata(claim) and s.get("stratum") not in _strata(claim):
                continue
            if claim.get("answerable") is not None and bool(s.get("answerable", True)) != claim["answerable"]:
                continue
            v = None if s.get("failed") else (s.get("scores") or {}).get(metric)
            out[(str(s.get("example_id")), c.seed)] = None if v is None else float(v)
    return out


def _strata(claim: dict) -> tuple[str, ...]:
    """The claim's stratum filter: one name (specs written before lists) or a list; () keeps every item."""
    st = claim.get("stratum")
    return () if not st else (st,) if isinstance(st, str) else tuple(st)


def _compare(label: str, a: dict[str, float], b: dict[str, float], seeds: int, lower: bool = False) -> Comparison:
    """`a` claimed better than `b` on their common items; `lower`: the metric is better low, so the interval is
    taken on 1 - value (the difference stays positive when the claim holds) and the means stay as measured."""
    keys = sorted(k for k in a if k in b)
    if not keys:
        return Comparison(label, 0, None, None, None, None, None, seeds, "no data")
    good = (lambda v: 1.0 - v) if lower else (lambda v: v)
    xa, xb = [good(a[k]) for k in keys], [good(b[k]) for k in keys]
    d = stats.paired_diff_ci(xa, xb, ALPHA)
    status, needed = "unresolved", None
    if d.ci_low is not None and d.ci_low > 0:
        status = "holds"
    elif d.ci_high is not None and d.ci_high < 0:
        status = "opposite"
    else:
        diffs = np.asarray(xa) - np.asarray(xb)
        side = "lower" if diffs.mean() >= 0 else "upper"
        needed = rule.needed_items(diffs, ALPHA / 2, False, side, 0.0)
        if side == "upper" and needed is not None:
            status = "unresolved, points the other way"
    return Comparison(label, len(keys), d.diff, d.ci_low, d.ci_high, float(np.mean([a[k] for k in keys])),
                      float(np.mean([b[k] for k in keys])), seeds, status, needed)


def _strip(example_id: str, stratum: str) -> Optional[str]:
    suffix = f"-{stratum}"
    return example_id[: -len(suffix)] if example_id.endswith(suffix) else None


def check_claim(run: Run, claim: dict) -> dict[str, Any]:
    """{claim fields..., comparisons: [...], verdict, needed} for one claim on every task it applies to."""
    tasks = [claim["task"]] if claim.get("task") else run.tasks
    lower = bool(claim.get("lower_is_better"))
    comps: list[Comparison] = []
    used: list[str] = []
    for task in tasks:
        metric = claim.get("probe") or claim.get("metric") or _main_metric(run, task)
        used.append(metric)
        prefix = f"{task}: " if len(tasks) > 1 else ""
        if claim.get("better"):
            for other in claim.get("than") or []:
                sa, sb = (_scores(run, task, arm, metric, claim) for arm in (claim["better"], other))
                seeds = len({s for _, s in sa} & {s for _, s in sb})
                comps.append(_compare(f"{prefix}{claim['better']} vs {other}", rule.item_scores(sa),
                                      rule.item_scores(sb), seeds, lower))
        else:
            items = rule.item_scores(_scores(run, task, claim["arm"], metric, claim))
            a = {f: v for k, v in items.items() if (f := _strip(k, claim["better_stratum"])) is not None}
            b = {f: v for k, v in items.items() if (f := _strip(k, claim["than_stratum"])) is not None}
            seeds = len({c.seed for c in run.cells_of(task, claim["arm"])})
            comps.append(_compare(f"{prefix}{claim['arm']}: {claim['better_stratum']} vs {claim['than_stratum']}",
                                  a, b, seeds, lower))
    statuses = {c.status for c in comps}
    if not comps or statuses == {"no data"}:
        verdict, needed = "no data", None
    elif "opposite" in statuses:
        verdict, needed = "opposite", None
    elif statuses == {"holds"}:
        verdict, needed = "reproduced", None
    else:
        needs = [c.needed for c in comps if c.status.startswith("unresolved")]
        needed = None if any(n is None for n in needs) else max(needs)
        verdict = "not resolved"
        if all(c.status == "unresolved, points the other way" for c in comps if c.status != "holds"):
            verdict = "not resolved, points the other way"
    return {**claim, "metric": ", ".join(dict.fromkeys(used)), "comparisons": [c.__dict__ for c in comps], "verdict": verdict,
            "needed_items": needed}


def _f(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:+.3f}"


def _v(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.3f}"


def verdict_text(c: dict) -> str:
    if c["verdict"].startswith("not resolved"):
        other = c["verdict"].endswith("other way")
        need = (f"~{c['needed_items']} items would show the opposite" if other else f"needs ~{c['needed_items']} items") \
            if c["needed_items"] else "no practical number of items resolves it"
        return f"not resolved at this scale ({'the difference points the other way; ' if other else ''}{need})"
    return c["verdict"]


def render_study(spec: dict, checked: list[dict], run: Run) -> str:
    m = run.manifest
    seeds = sorted({c.seed for c in run.cells})
    L = [f"# Study: {spec['title']}", "", f"Source: {spec['source']}. Run `{run.folder.name}`: model "
         f"{m.get('model', {}).get('name', '?') if isinstance(m.get('model'), dict) else m.get('model', '?')}, "
         f"seeds {', '.join(map(str, seeds))}, tasks {', '.join(run.tasks)}. The full report with the decision is "
         "[report.md](report.md); this page checks the study's claims (bench.report.claims: paired 95 % intervals "
         "over per-item scores averaged across seeds, failures counted 0).", ""]
    L += ["| claim | verdict |", "|---|---|"]
    L += [f"| {c['says']} | **{verdict_text(c)}** |" for c in checked]
    for c in checked:
        metric = c.get("metric") or "?"
        filters = ", ".join(f"{k} = {v}" for k, v in (("stratum", " + ".join(_strata(c)) or None),
                                                       ("answerable", c.get("answerable"))) if v is not None)
        L += ["", f"## {c['says']}", "",
              f"`{c['id']}` on {metric}{' (' + filters + ')' if filters else ''}"
              f"{', lower is better' if c.get('lower_is_better') else ''}: **{verdict_text(c)}**.", "",
              "| comparison | items | seeds | better side | other side | difference | 95 % interval | status |",
              "|---|---|---|---|---|---|---|---|"]
        for k in c["comparisons"]:
            st = k["status"] + (f" (~{k['needed']} items)" if k.get("needed") else "")
            L.append(f"| {k['label']} | {k['n']} | {k['seeds']} | {_v(k['better_value'])} | {_v(k['than_value'])} | "
                     f"{_f(k['diff'])} | [{_f(k['ci_low'])}, {_f(k['ci_high'])}] | {st} |")
    return "\n".join(L) + "\n"


def frontier_points(run: Run) -> list[dict]:
    """Biderman et al.'s learning-forgetting frontier, one point per fine-tuning arm and task: the gain of the main
    metric over the arm's base on answerable test items (paired, with its interval), and forgetting as the mean of
    the accuracy probes' deltas against the base model and the perplexity probe's relative change (seed means)."""
    out = []
    for task in run.tasks:
        metric = _main_metric(run, task)
        for arm in run.strategies(task):
            if run.family(arm) != "fine-tuning":
                continue
            base = run.arm(arm).base
            filt = {"answerable": True}
            gain = _compare(arm, rule.item_scores(_scores(run, task, arm, metric, filt)),
                            rule.item_scores(_scores(run, task, base, metric, filt)), 0)
            deltas = [r for r in run.rows if r["task"] == task and r["strategy"] == arm and r.get("kind") == "probe"
                      and str(r.get("metric", "")).endswith("_delta") and r.get("value") is not None]
            acc = [r["value"] for r in deltas if r["metric"].endswith("_acc_delta") and r.get("language", "en") == "en"]
            ppl = [r["value"] / r["base"] for r in deltas if "perplexity" in r["metric"] and r.get("base")]
            out.append({"task": task, "arm": arm, "base": base, "gain": gain.diff, "gain_low": gain.ci_low,
                        "gain_high": gain.ci_high, "accuracy_delta": float(np.mean(acc)) if acc else None,
                        "perplexity_change": float(np.mean(ppl)) if ppl else None})
    return out


def frontier_plot(points: list[dict], path: Path) -> Optional[Path]:
    pts = [p for p in points if p["gain"] is not None and p["perplexity_change"] is not None]
    if not pts:
        return None
    fig, axes = _plt().subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "perplexity_change", "perplexity change on English text (forgetting →)"),
                           (axes[1], "accuracy_delta", "accuracy-probe change vs base (← forgetting)")):
        for p in pts:
            if p[key] is None:
                continue
            ax.errorbar(p[key], p["gain"], yerr=[[p["gain"] - p["gain_low"]], [p["gain_high"] - p["gain"]]], fmt="o",
                        capsize=3)
            ax.annotate(p["arm"], (p[key], p["gain"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label, fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("gain over base (answerable items, 95 % CI)", fontsize=8)
    fig.suptitle("learning-forgetting frontier (Biderman et al. 2024)", fontsize=10)
    return _save(fig, path)


def render_frontier(points: list[dict], figure: Optional[Path]) -> list[str]:
    L = ["", "## Learning against forgetting", "",
         "Gain: the main metric over the arm's base on answerable test items (paired, seed means, 95 % interval). "
         "Forgetting: the accuracy probes' mean change against the base model (negative = forgot) and the "
         "perplexity probe's relative change (positive = forgot); the report's forgetting section has each probe "
         "with its interval.", "",
         "| arm | gain | 95 % interval | accuracy-probe change | perplexity change |", "|---|---|---|---|---|"]
    for p in points:
        ppl = "–" if p["perplexity_change"] is None else f"{p['perplexity_change']:+.1%}"
        L.append(f"| {p['arm']} | {_f(p['gain'])} | [{_f(p['gain_low'])}, {_f(p['gain_high'])}] | "
                 f"{_f(p['accuracy_delta'])} | {ppl} |")
    if figure is not None:
        L += ["", f"![frontier](plots/{figure.name})"]
    return L


def write_study(run_dir: str | Path, spec: Optional[dict] = None) -> Optional[Path]:
    """study.md (+ study_claims.json) of a run folder that holds a study spec; None when it holds none."""
    run_dir = Path(run_dir)
    spec = spec or read_json(run_dir / "study.json")
    if not spec:
        return None
    run = load(run_dir)
    checked = [check_claim(run, c) for c in spec.get("claims") or []]
    md = render_study(spec, checked, run)
    extra: dict = {}
    if spec.get("frontier"):
        points = frontier_points(run)
        figure = frontier_plot(points, run_dir / "plots" / "frontier.png")
        md += "\n".join(render_frontier(points, figure)) + "\n"
        extra["frontier"] = points
    atomic.write_json(run_dir / "study_claims.json", {"study": spec.get("name"), "claims": checked, **extra})
    return atomic.write_text(run_dir / "study.md", md)
