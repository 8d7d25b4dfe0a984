"""SliCK known/unknown strata: how well did the base model already know each test item?

Gekhman et al. (EMNLP 2024) showed fine-tuning on *unknown* facts raises hallucination on known
ones, so every metric is worth reading per stratum. Each answerable test item is asked of the base
model with few-shot prompts: `n_greedy` different exemplar sets decoded greedily, and `n_samples`
sampled answers (temperature 0.5). With P_greedy and P_sample the shares of correct answers:

  highly_known  P_greedy = 1            maybe_known  0 < P_greedy < 1
  weakly_known  P_greedy = 0, P_sample > 0          unknown  P_greedy = 0, P_sample = 0

Unanswerable items get the stratum "unanswerable". Every call goes through `ctx.generate` (the
generation cache), so labelling a task twice costs nothing. `metrics_by_stratum` splits the
per-example scores of a cell (scores.jsonl records) by these labels.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from bench.errors import BenchError
from bench.metrics.base import references
from bench.metrics.choice import decision
from bench.metrics.scoring import aggregate
from bench.metrics.text import rouge_f
from bench.prompts import build_messages
from bench.seeding import rng
from bench.stats import bootstrap_ci
from bench.textnorm import normalize_answer
from bench.types import Call, Example, Measure, Task

STRATA = ("highly_known", "maybe_known", "weakly_known", "unknown", "unanswerable")


def is_correct(answer: str, example: Example, task: Task) -> bool:
    """Closed answer set (`label`): the first option word equals the label; QA: a normalised reference equals
    or is contained in the answer's first line; generation: ROUGE-L >= 0.5."""
    if example.get("label") is not None:

        options = list(example.get("options") or ("yes", "no", "maybe"))
        got = decision(answer, options, task.language)
        return got is not None and normalize_answer(got) == normalize_answer(str(example.get("label")))
    if task.kind == "generation":
        return max(rouge_f(answer, r, task.language)["rougeL"] for r in references(example)) >= 0.5
    first = next((ln for ln in answer.strip().splitlines() if ln.strip()), "")
    pred = f" {normalize_answer(first, task.language)} "
    for ref in references(example):
        r = normalize_answer(ref, task.language)
        if r and (pred.strip() == r or f" {r} " in pred):
            return True
    return False


def stratum(p_greedy: float, p_sample: float) -> str:
    if p_greedy >= 1.0:
        return "highly_known"
    if p_greedy > 0.0:
        return "maybe_known"
    return "weakly_known" if p_sample > 0.0 else "unknown"


def slick_strata(task: Task, ctx, n_samples: int = 4, n_greedy: int = 4, k_shots: int = 4, temperature: float = 0.5,
                 limit: Optional[int] = None, examples: Optional[list[Example]] = None) -> dict[str, str]:
    """{example_id: stratum} for the test items of `task` (first `limit` items if given), or for `examples`
    (e.g. training items, whose exemplars then never include the item itself), on ctx's base model.
    Every call of every item goes to the backend in one batch (cached answers skipped)."""
    if n_samples < 0 or n_greedy < 1 or k_shots < 0:
        raise BenchError(f"slick_strata: need n_greedy >= 1, n_samples >= 0, k_shots >= 0 "
                         f"(got {n_greedy}, {n_samples}, {k_shots})")
    pool = [e for e in task.train if e.answerable]
    if k_shots and not pool:
        raise BenchError(f"task {task.name}: SliCK needs answerable train items for few-shot exemplars")
    if dataclasses.is_dataclass(ctx) and hasattr(ctx, "strategy_key"):
        ctx = dataclasses.replace(ctx, strategy_key=f"slick:k{k_shots}")
    if examples is None:
        examples = list(task.test[:limit] if limit else task.test)
    out: dict[str, str] = {}
    calls: list[Call] = []
    plan: list[tuple[Example, int]] = []  # (item, calls of it) for the answerable items, in order
    greedy = ctx.gen_params(temperature=0.0, max_new_tokens=48)
    sampled = ctx.gen_params(temperature=temperature, top_p=1.0, max_new_tokens=48)
    for ex in examples:
        if not ex.answerable:
            out[ex.id] = "unanswerable"
            continue
        others = [e for e in pool if e.id != ex.id]
        shot_sets = [rng(ctx.seed, "slick", ex.id, i).sample(others, min(k_shots, len(others))) for i in range(n_greedy)]
        calls += [Call(tuple(build_messages(task, ex, exemplars=shots)), greedy) for shots in shot_sets]
        calls += [Call(tuple(build_messages(task, ex, exemplars=shot_sets[0])), sampled, sample=s)
                  for s in range(n_samples)]
        plan.append((ex, n_greedy + n_samples))
    gens = ctx.generate_many(calls, desc="SliCK labels") if calls else []
    at = 0
    for ex, n in plan:
        mine = gens[at: at + n]
        at += n
        ok = [g.error is None and is_correct(g.output, ex, task) for g in mine]
        out[ex.id] = stratum(sum(ok[:n_greedy]) / n_greedy, sum(ok[n_greedy:]) / n_samples if n_samples else 0.0)
    return out


def metrics_by_stratum(records: list[dict], strata: dict[str, str], seed: int = 0) -> dict[str, dict[str, dict]]:
    """{stratum: {metric: {value, n, ci_low, ci_high}}} from scores.jsonl records (mean of per-example values).

    Items with no stratum are grouped under "unlabelled". Family-level aggregates (abstention precision)
    are not recomputed here: read those from rows.jsonl.
    """
    groups: dict[str, dict[str, list]] = {}
    for rec in records:
        st = strata.get(rec.get("example_id"), "unlabelled")
        for metric, v in (rec.get("scores") or {}).items():
            groups.setdefault(st, {}).setdefault(metric, []).append(v)
    out: dict[str, dict[str, dict]] = {}
    for st in [*STRATA, "unlabelled"]:
        if st not in groups:
            continue
        out[st] = {}
        for metric, vals in sorted(groups[st].items()):
            ok = [v for v in vals if v is not None]
            lo, hi = bootstrap_ci(ok, seed=seed)
            out[st][metric] = {"value": sum(ok) / len(ok) if ok else None, "n": len(ok), "n_failed": len(vals) - len(ok),
                               "ci_low": lo, "ci_high": hi}
    return out


def stratum_measures(task: Task, examples: list[Example], per_example: list[dict[str, dict]], strata: dict[str, str],
                     seed: int = 0) -> list[Measure]:
    """aggregate()'s Measures once per stratum (kind="stratum"), with each metric's own aggregate
    (so abstention precision is right within a stratum)."""
    out: list[Measure] = []
    for st in STRATA:
        idx = [i for i, ex in enumerate(examples) if strata.get(ex.id) == st]
        if idx:
            out += aggregate(task, [examples[i] for i in idx], [per_example[i] for i in idx], seed=seed, stratum=st)
    return out
