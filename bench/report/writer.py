"""The decision report, rendered from stored results only (no model calls): `bench report RUN_DIR`.

`write_report(run_dir, fmt)` reads manifest.json, rows.jsonl and cells/*, analyses every task
(bench.report.analysis), decides (bench.report.decide), draws plots/ and writes report.md,
recommendation.json and, on request, report.html or report.csv. `summary_rows` is what the CLI prints. Rows load into pandas in one call:
`pd.read_json(run_dir / 'rows.jsonl', lines=True)`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

from bench import atomic
from bench.errors import BenchError
from bench.report.analysis import analyse
from bench.report.costs import prices_from
from bench.report.data import load
from bench.report.decide import decide
from bench.report.claims import write_study
from bench.report.estimate import estimate, render
from bench.report.plots import all_plots
from bench.report.render import markdown_to_html, render_csv, render_markdown

FORMATS = ("md", "html", "csv")
REFERENCE_VOLUME = 100_000  # queries over which one-off costs are spread when ranking by cost


def summary_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """Per task: one line per strategy with the main metric (mean over seeds) and costs."""
    by_task: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r.get("kind") == "probe":
            continue
        line = by_task[r["task"]].setdefault(r["strategy"], {"strategy": r["strategy"], "seeds": set()})
        line["seeds"].add(r.get("seed"))
        if r.get("main"):
            line.setdefault("main", []).append(r)
        elif r.get("kind") == "cost":
            line.setdefault(r["metric"], []).append(r["value"])
    out: dict[str, list[dict]] = {}
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    for task, lines in by_task.items():
        table = []
        for line in lines.values():
            mains = line.get("main", [])
            vals = [m["value"] for m in mains if m.get("value") is not None]
            table.append({
                "strategy": line["strategy"],
                "metric": mains[0]["metric"] if mains else "?",
                "value": mean(vals),
                "ci_low": mean([m["ci_low"] for m in mains if m.get("ci_low") is not None]),
                "ci_high": mean([m["ci_high"] for m in mains if m.get("ci_high") is not None]),
                "n": sum(m.get("n") or 0 for m in mains), "n_failed": sum(m.get("n_failed") or 0 for m in mains),
                "seeds": len(line["seeds"]),
                "prompt_tokens": mean([v for v in line.get("prompt_tokens_mean", []) if v is not None]),
                "completion_tokens": mean([v for v in line.get("completion_tokens_mean", []) if v is not None]),
                "latency_p50_s": mean([v for v in line.get("latency_p50_s", []) if v is not None]),
            })
        table.sort(key=lambda x: -(x["value"] if x["value"] is not None else -1))
        out[task] = table
    return out


def target_estimate(manifest: dict, strategies: list[str], train_tokens: Optional[float] = None) -> Optional[str]:
    """`bench estimate` text for config.target_model, for the fine-tuning methods of the run (else qlora, lora).

    With `train_tokens` (what this run's fine-tunes processed) it adds the GPU time and its estimated
    price for training the target model on the same data.
    """
    target = (manifest.get("config") or {}).get("target_model")
    if not target:
        return None
    methods = [m for m in ("qlora", "lora", "full") if any(m in s.split("+") for s in strategies)] or ["qlora", "lora"]
    gpu_hour = prices_from(manifest)["gpu_hour"]
    out = []
    try:
        for m in methods:
            e = estimate(target, m, tokens=train_tokens)
            text = render(e)
            if e.train_hours is not None:
                text += (f"\n  on this run's {train_tokens:,.0f} training tokens: {e.train_hours:.2f} GPU-hours, "
                         f"about ${e.train_hours * gpu_hour:.2f} at ${gpu_hour}/GPU-hour (estimated)")
            out.append(text)
    except BenchError as e:
        return f"target_model {target!r}: {e}"
    return "\n\n".join(out)


def build(run_dir: str | Path, volume: float = REFERENCE_VOLUME, plots: bool = True):
    """Analyse a run: (run, analyses, decisions, plots) — everything the renderers need."""
    run = load(run_dir)
    analyses = analyse(run, volume)
    decisions = {a.task: decide(a) for a in analyses}
    figures = {a.task: all_plots(run, a, run.folder / "plots") for a in analyses} if plots else {}
    return run, analyses, decisions, figures


def _json_safe(d):
    if isinstance(d, dict):
        return {str(k): _json_safe(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_json_safe(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d


def write_report(run_dir: str | Path, fmt: str = "md", volume: float = REFERENCE_VOLUME, plots: bool = True) -> Path:
    """Write report.md (+ plots/, recommendation.json); with fmt html or csv also that file, returned.

    plots=False skips drawing (each figure's place says so); the numbers are the same.
    """
    if fmt not in FORMATS:
        raise BenchError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run_dir = Path(run_dir)
    run, analyses, decisions, figures = build(run_dir, volume, plots=plots)
    strategies = sorted({s for a in analyses for s in a.results})
    tokens = [r.ledger.train_tokens for a in analyses for r in a.results.values() if r.ledger.train_tokens]
    estimate_text = target_estimate(run.manifest, strategies, max(tokens) if tokens else None)
    md = render_markdown(run, analyses, decisions, figures, estimate_text)
    md_path = atomic.write_text(run_dir / "report.md", md)
    atomic.write_json(run_dir / "recommendation.json", _json_safe(decisions))
    write_study(run_dir)  # study.md, when the run is a study's (bench study NAME)
    if fmt == "html":
        return atomic.write_text(run_dir / "report.html", markdown_to_html(md, f"bench report {run_dir.name}"))
    if fmt == "csv":
        return atomic.write_text(run_dir / "report.csv", render_csv(analyses, decisions))
    return md_path
