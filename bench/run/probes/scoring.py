"""Probe scoring with nothing but `backend.loglikelihood(context, continuation)`.

Multiple choice: each option is scored (through `backend.loglikelihood_choices(context, options)`
when a backend offers it, which evaluates the shared context once; otherwise one call per option) as a continuation of "Question: …\\nAnswer:" and the option
with the highest log-likelihood per character wins (length-normalised, lm-eval's acc_norm), which
keeps a small model's bias towards short options out of the number. Perplexity: each chunk of the
held-out text is scored from an empty context; perplexity = exp(-Σ logp / Σ tokens).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

PROMPT = {"en": "Question: {q}\nAnswer:", "ru": "Вопрос: {q}\nОтвет:"}


def mc_item(backend, item: dict, language: str, prefix: Optional[Callable[[str], str]] = None) -> dict:
    """One multiple-choice item; `prefix(question)` is text shown before the question (retrieved passages)."""
    context = PROMPT[language].format(q=item["question"].strip())
    if prefix is not None:
        context = f"{prefix(item['question'].strip())}\n\n{context}"
    conts = [" " + str(c).strip() for c in item["choices"]]
    many = getattr(backend, "loglikelihood_choices", None)  # optional fast path: the context evaluated once
    lls = list(many(context, conts)) if callable(many) else [backend.loglikelihood(context, c) for c in conts]
    norm = [ll / max(1, len(str(c).strip()) + 1) for ll, c in zip(lls, item["choices"])]
    pred = max(range(len(norm)), key=lambda i: norm[i])
    gold = int(item["answer"])
    # margin: gold minus best wrong (normalised); > 0 means correct
    wrong = max(v for i, v in enumerate(norm) if i != gold)
    return {"id": item["id"], "correct": float(pred == gold), "pred": pred, "gold": gold,
            "gold_ll": lls[gold], "margin": norm[gold] - wrong}


def perplexity_chunk(backend, item: dict) -> dict:
    text = item["text"]
    ll = backend.loglikelihood("", text)
    n = max(1, backend.count_tokens(text))
    return {"id": item["id"], "loglik": ll, "tokens": n}


def perplexity(chunks: list[dict]) -> Optional[float]:
    toks = sum(c["tokens"] for c in chunks)
    if not toks:
        return None
    return math.exp(-sum(c["loglik"] for c in chunks) / toks)
