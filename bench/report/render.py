"""Rendering the analysed run: report.md (the decision first), report.html and report.csv.

Markdown is the source format; HTML is produced from the same markdown by a small converter (only the
constructs written here: headings, paragraphs, lists, tables, images, bold, code), so the two never
disagree. CSV is one line per (task, strategy) with quality, intervals, the paired test against the
best strategy and every ledger and money column, for spreadsheets.
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path
from typing import Any, Optional

from bench.report.analysis import TaskAnalysis
from bench.report.costs import fmt_volume
from bench.report.data import Run
from bench.report.decide import cost_at
from bench.report.fmt import money, num, params, pval, signed, size
from bench.report.langcheck import check_run


def _hib(a: TaskAnalysis, metric: str) -> bool:
    for r in a.results.values():
        if metric in r.other:
            return bool(r.other[metric].get("higher_is_better", True))
    return True


def _verdict(a: TaskAnalysis, s: str) -> str:
    if s == a.best:
        return "**best**"
    c = a.vs_best.get(s)
    if c is None or c.diff is None:
        return "diagnostic" if a.results[s].diagnostic else "not paired"
    return "tie" if c.tie else "worse"


def render_markdown(run: Run, analyses: list[TaskAnalysis], decisions: dict[str, dict],
                    plots: dict[str, dict], estimate_text: Optional[str]) -> str:
    manifest, run_dir = run.manifest, run.folder
    model = manifest.get("model", {})
    hw = manifest.get("hardware", {})
    prices = analyses[0].prices if analyses else {}
    volume = analyses[0].volume if analyses else 0
    L = [f"# bench report: {manifest.get('run_id', run_dir.name)}", "",
         f"Model **{model.get('name', '?')}** (sha256 {str(model.get('sha256', ''))[:12]}), seeds {manifest.get('seeds')}, "
         f"{hw.get('cpus', '?')} CPUs{', GPU ' + hw['cuda'] if hw.get('cuda') else ', no GPU'}, load average at start {hw.get('load_avg')}.",
         "", "## Recommendation", ""]
    if not analyses:
        L += ["No task has a scored main metric in rows.jsonl: nothing to compare.", ""]
    language = _language_notes(run)
    for a in analyses:
        d = decisions[a.task]
        if d.get("strategy"):
            L.append(f"- **{a.task}: use `{d['strategy']}`.** {d['reason']}.")
        else:
            L.append(f"- **{a.task}: no recommendation.** {d['reason']}")
        for t in (d.get("flips") or {}).get("text", []):
            L.append(f"  - What would flip it: {t}.")
        for note in language.get(a.task, []):
            L.append(f"  - Language: {note}")
    L += ["", f"Money is **estimated**: measured seconds x the price sheet (GPU-hour ${prices.get('gpu_hour')}, "
          f"CPU-hour ${prices.get('cpu_hour')}, 1k tokens ${prices.get('per_1k_tokens')}); one-off costs are spread "
          f"over a reference volume of {fmt_volume(volume)} queries. Ties: the paired 95 % interval of the difference "
          "from the best strategy covers 0.", ""]

    for a in analyses:
        L += [f"## {a.task}", "", f"Main metric **{a.metric}** ({'higher' if a.higher_is_better else 'lower'} is better): "
              "mean over seeds, 95 % cluster-bootstrap interval over test items; difference from the best is paired "
              "by (example_id, seed) with a bootstrap interval and a sign-flip permutation p-value.", "",
              f"| strategy | family | {a.metric} | 95 % CI | seeds (sd) | vs best | p | verdict | n | failed |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in a.ordered():
            c = a.vs_best.get(r.strategy)
            diff = "–" if c is None or c.diff is None else (
                f"{signed(-c.diff)} [{signed(-c.ci_high)}, {signed(-c.ci_low)}]" if c.ci_low is not None else f"{signed(-c.diff)} (no CI)")
            p = "–" if c is None else pval(c.p_value)
            sd = f"{r.seeds}" + (f" ({r.seed_std:.3f})" if r.seed_std is not None else "")
            L.append(f"| {r.strategy} | {r.family} | {num(r.value)} | [{num(r.ci_low)}, {num(r.ci_high)}] | {sd} | {diff} | "
                     f"{p} | {_verdict(a, r.strategy)} | {r.n} | {r.n_failed} |")
        names = list(dict.fromkeys(m for r in a.ordered() for m in r.other))
        if len(names) > 1:
            L += ["", "### Every metric", "", "Mean over seeds; 95 % bootstrap interval over test items (per seed, averaged).", "",
                  "| strategy | " + " | ".join(f"{m} {'↑' if _hib(a, m) else '↓'}" for m in names) + " |",
                  "|---|" + "---|" * len(names)]
            for r in a.ordered():
                cells = []
                for m in names:
                    o = r.other.get(m)
                    ci = f" [{num(o['ci_low'])}, {num(o['ci_high'])}]" if o and o["ci_low"] is not None else ""
                    cells.append("–" if o is None else f"{num(o['value'])}{ci}")
                L.append(f"| {r.strategy} | " + " | ".join(cells) + " |")
        L += ["", "### Cost ledger", "",
              "| strategy | setup s (train / index / prep) | train device | s per query (p50 / p95) | prompt tok | "
              "completion tok | samples/query | peak RSS MB | peak CUDA MB | trainable params | adapter | index | "
              "setup $ | $ per 1k queries | $ per 1k at volume |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in a.ordered():
            g = r.ledger
            setup = f"{g.setup_seconds:.1f} ({num(g.train_seconds, 1)} / {num(g.index_seconds, 2)} / {num(g.prep_seconds, 1)})"
            L.append(f"| {r.strategy} | {setup} | {g.train_device if g.train_seconds else '–'} | "
                     f"{num(g.latency_p50_s, 2)} / {num(g.latency_p95_s, 2)} | {num(g.prompt_tokens, 0)} | "
                     f"{num(g.completion_tokens, 0)} | {num(g.samples_per_query, 1)} | {num(g.peak_rss_mb, 0)} | "
                     f"{num(g.peak_cuda_mb, 0)} | {params(g.trainable_params, g.trainable_share)} | "
                     f"{size(g.adapter_bytes)} | {size(g.index_bytes)} | {money(r.money.setup)} | "
                     f"{money(r.money.per_1k)} | {money(cost_at(r, a.volume))} |")
        L += ["", "### Break-even", ""]
        shown = 0
        for (x, y), be in a.break_even.items():
            if a.results[x].diagnostic or a.results[y].diagnostic:
                continue  # the oracle is a diagnostic ceiling, not something to pay for
            if be.kind in ("crossover", "b_dominates", "a_dominates"):
                L.append(f"- {x} vs {y}: {be.statement}.")
                shown += 1
        if not shown:
            L.append("No pair of strategies has measured per-query costs to compare.")
        # hallucination and forgetting
        L += ["", "### Hallucination and forgetting", ""]
        if a.hallucination:
            L += ["| strategy | unanswerable items | answered them (hallucination) | false abstention | metric rows |",
                  "|---|---|---|---|---|"]
            for s, h in a.hallucination.items():
                rows = ", ".join(f"{k} {v:.3f}" for k, v in (h.get("rows") or {}).items()) or "–"
                hr = "–" if h.get("hallucination_rate") is None else f"{100 * h['hallucination_rate']:.0f} %"
                fa = "–" if h.get("false_abstention_rate") is None else f"{100 * h['false_abstention_rate']:.0f} %"
                L.append(f"| {s} | {h.get('unanswerable', '–')} | {hr} | {fa} | {rows} |")
        else:
            L.append("No hallucination data: the test set has no unanswerable items and no abstention metric rows.")
        L.append("")
        if a.forgetting:
            L += ["| fine-tuned arm | base | probe deltas | mean delta |", "|---|---|---|---|"]
            for s, fg in a.forgetting.items():
                ds = ", ".join(f"{k} {v:+.3f}" + (f" [{fg['ci'][k][0]:+.3f}, {fg['ci'][k][1]:+.3f}]"
                                                   if fg.get("ci", {}).get(k, (None,))[0] is not None else "")
                               for k, v in fg["deltas"].items())
                md_ = "–" if fg["mean_delta"] is None else f"{fg['mean_delta']:+.3f}"
                L.append(f"| {s} | {fg['base']} | {ds} | {md_} |")
            L.append("\nMean delta: signed so that negative means forgetting (lower-is-better probes flipped; "
                     "perplexity left out of the mean when accuracy probes exist).")
        else:
            L.append("No forgetting data: no probe rows (kind == 'probe') for a fine-tuned arm and its base.")
        # retrieval
        L += ["", "### Retrieval", ""]
        if a.retrieval:
            L += ["| strategy | k | recall@k | MRR | retrieved & right | retrieved & wrong | missed & right | missed & wrong |",
                  "|---|---|---|---|---|---|---|---|"]
            for s, rt in a.retrieval.items():
                cl = rt.get("classes") or {}
                L.append(f"| {s} | {rt.get('k')} | {num(rt.get('recall_at_k'))} | {num(rt.get('mrr'))} | "
                         f"{cl.get('retrieved_right', 0)} | {cl.get('retrieved_wrong', 0)} | {cl.get('missed_right', 0)} | "
                         f"{cl.get('missed_wrong', 0)} |")
            L.append(f"\nAn answer counts as right when its {a.metric} is at least 0.5.")
        else:
            L.append("No retrieval arm recorded retrieved documents for this task.")
        for o in a.oracle:
            L.append("")
            L.append(_oracle_text(a, o))
        # strata
        if a.strata:
            labels = sorted({st for d in a.strata.values() for st in d})
            L += ["", "### Per stratum", "", "| strategy | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
            for s, d in a.strata.items():
                cells = [f"{num(d[st]['value'])} [{num(d[st]['ci_low'])}, {num(d[st]['ci_high'])}] n={d[st]['n']}"
                         if st in d else "–" for st in labels]
                L.append(f"| {s} | " + " | ".join(cells) + " |")
        L += ["", "### Plots", ""]
        if a.task not in plots:
            L.append("- plots were not drawn for this rendering (plots=False).")
        for name, (path, note) in plots.get(a.task, {}).items():
            if path is not None:
                rel = Path(path).relative_to(run_dir).as_posix()
                L.append(f"![{a.task} {name}]({rel})")
                L.append("")
            else:
                L.append(f"- {note}.")
        L.append("")
    L += ["## Target model", ""]
    L += (["```", estimate_text, "```"] if estimate_text else
          ["No `target_model` in the run config; set one (e.g. `target_model: llama-3-8b`) for a GPU memory and time "
           "estimate, or run `bench estimate --model llama-3-8b --strategy qlora`."])
    L += ["", "---", f"Rendered by `bench report {run_dir}` from rows.jsonl and cells/ (no model calls). "
          "Load the rows with `pd.read_json(run_dir / 'rows.jsonl', lines=True)`."]
    return "\n".join(L) + "\n"


def _language_notes(run: Run) -> dict[str, list[str]]:
    """Per task, what the language check says of the base model's zero-shot answers when not ok
    (output in the wrong script, an echo of the prompt, scores at the floor)."""
    notes: dict[str, list[str]] = {}
    for c in check_run(run):
        if c.get("verdict") != "ok" and c.get("message"):
            notes.setdefault(c["task"], [])
            if c["message"] not in notes[c["task"]]:
                notes[c["task"]].append(c["message"])
    return notes


def _oracle_text(a: TaskAnalysis, o: dict) -> str:
    c = o["oracle_minus_rag"]
    if c.diff is None or c.ci_low is None:
        return f"{o['rag']} vs {o['oracle']}: no paired items."
    head = (f"**{o['rag']} vs {o['oracle']}** (gold documents given): oracle − rag = {c.diff:+.3f} "
            f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]. ")
    nc = o.get("oracle_minus_no_context")
    if c.significant and c.diff > 0:
        return head + "Retrieval is losing answers the reader could give: improve retrieval (k, chunking, embedder) first."
    if nc is not None and nc.diff is not None and nc.ci_low is not None and not (nc.significant and nc.diff > 0):
        return head + (f"Even the gold documents do not help over {o['no_context']} ({nc.diff:+.3f} "
                       f"[{nc.ci_low:+.3f}, {nc.ci_high:+.3f}]): the reader cannot use context; a better retriever will not help.")
    return head + "Retrieval is not the bottleneck: the retrieved passages serve the reader about as well as the gold ones."


# ---------------------------------------------------------------------------------------------
def markdown_to_html(md: str, title: str = "bench report") -> str:
    """The few markdown constructs the report uses, as a standalone HTML page."""
    def inline(t: str) -> str:
        t = html.escape(t, quote=False)
        t = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', t)
        t = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)
        t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
        t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
        return t

    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            block = []
            while j < len(lines) and not lines[j].startswith("```"):
                block.append(lines[j])
                j += 1
            out.append("<pre>" + html.escape("\n".join(block)) + "</pre>")
            i = j + 1
            continue
        m = re.match(r"(#{1,6}) (.*)", line)
        if m:
            n = len(m.group(1))
            out.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= set("-:") for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in rows[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")
            continue
        elif re.match(r"\s*- ", line):
            items = []
            while i < len(lines) and re.match(r"\s*- ", lines[i]):
                depth = (len(lines[i]) - len(lines[i].lstrip())) // 2
                items.append((depth, lines[i].strip()[2:]))
                i += 1
            out.append("<ul>" + "".join(f'<li style="margin-left:{2 * d}em">{inline(t)}</li>' for d, t in items) + "</ul>")
            continue
        elif line.strip() == "---":
            out.append("<hr>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}table{border-collapse:collapse;"
             "font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}pre{background:#f4f4f4;padding:1em}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


CSV_COLUMNS = ["task", "strategy", "family", "metric", "value", "ci_low", "ci_high", "seeds", "seed_sd", "diff_vs_best",
               "diff_ci_low", "diff_ci_high", "p_value", "verdict", "recommended", "n", "n_failed", "setup_seconds",
               "train_seconds", "index_seconds", "prep_seconds", "train_device", "latency_p50_s", "latency_p95_s",
               "query_seconds", "prompt_tokens", "completion_tokens", "samples_per_query", "peak_rss_mb", "peak_cuda_mb",
               "trainable_params", "total_params", "trainable_share", "adapter_bytes", "index_bytes", "setup_usd_est",
               "per_1k_queries_usd_est", "per_1k_at_volume_usd_est"]


def render_csv(analyses: list[TaskAnalysis], decisions: dict[str, dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for a in analyses:
        for r in a.ordered():
            c = a.vs_best.get(r.strategy)
            g = r.ledger
            row: dict[str, Any] = {
                "task": a.task, "strategy": r.strategy, "family": r.family, "metric": a.metric, "value": r.value,
                "ci_low": r.ci_low, "ci_high": r.ci_high, "seeds": r.seeds, "seed_sd": r.seed_std,
                "diff_vs_best": None if c is None or c.diff is None else -c.diff,
                "diff_ci_low": None if c is None or c.ci_high is None else -c.ci_high,  # of strategy - best
                "diff_ci_high": None if c is None or c.ci_low is None else -c.ci_low,
                "p_value": None if c is None else c.p_value, "verdict": _verdict(a, r.strategy).strip("*"),
                "recommended": decisions.get(a.task, {}).get("strategy") == r.strategy, "n": r.n, "n_failed": r.n_failed,
                "setup_seconds": g.setup_seconds, "train_seconds": g.train_seconds, "index_seconds": g.index_seconds,
                "prep_seconds": g.prep_seconds, "train_device": g.train_device, "latency_p50_s": g.latency_p50_s,
                "latency_p95_s": g.latency_p95_s, "query_seconds": g.query_seconds, "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens, "samples_per_query": g.samples_per_query,
                "peak_rss_mb": g.peak_rss_mb, "peak_cuda_mb": g.peak_cuda_mb, "trainable_params": g.trainable_params,
                "total_params": g.total_params, "trainable_share": g.trainable_share, "adapter_bytes": g.adapter_bytes,
                "index_bytes": g.index_bytes, "setup_usd_est": r.money.setup, "per_1k_queries_usd_est": r.money.per_1k,
                "per_1k_at_volume_usd_est": cost_at(r, a.volume),
            }
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()
