"""General probes run on the base model and on every adapted model: did adaptation break anything?

Forgetting is measured on fixed sets the task never touches: multiple choice by log-likelihood on a
stratified MMLU subset, TOFU world facts and real authors (gold vs perturbed answers), RuBQ (Russian
factoid questions with distractors), and perplexity on a held-out general English text. Only
`backend.loglikelihood(context, continuation)` and `backend.count_tokens` are used, so any backend
that scores continuations (llama.cpp with logits_all, transformers) can be probed.

    results = run_probes(ctx, "default")       # one dict per probe metric, with per-item values
    deltas = probe_deltas(base_rows, rows)     # adapted minus base, paired bootstrap 95 % CI

Results are cached per (backend.model_id, backend name, probe set, data hash) under <cache_dir>/probes/, so each
model is probed once however many cells share it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

from bench.hashing import sha256_json
from bench.models.endpoint import EndpointUnavailable
from bench.run.probes.delta import probe_delta, probe_deltas  # noqa: F401
from bench.run.probes.scoring import mc_item, perplexity, perplexity_chunk
from bench.run.probes.sets import PROBES, SETS, resolve  # noqa: F401
from bench.stats import bootstrap_ci, bootstrap_ci_stat

VERSION = "2"  # 2: keyed by backend name


def _result(metric: str, value, items: list[dict], higher: bool, ci: tuple, n_failed: int = 0, **extra) -> dict:
    """One probe's result as cached (per-item values included; bench.run.probes.hook makes Measures of it)."""
    return {"metric": metric, "value": value, "n": len(items), "n_failed": n_failed,
            "ci_low": ci[0], "ci_high": ci[1], "higher_is_better": higher, "items": items, **extra}


def _cache_path(ctx, key: str) -> Optional[Path]:
    cfg = getattr(ctx, "config", None)
    if cfg is None or not hasattr(cfg, "resolved_cache_dir"):
        return None
    return Path(cfg.resolved_cache_dir()) / "probes" / f"{key}.json"


def run_probes(ctx, which: str | dict = "default", *, use_cache: bool = True,
               context: Optional[Callable[[str], str]] = None, context_key: str = "") -> list[dict]:
    """Probe results for the model behind `ctx.backend` (see module docstring). Per-item failures are counted.

    context: for an arm that retrieves, a function giving the text placed before each multiple-choice
    question (the passages its retriever finds for it), so that what retrieval does to unrelated
    answers is measured too; context_key identifies it in the cache. Perplexity is a property of the
    model alone and is left out then. A backend that cannot score continuations (NotImplementedError,
    e.g. an endpoint whose server gives no usable log-probabilities) gives no probe results at all.
    """
    sets = resolve(which)
    if context is not None:
        sets = {p: items for p, items in sets.items() if PROBES[p][2] == "mc"}
    backend = ctx.backend
    model_id = getattr(backend, "model_id", "unknown")
    # keyed by backend too: llama.cpp (quantized weights) and transformers score the same model differently
    key = sha256_json([VERSION, model_id, getattr(backend, "name", "?"), context_key,
                       {p: [i["id"] for i in items] for p, items in sets.items()}])[:24]
    path = _cache_path(ctx, key) if use_cache else None
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            pass
    rows: list[dict] = []
    for probe, items in sets.items():
        _, lang, kind = PROBES[probe]
        t0 = time.perf_counter()
        done, failed = [], 0
        for it in items:
            try:
                done.append(mc_item(backend, it, lang, context) if kind == "mc" else perplexity_chunk(backend, it))
            except NotImplementedError:  # this backend cannot score continuations: no probes for this model
                return []
            except EndpointUnavailable:  # the server is gone: stop the cell, cache nothing
                raise
            except Exception:  # noqa: BLE001 - a prompt too long or a backend hiccup is counted, not fatal
                failed += 1
        secs = round(time.perf_counter() - t0, 3)
        if kind == "mc":
            vals = [d["correct"] for d in done]
            value = sum(vals) / len(vals) if vals else None
            items_out = [{"id": d["id"], "value": d["correct"], "margin": round(d["margin"], 4)} for d in done]
            rows.append(_result(f"probe_{probe}_acc", value, items_out, True, bootstrap_ci(vals), failed,
                             language=lang, seconds=secs, chance=round(sum(1 / len(i["choices"]) for i in items) / max(1, len(items)), 4)))
        else:
            value = perplexity(done)
            items_out = [{"id": d["id"], "value": d["loglik"], "tokens": d["tokens"]} for d in done]
            ci = bootstrap_ci_stat(done, lambda rs: perplexity(list(rs)), n_boot=500) if len(done) > 1 else (None, None)
            rows.append(_result(f"probe_{probe}_perplexity", value, items_out, False, ci, failed, language=lang, seconds=secs))
    for r in rows:
        r["model_id"] = model_id
        r["probe_set"] = which if isinstance(which, str) else "custom"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
    return rows
