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
from bench.report.costs import break_even, fmt_volume
from bench.report.data import Run
from bench.report.decide import cost_at, hallucination_cost_line, headline
from bench.report.fmt import money, num, params, pval, signed
from bench.report.langcheck import check_run


def _hib(a: TaskAnalysis, metric: str) -> bool:
    for r in a.results.values():
        if metric in r.other:
            return bool(r.other[metric].get("higher_is_better", True))
    return True


def _served(r) -> str:
    return " ".join(x for x in (r.served.get("backend"), r.served.get("format")) if x) or "–"


def _ci(lo, hi) -> str:
    return f"[{num(lo)}, {num(hi)}]"


def _signed_ci(s) -> str:
    if s is None or s.diff is None:
        return "–"
    lo = "–" if s.ci_low is None else signed(s.ci_low)
    hi = "–" if s.ci_high is None else signed(s.ci_high)
    return f"{signed(s.diff)} [{lo}, {hi}]"


def _model_line(run: Run, analyses: list[TaskAnalysis]) -> str:
    manifest = run.manifest
    model, hw = manifest.get("model", {}), manifest.get("hardware", {})
    served = sorted({_served(r) for a in analyses for r in a.results.values() if r.served})
    how = f"served as {served[0]} for every arm" if len(served) == 1 else f"served as {', '.join(served)} (not alike!)"
    cpu = hw.get("cpu") or f"{hw.get('cpus', '?')} CPUs"
    return (f"Model **{model.get('name', '?')}** ({model.get('source', '')}), {how}; seeds {manifest.get('seeds')}; "
            f"{cpu}{', GPU ' + hw['cuda'] if hw.get('cuda') else ', no GPU'}; {_load_text(manifest)}.")


def _load_text(manifest: dict) -> str:
    """The load the cells were computed under: a resumed run that only reused cells does not replace it."""
    runs = manifest.get("invocations") or []
    computing = [r for r in runs if r.get("computed")]
    if not computing:
        return f"load average at start {(manifest.get('hardware') or {}).get('load_avg')}"
    text = "load average at start " + ", then ".join(str(r.get("load_avg")) for r in computing)
    if len(runs) > 1:
        text += (f" ({len(runs)} invocations of `bench run` on this folder, {len(computing)} of them computed cells; "
                 "each cell's cost.json has its own times)")
    return text


def render_markdown(run: Run, analyses: list[TaskAnalysis], decisions: dict[str, dict],
                    plots: dict[str, dict], estimate_text: Optional[str]) -> str:
    manifest, run_dir = run.manifest, run.folder
    prices = analyses[0].prices if analyses else {}
    volume = analyses[0].volume if analyses else 0
    L = [f"# bench report: {manifest.get('run_id', run_dir.name)}", "", _model_line(run, analyses), ""]
    if not manifest.get("finished"):
        L += ["**This run has not finished** (it was interrupted, or is still running): the report covers the cells "
              "complete so far. Run the same `bench run` again to finish it; finished cells are reused.", ""]
    L += ["## Decisions", ""]
    if not analyses:
        L += ["No task has a scored main metric in rows.jsonl: nothing to compare.", ""]
    language = _language_notes(run)
    for a in analyses:
        d = decisions[a.task]
        L.append(f"- {headline(a, d)}")
        for t in d.get("flips") or []:
            L.append(f"  - What would flip it: {t}.")
        for w in d.get("warnings") or []:
            L.append(f"  - Warning: {w}.")
        for note in language.get(a.task, []):
            L.append(f"  - Language: {note}")
        pick = d.get("strategy") or d.get("leader")
        h = a.hallucination.get(pick) if pick else None
        if h and h.get("unanswerable") and (h.get("rates") or {}).get("hallucination_rate"):
            r = h["rates"]["hallucination_rate"]
            L.append(f"  - Hallucination of `{pick}`: answers {r['value']:.0%} {_ci(r['ci_low'], r['ci_high'])} of "
                     f"{h.get('unanswerable')} unanswerable items anyway.")
        cost_line = hallucination_cost_line(a, d)
        if cost_line:
            L.append(f"  - Hallucination cost: {cost_line}.")
        fg = a.forgetting.get(pick) if pick else None
        if fg:
            L.append(f"  - Forgetting of `{pick}` against `{fg['base']}`: {fg['summary']}.")
    if analyses:
        v = analyses[0].verdict
        L += ["", f"How to read this: a strategy is recommended only when no cheaper arm is left unresolved and the pick "
              f"is within {v.margin} of every arm not shown worse (non-inferiority, 95 % family-wise over all arms of "
              f"a task; intervals are valid at any number of items{', looked at after every round' if v.sequential else ''}); "
              f"otherwise the verdict says how many items would settle it. Money is **estimated**: measured seconds x the "
              f"price sheet (GPU-hour ${prices.get('gpu_hour')}, CPU-hour ${prices.get('cpu_hour')}), one-off costs "
              f"spread over {fmt_volume(volume)} queries. Failed and empty answers count as wrong. The rule: "
              "bench/report/rule.py and docs/report.md.", ""]
    for a in analyses:
        L += _task_section(a, decisions[a.task], plots, run_dir)
    L += ["## Target model", ""]
    L += (["```", estimate_text, "```"] if estimate_text else
          ["No `target_model` in the run config; set one (e.g. `target_model: llama-3-8b`) for a GPU memory and time "
           "estimate, or run `bench estimate --model llama-3-8b --strategy qlora`."])
    L += ["", "---", f"Rendered by `bench report {run_dir.name}` from rows.jsonl and cells/ (no model calls). "
          "Load the rows with `pd.read_json(run_dir / 'rows.jsonl', lines=True)`."]
    return "\n".join(L) + "\n"


