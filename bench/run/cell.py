"""One cell of the grid: every test item of one task through one arm on one model under one seed.

`run_cell` reads top to bottom: adapt the model (fine-tuning) → forgetting probes → prepare retrieval
→ prepare prompting → answer every test item (generation cache first) → score → aggregate into Rows.
It touches no global state but the cache and the model pool it is handed, and writes no file: the
grid (or a remote executor's driver) writes the CellResult.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bench.config import RunConfig
from bench.errors import BenchError
from bench.logs import terminal
from bench.metrics import support
from bench.metrics.abstention import is_abstention
from bench.metrics.scoring import aggregate, score_prediction
from bench.models.resolve import ModelSpec
from bench.results import cell_id
from bench.run.cache import GenerationCache
from bench.run.context import CellContext
from bench.run.memory import PeakMemory
from bench.run.pipeline import Arm
from bench.run.pool import LazyBackend, ModelPool
from bench.run.probes.hook import probe_measures
from bench.run.strata import stratum_measures
from bench.stats import percentile
from bench.types import CellKey, Example, Measure, Prediction, Row, Task

COST_METRICS = ("latency_p50_s", "prompt_tokens_mean", "completion_tokens_mean")


@dataclass
class CellResult:
    """Everything a finished cell writes: rows, per-item generations and scores, costs, probe items."""

    cell_id: str
    rows: list[Row]
    generations: list[dict]
    scores: list[dict]
    cost: dict
    model_calls: int = 0
    probe_items: dict = field(default_factory=dict)  # per-item probe values, saved as probes.json
    files: dict = field(default_factory=dict)  # further files of the cell's folder: name -> bytes (loss log, plot)


def cell_key(task: Task, arm: Arm, model: ModelSpec, seed: int) -> CellKey:
    return CellKey(task=task.name, task_version=task.version, strategy=arm.name, family=arm.family,
                   model=model.name, model_sha256=model.short_id, seed=seed)


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    """A tqdm bar on the terminal (stderr), or the plain iterable when progress is off."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, mininterval=1.0, dynamic_ncols=True, file=terminal())


def run_cell(
    task: Task,
    arm: Arm,
    model: ModelSpec,
    config: RunConfig,
    *,
    seed: int,
    cache: GenerationCache,
    pool: ModelPool,
    progress: bool = False,
    strata: Optional[dict[str, str]] = None,
) -> CellResult:
    """Compute one cell: every test item of `task` (first `config.limit`) through `arm` on `model` with `seed`.

    strata: {example_id: SliCK stratum} from the base model, when the run asks for per-stratum rows.
    """
    t0 = time.perf_counter()
    base = LazyBackend(pool, model)
    ctx = CellContext(task=task, config=config, seed=seed, model=model, backend=base, cache=cache,
                      strategy_key=arm.key, progress=progress, model_loader=pool.get)
    calls_before = cache.misses
    key = cell_key(task, arm, model, seed)

    # 1. adapt the model (fine-tuning arms train or load a cached adapter)
    with PeakMemory() as peak:  # this cell's own peak, not the process's lifetime one
        try:
            if arm.finetune is not None:
                ctx.backend = arm.finetune.adapt(ctx)
            return _answer_and_score(task, arm, config, ctx, base, key, strata, cache, pool, calls_before, t0, peak)
        finally:
            if ctx.backend is not base:  # a fine-tuned model is loaded per cell: free it
                ctx.backend.close()


