"""The report's figures (matplotlib, Agg, PNG in plots/ beside report.md).

Each function takes analysed data and a target path and returns (path or None, note). When its data
is absent it draws nothing and the note says why, so the report shows a line instead of a plot and
never fails for lack of a figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from bench.report.analysis import TaskAnalysis
from bench.report.data import Run
from bench.report.decide import cost_at

COLORS = {"prompting": "#1f77b4", "retrieval": "#2ca02c", "fine-tuning": "#d62728"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def pareto_front(points: list[tuple[str, float, float]], higher_is_better: bool = True) -> list[str]:
    """Names not dominated by another point (lower or equal cost and better or equal score, one strict)."""
    front = []
    for n, c, q in points:
        dominated = False
        for m, c2, q2 in points:
            if m == n:
                continue
            better = q2 >= q if higher_is_better else q2 <= q
            strictly = c2 < c or (q2 > q if higher_is_better else q2 < q)
            if c2 <= c and better and strictly:
                dominated = True
                break
        if not dominated:
            front.append(n)
    return front


def quality_vs_cost(a: TaskAnalysis, path: Path) -> tuple[Optional[Path], str]:
    pts = [(s, cost_at(r, a.volume), r) for s, r in a.results.items()]
    pts = [(s, c, r) for s, c, r in pts if c is not None and r.value is not None]
    if len(pts) < 1:
        return None, "no quality-vs-cost plot: no strategy has both a score and a measured per-query cost"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    oracle = {s for s, _, r in pts if r.diagnostic}  # a diagnostic ceiling, off the frontier
    front = set(pareto_front([(s, c, r.value) for s, c, r in pts if s not in oracle], a.higher_is_better))
    for s, c, r in pts:
        col = "gray" if s in oracle else COLORS.get(r.family, "gray")
        yerr = None
        if r.ci_low is not None and r.ci_high is not None:
            yerr = [[max(r.value - r.ci_low, 0)], [max(r.ci_high - r.value, 0)]]
        ax.errorbar([max(c, 1e-9)], [r.value], yerr=yerr, fmt="o", color=col, mfc=col if s in front else "white", capsize=3)
        ax.annotate(s, (max(c, 1e-9), r.value), textcoords="offset points", xytext=(5, 4), fontsize=8)
    fr = sorted([(c, r.value) for s, c, r in pts if s in front])
    if len(fr) > 1:
        ax.plot([max(x, 1e-9) for x, _ in fr], [y for _, y in fr], "--", color="black", lw=1, label="Pareto frontier")
        ax.legend(fontsize=8)
    costs = [c for _, c, _ in pts]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlapped ("3x10^-4 3x10^-3 ...")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"${x:g}"))
    else:
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"${x:.2g}"))
    ax.set_xlabel(f"estimated $ per 1k queries (setup spread over {a.volume:,.0f} queries)")
    ax.set_ylabel(f"{a.metric} (95 % CI)")
    ax.set_title(f"{a.task}: quality against cost (filled = on the frontier; grey = oracle)", fontsize=10)
    return _save(fig, path), ""


def loss_curves(run: Run, task: str, path: Path) -> tuple[Optional[Path], str]:
    logs = [c for c in run.cells if c.task == task and c.train_log]
    if not logs:
        return None, "no loss curves: no fine-tuning cell wrote a train_log.jsonl"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cmap = plt.get_cmap("tab10")
    for i, c in enumerate(logs):
        col = cmap(i % 10)
        tr = [(r.get("step", j), r["loss"]) for j, r in enumerate(c.train_log) if isinstance(r.get("loss"), (int, float))]
        ev = [(r.get("step", j), r["eval_loss"]) for j, r in enumerate(c.train_log) if isinstance(r.get("eval_loss"), (int, float))]
        label = f"{c.strategy} s{c.seed}"
        if tr:
            ax.plot(*zip(*tr), "-", color=col, lw=1, label=f"{label} train")
        if ev:
            ax.plot(*zip(*ev), "o--", color=col, lw=1, ms=3, label=f"{label} validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{task}: training and validation loss", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path), ""


def learning_vs_forgetting(a: TaskAnalysis, path: Path) -> tuple[Optional[Path], str]:
    if not a.forgetting:
        return None, "no learning-vs-forgetting plot: no probe rows (kind == 'probe') for fine-tuned arms and their bases"
    pts = []
    for s, fg in a.forgetting.items():
        r, base = a.results.get(s), a.results.get(fg["base"])
        acc = [d["delta"] for m, d in fg["deltas"].items() if "perplexity" not in m]
        if r is None or r.value is None or not acc:
            continue
        learn = r.value - base.value if base is not None and base.value is not None else None
        pts.append((s, sum(acc) / len(acc), learn))
    if not pts:
        return None, "no learning-vs-forgetting plot: the fine-tuned arms with probes have no task score"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s, f, l in pts:
        ax.scatter([f], [l if l is not None else 0], color=COLORS["fine-tuning"])
        ax.annotate(s, (f, l if l is not None else 0), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(0, color="gray", lw=0.8)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("mean accuracy change on the probes vs base (negative = forgetting)")
    ax.set_ylabel(f"{a.metric} gain vs base (learning)")
    ax.set_title(f"{a.task}: learning against forgetting per fine-tuning method", fontsize=10)
    return _save(fig, path), ""


def by_stratum(a: TaskAnalysis, path: Path) -> tuple[Optional[Path], str]:
    if not a.strata:
        return None, "no per-stratum plot: test items carry no `stratum` label"
    labels = sorted({st for d in a.strata.values() for st in d})
    if len(labels) < 1:
        return None, "no per-stratum plot: no stratum labels"
    plt = _plt()
    strategies = list(a.strata)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(strategies) * len(labels) / 2), 4.2))
    width = 0.8 / len(labels)
    for j, st in enumerate(labels):
        xs, ys, errs = [], [], [[], []]
        for i, s in enumerate(strategies):
            d = a.strata[s].get(st)
            if not d or d["value"] is None:
                continue
            xs.append(i + j * width)
            ys.append(d["value"])
            errs[0].append(max(d["value"] - (d["ci_low"] if d["ci_low"] is not None else d["value"]), 0))
            errs[1].append(max((d["ci_high"] if d["ci_high"] is not None else d["value"]) - d["value"], 0))
        ax.bar(xs, ys, width=width, yerr=errs, capsize=2, label=st)
    ax.set_xticks([i + width * (len(labels) - 1) / 2 for i in range(len(strategies))])
    ax.set_xticklabels(strategies, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(a.metric)
    ax.set_title(f"{a.task}: {a.metric} per stratum", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path), ""


def retrieval_outcomes(a: TaskAnalysis, path: Path) -> tuple[Optional[Path], str]:
    rows = {s: d for s, d in a.retrieval.items() if sum((d.get("classes") or {}).values()) > 0}
    if not rows:
        return None, "no retrieval-outcome plot: no arm retrieved for items that name gold doc_ids"
    plt = _plt()
    classes = ["retrieved_right", "retrieved_wrong", "missed_right", "missed_wrong"]
    cols = ["#2ca02c", "#ff7f0e", "#1f77b4", "#d62728"]
    fig, ax = plt.subplots(figsize=(6.4, 0.6 * len(rows) + 1.8))
    names = list(rows)
    left = [0.0] * len(names)
    for cls, col in zip(classes, cols):
        vals = []
        for s in names:
            tot = sum(rows[s]["classes"].values())
            vals.append(rows[s]["classes"].get(cls, 0) / tot if tot else 0)
        ax.barh(names, vals, left=left, color=col, label=cls.replace("_", " & "))
        left = [l + v for l, v in zip(left, vals)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of items with gold documents")
    ax.set_title(f"{a.task}: retrieval outcome classes", fontsize=10, pad=34)
    ax.legend(fontsize=7, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.08))
    return _save(fig, path), ""


def all_plots(run: Run, a: TaskAnalysis, plots_dir: Path) -> dict[str, tuple[Optional[Path], str]]:
    """Every figure of one task; a figure that fails to draw becomes a note, not a crash."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in a.task)
    jobs = {
        "quality_vs_cost": lambda p: quality_vs_cost(a, p),
        "loss": lambda p: loss_curves(run, a.task, p),
        "learning_vs_forgetting": lambda p: learning_vs_forgetting(a, p),
        "strata": lambda p: by_stratum(a, p),
        "retrieval": lambda p: retrieval_outcomes(a, p),
    }
    out = {}
    for name, fn in jobs.items():
        path = plots_dir / f"{safe}_{name}.png"
        try:
            out[name] = fn(path)
        except Exception as e:  # a plotting bug must not lose the report
            out[name] = (None, f"no {name} plot: drawing failed ({type(e).__name__}: {e})")
        if out[name][0] is None and path.exists():
            path.unlink()
    return out


__all__ = ["all_plots", "pareto_front"]