def _task_section(a: TaskAnalysis, d: dict, plots: dict, run_dir: Path) -> list[str]:
    v = a.verdict
    L = [f"## {a.task}", "",
         f"Main metric **{a.metric}** ({'higher' if a.higher_is_better else 'lower'} is better), per item with seeds "
         f"averaged and failed or empty answers scored 0; interval 95 %; vs leader: paired difference with its interval "
         f"at the family-wise level (one-sided {v.level:.4f} each end); p of the test behind the status, Bonferroni-"
         f"adjusted.", "",
         f"| strategy | family | served | {a.metric} | 95 % CI | vs leader `{v.leader}` | p adj. | status | n | failed / empty |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in a.ordered():
        s = v.comparisons.get(r.strategy)
        status = "**pick**" if r.strategy == d.get("strategy") else (s.status if s else ("diagnostic" if r.diagnostic else "–"))
        L.append(f"| {r.strategy} | {r.family} | {_served(r)} | {num(r.value)} | {_ci(r.ci_low, r.ci_high)} | "
                 f"{_signed_ci(s) if s and r.strategy != v.leader else '–'} | {pval(s.p_adjusted) if s else '–'} | "
                 f"{status} | {r.n} | {r.outcomes.get('failed', 0)} / {r.outcomes.get('empty', 0)} |")
    names = list(dict.fromkeys(m for r in a.ordered() for m in r.other))
    if len(names) > 1:
        L += ["", "### Every metric", "", "Mean over seeds; 95 % interval over test items (per seed, averaged).", "",
              "| strategy | " + " | ".join(f"{m} {'↑' if _hib(a, m) else '↓'}" for m in names) + " |",
              "|---|" + "---|" * len(names)]
        for r in a.ordered():
            cells = []
            for m in names:
                o = r.other.get(m)
                cells.append("–" if o is None else f"{num(o['value'])}" + (f" {_ci(o['ci_low'], o['ci_high'])}"
                                                                         if o["ci_low"] is not None else ""))
            L.append(f"| {r.strategy} | " + " | ".join(cells) + " |")
    L += ["", "### Costs", "",
          "| strategy | served | setup s (train / index / prep+export) | s per query (p50) | prompt tok | completion tok "
          "| peak MB | trainable params | setup $ | $ per 1k at volume |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in a.ordered():
        g = r.ledger
        setup = f"{g.setup_seconds:.1f} ({num(g.train_seconds, 1)} / {num(g.index_seconds, 1)} / {num(g.prep_seconds, 1)})"
        L.append(f"| {r.strategy} | {_served(r)} | {setup} | {num(g.latency_p50_s, 2)} | {num(g.prompt_tokens, 0)} | "
                 f"{num(g.completion_tokens, 0)} | {num(g.peak_rss_mb, 0)} | "
                 f"{params(g.trainable_params, g.trainable_share)} | {money(r.money.setup)} | {money(cost_at(r, a.volume))} |")
    L += _break_even(a, d)
    L += _tuned(a)
    L += _training(a)
    L += _hallucination(a)
    L += _forgetting(a)
    L += _retrieval(a)
    if a.strata:
        labels = sorted({st for x in a.strata.values() for st in x})
        L += ["", "### Per stratum", "", "| strategy | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for s, x in a.strata.items():
            cells = [f"{num(x[st]['value'])} {_ci(x[st]['ci_low'], x[st]['ci_high'])} n={x[st]['n']}"
                     if st in x else "–" for st in labels]
            L.append(f"| {s} | " + " | ".join(cells) + " |")
    L += ["", "### Plots", ""]
    if a.task not in plots:
        L.append("- plots were not drawn for this rendering (plots=False).")
    for name, (path, note) in plots.get(a.task, {}).items():
        if path is not None:
            L += [f"![{a.task} {name}]({Path(path).relative_to(run_dir).as_posix()})", ""]
        else:
            L.append(f"- {note}.")
    return L + [""]


def _break_even(a: TaskAnalysis, d: dict) -> list[str]:
    """Break-even of the pick (or leader) against every arm not shown worse: one compact table."""
    pick = d.get("strategy") or d.get("leader")
    if pick not in a.results:
        return []
    contenders = [s for s, st in a.verdict.comparisons.items() if s != pick and st.status not in ("worse", "diagnostic")
                  and s in a.results]
    if not contenders:
        return []
    L = ["", f"### Break-even of `{pick}`", "", "| against | one-off $ (pick / other) | $ per 1k queries (pick / other) "
         "| total cost equal at |", "|---|---|---|---|"]
    p = a.results[pick]
    for s in contenders:
        o = a.results[s]
        be = break_even(pick, p.money, s, o.money)
        at = fmt_volume(be.volume) + " queries" if be.kind == "crossover" else {
            "a_dominates": f"never: {pick} is never dearer", "b_dominates": f"never: {s} is never dearer",
            "equal": "always equal"}.get(be.kind, "–")
        L.append(f"| {s} | {money(p.money.setup)} / {money(o.money.setup)} | {money(p.money.per_1k)} / "
                 f"{money(o.money.per_1k)} | {at} |")
    return L


def _tuned(a: TaskAnalysis) -> list[str]:
    tuned = [r for r in a.ordered() if r.tuned]
    if not tuned:
        return []
    L = ["", "### Tuned settings", "", "Chosen per arm on a validation split carved from train (never test); the "
         "seconds are in the arm's one-off cost.", "", "| strategy | settings | validation items | seconds |",
         "|---|---|---|---|"]
    for r in tuned:
        chosen = "; ".join(f"{part}: " + ", ".join(f"{k}={v}" for k, v in kv.items())
                           for part, kv in (r.tuned.get("chosen") or {}).items()) or "the defaults"
        L.append(f"| {r.strategy} | {chosen} | {r.tuned.get('validation_items')} | {num(r.tuned.get('seconds'), 1)} |")
    return L


def _training(a: TaskAnalysis) -> list[str]:
    tuned = [r for r in a.ordered() if r.training]
    if not tuned:
        return []
    L = ["", "### Fine-tuning", "", "| strategy | epochs (best) | validation loss start → best | still improving at the end "
         "| answers changed vs base | merged GGUF = unmerged |", "|---|---|---|---|---|---|"]
    for r in tuned:
        t = r.training
        agree = "–" if t.get("merged_agreement") is None else f"{t['merged_agreement']:.0%}"
        changed = "–" if t.get("changed_vs_base") is None else f"{t['changed_vs_base']:.0f} of {t.get('integrity_prompts')}"
        L.append(f"| {r.strategy} | {t['epochs']:.2f} ({t['best_epoch']:.2f}) | {num(t.get('eval_loss_before'))} → "
                 f"{num(t.get('eval_loss_best'))} | {'**yes: undertrained**' if t.get('still_improving') else 'no'} | "
                 f"{changed}{' (**no effect**)' if t.get('no_effect') else ''} | {agree} |")
    return L


def _hallucination(a: TaskAnalysis) -> list[str]:
    if not a.hallucination and not a.support:
        return []
    L = ["", "### Hallucination and source support", ""]
    metrics = list(dict.fromkeys(m for s in (a.hallucination, a.support) for h in s.values()
                                 for m in (h.get("rates") or h)))
    if not metrics:
        return []
    L += ["| strategy | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for r in a.ordered():
        rates = {**(a.hallucination.get(r.strategy, {}).get("rates") or {}), **a.support.get(r.strategy, {})}
        cells = [f"{num(rates[m]['value'])} {_ci(rates[m]['ci_low'], rates[m]['ci_high'])}" if m in rates else "–"
                 for m in metrics]
        L.append(f"| {r.strategy} | " + " | ".join(cells) + " |")
    return L


def _forgetting(a: TaskAnalysis) -> list[str]:
    L = ["", "### Forgetting", ""]
    if not a.forgetting:
        return L + ["No probe deltas: run with --probes tiny|default|large to measure forgetting against the base."]
    metrics = list(dict.fromkeys(m for f in a.forgetting.values() for m in f["deltas"]))
    L += ["Each probe of each arm against the same arm without its fine-tune (paired over probe items; an accuracy "
          "interval narrower than ±0.05 resolves a 5-point change).", "",
          "| strategy | base | " + " | ".join(metrics) + " | verdict |", "|---|---|" + "---|" * len(metrics) + "---|"]
    for s, f in a.forgetting.items():
        cells = []
        for m in metrics:
            x = f["deltas"].get(m)
            cells.append("–" if x is None else f"{signed(x['delta'])} [{num(x['ci_low'])}, {num(x['ci_high'])}]")
        L.append(f"| {s} | {f['base']} | " + " | ".join(cells) + f" | {f['summary']} |")
    return L


def _retrieval(a: TaskAnalysis) -> list[str]:
    if not a.retrieval:
        return []
    L = ["", "### Retrieval", "", "| strategy | k | recall@k | MRR | retrieved & right | retrieved & wrong | "
         "missed & right | missed & wrong |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    for s, rt in a.retrieval.items():
        cl = rt.get("classes") or {}
        n, without = rt.get("n") or 0, rt.get("n_without_gold") or 0
        counts = [cl.get(o, 0) if n else "–" for o in ("retrieved_right", "retrieved_wrong", "missed_right", "missed_wrong")]
        L.append(f"| {s} | {rt.get('k')} | {num(rt.get('recall_at_k'))} | {num(rt.get('mrr'))} | "
                 + " | ".join(map(str, counts)) + " |")
        if not n:
            notes.append(f"`{s}`: none of its {without} retrievals is for an item that names its gold documents "
                         "(`doc_ids` in test.jsonl), so recall and the outcome classes cannot be measured here.")
        elif without:
            notes.append(f"`{s}`: recall and the classes count the items that name gold documents ({n}; "
                         f"{without} without them are left out).")
    L.append(f"\nAn answer counts as right when its {a.metric} is at least 0.5.")
    if notes:
        L += [""] + [f"- {x}" for x in notes]
    for o in a.oracle:
        L += ["", _oracle_text(a, o)]
    return L


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


CSV_COLUMNS = ["task", "strategy", "family", "served_backend", "served_format", "metric", "value", "ci_low", "ci_high",
               "seeds", "seed_sd", "diff_vs_leader", "diff_ci_low", "diff_ci_high", "p_adjusted", "status", "recommended",
               "n", "failed", "empty", "setup_seconds", "train_seconds", "index_seconds", "prep_seconds", "train_device",
               "latency_p50_s", "latency_p95_s", "query_seconds", "prompt_tokens", "completion_tokens",
               "samples_per_query", "peak_rss_mb", "peak_cuda_mb", "trainable_params", "total_params", "trainable_share",
               "adapter_bytes", "index_bytes", "setup_usd_est", "per_1k_queries_usd_est", "per_1k_at_volume_usd_est"]


def render_csv(analyses: list[TaskAnalysis], decisions: dict[str, dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for a in analyses:
        for r in a.ordered():
            s = a.verdict.comparisons.get(r.strategy)
            g = r.ledger
            row: dict[str, Any] = {
                "task": a.task, "strategy": r.strategy, "family": r.family, "served_backend": r.served.get("backend"),
                "served_format": r.served.get("format"), "metric": a.metric, "value": r.value,
                "ci_low": r.ci_low, "ci_high": r.ci_high, "seeds": r.seeds, "seed_sd": r.seed_std,
                "diff_vs_leader": s.diff if s else None, "diff_ci_low": s.ci_low if s else None,
                "diff_ci_high": s.ci_high if s else None, "p_adjusted": s.p_adjusted if s else None,
                "status": s.status if s else None,
                "recommended": decisions.get(a.task, {}).get("strategy") == r.strategy, "n": r.n,
                "failed": r.outcomes.get("failed", 0), "empty": r.outcomes.get("empty", 0),
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
