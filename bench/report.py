"""The decision report, rendered from stored results only (no model calls): `bench report RUN_DIR`.

Reads manifest.json, rows.jsonl and cells/*/cost.json; writes report.md. Nothing here computes a
number that changes a result: aggregation lives with the metrics, costs with the runner.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Optional

from bench import atomic
from bench.errors import BenchError


def load_run(run_dir: str | Path) -> tuple[dict, list[dict]]:
    run_dir = Path(run_dir)
    if not (run_dir / "rows.jsonl").is_file():
        raise BenchError(f"{run_dir}: not a run folder (no rows.jsonl); pass a folder under results/")
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").is_file() else {}
    return manifest, atomic.read_jsonl(run_dir / "rows.jsonl")


def _fmt(v: Optional[float], digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def summary_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """Per task: one line per strategy with the main metric (mean over seeds) and costs."""
    by_task: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        line = by_task[r["task"]].setdefault(r["strategy"], {"strategy": r["strategy"], "seeds": set()})
        line["seeds"].add(r["seed"])
        if r.get("main"):
            line.setdefault("main", []).append(r)
        elif r.get("kind") == "cost":
            line.setdefault(r["metric"], []).append(r["value"])
    out: dict[str, list[dict]] = {}
    for task, lines in by_task.items():
        table = []
        for line in lines.values():
            mains = line.get("main", [])
            mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
            vals = [m["value"] for m in mains if m["value"] is not None]
            table.append({
                "strategy": line["strategy"],
                "metric": mains[0]["metric"] if mains else "?",
                "value": mean(vals),
                "ci_low": mean([m["ci_low"] for m in mains if m["ci_low"] is not None]),
                "ci_high": mean([m["ci_high"] for m in mains if m["ci_high"] is not None]),
                "n": sum(m["n"] for m in mains), "n_failed": sum(m["n_failed"] for m in mains),
                "seeds": len(line["seeds"]),
                "prompt_tokens": mean([v for v in line.get("prompt_tokens_mean", []) if v is not None]),
                "completion_tokens": mean([v for v in line.get("completion_tokens_mean", []) if v is not None]),
                "latency_p50_s": mean([v for v in line.get("latency_p50_s", []) if v is not None]),
            })
        table.sort(key=lambda x: -(x["value"] if x["value"] is not None else -1))
        out[task] = table
    return out


def render_markdown(manifest: dict, rows: list[dict]) -> str:
    lines = [f"# bench report: {manifest.get('run_id', '?')}", ""]
    model = manifest.get("model", {})
    hw = manifest.get("hardware", {})
    lines.append(f"Model **{model.get('name', '?')}** (sha256 {str(model.get('sha256', ''))[:12]}), "
                 f"seeds {manifest.get('seeds')}, {hw.get('cpus', '?')} CPUs, load average at start {hw.get('load_avg')}.")
    lines.append("")
    for task, table in summary_rows(rows).items():
        metric = table[0]["metric"] if table else "?"
        lines += [f"## {task}", "", f"Main metric: **{metric}** (mean over seeds; 95 % bootstrap CI over test items).", "",
                  "| strategy | " + metric + " | 95 % CI | n | failed | prompt tok/query | completion tok/query | p50 latency (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in table:
            ci = f"[{_fmt(t['ci_low'])}, {_fmt(t['ci_high'])}]" if t["ci_low"] is not None else "–"
            lines.append(f"| {t['strategy']} | {_fmt(t['value'])} | {ci} | {t['n']} | {t['n_failed']} | "
                         f"{_fmt(t['prompt_tokens'], 0)} | {_fmt(t['completion_tokens'], 0)} | {_fmt(t['latency_p50_s'], 2)} |")
        lines.append("")
    lines += ["---", f"Rendered by `bench report {manifest.get('run_id', 'RUN_DIR')}` from rows.jsonl; "
              "load the rows with `pandas.read_json('rows.jsonl', lines=True)`."]
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    manifest, rows = load_run(run_dir)
    return atomic.write_text(run_dir / "report.md", render_markdown(manifest, rows))