def _answer_and_score(task, arm, config, ctx, base, key, strata, cache, pool, calls_before, t0, peak) -> CellResult:
    """Steps 1b-5 of run_cell (split out so the adapted model is closed whatever happens)."""
    # 1b. forgetting probes on the (adapted) model, with paired deltas against the base model;
    #     cached by model_id, so prompting and retrieval arms reuse the base model's numbers
    probe_rows: list[Measure] = []
    probe_items: dict = {}
    if config.probes != "none":

        probe_rows, probe_items = probe_measures(ctx, config.probes, base_backend=base)
    # 2. prepare retrieval (build or load the index) and 3. prompting (e.g. exemplar embeddings)
    if arm.retrieval is not None:
        arm.retrieval.prepare(ctx)
    arm.prompting.prepare(ctx)

    # 4. answer every test item: each item's calls, all sent to the model together (cache first)
    ctx.retrieval = arm.retrieval
    examples = list(task.test[: config.limit] if config.limit else task.test)
    preds = answer_items(examples, arm, ctx, f"{task.name}/{arm.name}")
    finish = getattr(arm.retrieval, "finish", None)
    if finish:
        finish(ctx)

    # 5. score and aggregate (the optional NLI support check follows the run's config)
    support.configure(nli_model=config.support.nli_model)
    per_example = [score_prediction(p, ex, task) for p, ex in zip(preds, examples)]
    measures = aggregate(task, examples, per_example, seed=key.seed)

    generations, scores, latencies, ptoks, ctoks = [], [], [], [], []
    for p, ex, sc in zip(preds, examples, per_example):
        for i, g in enumerate(p.generations):
            generations.append({"example_id": ex.id, "sample": i, "prompt": g.prompt, "output": g.output,
                                "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                                "seconds": round(g.seconds, 4), "cached": g.cached, "finish_reason": g.finish_reason})
        if p.generations:
            latencies.append(sum(g.seconds for g in p.generations))
            ptoks.append(sum(g.prompt_tokens for g in p.generations))
            ctoks.append(sum(g.completion_tokens for g in p.generations))
        stratum = strata.get(ex.id, ex.stratum) if strata else ex.stratum
        scores.append({"example_id": ex.id, "answerable": ex.answerable, "stratum": stratum,
                       "doc_ids": list(ex.doc_ids), "reference": ex.output, "answer": p.answer, "raw": p.raw,
                       "outcome": outcome(p, task), "failed": p.answer is None, "error": p.error,
                       "scores": {k: v["value"] for k, v in sc.items()},
                       "reasons": {k: v["reason"] for k, v in sc.items()}, "info": p.info})
    n = max(len(examples), 1)
    per_query = {
        "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95),
        "prompt_tokens_mean": sum(ptoks) / n if ptoks else None,
        "completion_tokens_mean": sum(ctoks) / n if ctoks else None,
        "samples_per_query": sum(len(p.generations) for p in preds) / n,
        "model_calls": cache.misses - calls_before, "queries": len(examples),
        "failed": sum(p.answer is None for p in preds),
    }
    serving = ctx.costs.pop("serve", None) or pool.serving(ctx.model)
    cost = {**ctx.costs, "per_query": per_query, "memory": {"peak_rss_mb": peak.current_mb()},
            "serving": serving, "backend": serving["backend"], "outcomes": dict(Counter(outcome(p, task) for p in preds)),
            "wall_seconds": round(time.perf_counter() - t0, 3)}

    if strata:

        measures += stratum_measures(task, examples, per_example, strata, key.seed)
    measures += probe_rows
    measures += [Measure(metric=name, value=per_query[name], n=len(latencies), higher_is_better=False, kind="cost")
                 for name in COST_METRICS]
    files = {name: Path(path).read_bytes() for name, path in ctx.artifacts.items()}
    return CellResult(cell_id(key.task, key.strategy, key.model, key.seed), [Row(key, m) for m in measures],
                      generations, scores, cost, model_calls=per_query["model_calls"], probe_items=probe_items,
                      files=files)


def answer_items(examples: list[Example], arm: Arm, ctx: CellContext, desc: str) -> list[Prediction]:
    """Predictions for `examples`: retrieve, collect every item's calls, generate them in one batch, answer.

    An item whose retrieval or prompt fails (a BenchError, e.g. a prompt longer than the context) is a
    failed prediction, counted and never scored as zero; the other items go on.
    """
    planned: list[tuple[Example, Optional[list], list, Optional[str]]] = []
    for ex in examples:
        try:
            passages = arm.retrieval.retrieve(ex, ctx) if arm.retrieval is not None else None
            planned.append((ex, passages, arm.prompting.calls(ex, ctx, passages), None))
        except BenchError as e:
            planned.append((ex, None, [], str(e)))
    gens = ctx.generate_many([c for _, _, calls, _ in planned for c in calls], desc=desc)
    preds, at = [], 0
    for ex, passages, calls, error in planned:
        mine, at = gens[at:at + len(calls)], at + len(calls)
        if error is not None:
            pred = Prediction(ex.id, None, error=error)
        else:
            pred = arm.prompting.answer(ex, ctx, passages, mine)
        if passages:
            pred.sources = tuple(p.text for p in passages)
        preds.append(pred)
    return preds


def outcome(pred: Prediction, task: Task) -> str:
    """answered, abstained (a refusal phrase or the task's abstain_phrase), empty (no text), or failed."""
    if pred.answer is None:
        return "failed"
    if not pred.answer.strip():
        return "empty"
    return "abstained" if is_abstention(pred.answer, task.language, (task.abstain_phrase,)) else "answered"
