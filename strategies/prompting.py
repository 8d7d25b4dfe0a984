"""The prompting family: zero-shot, few-shot, chain of thought, self-consistency.

Each prompting strategy turns one example (plus any passages a retriever found) into an answer with
`ctx.generate`; none of them touches weights. Exemplars come from the task's train split only.

    bench run --strategy zero_shot,few_shot,cot,self_consistency
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from bench.metrics.text import rouge_f
from bench.models.embedders import load_embedder
from bench.prompts import build_messages, extract_answer, format_query
from bench.registry import STRATEGIES
from bench.seeding import rng
from bench.textnorm import normalize_answer
from bench.types import Example, Prediction
from strategies.base import PromptingStrategy


def _info(passages: Optional[Sequence]) -> dict:
    return {"retrieved": [p.doc_id for p in passages]} if passages is not None else {}


@STRATEGIES.register("zero_shot")
class ZeroShot(PromptingStrategy):
    name = "zero_shot"
    description = "the question alone (plus the task instruction), greedy"

    def predict(self, example, ctx, passages=None):
        gen = ctx.generate(build_messages(ctx.task, example, passages=passages))
        return Prediction(example.id, gen.output.strip(), [gen], info=_info(passages))


@dataclass(frozen=True)
class FewShotParams:
    k: int = 3
    selection: str = "random"  # random (seeded per example) | similar (embedding nearest neighbours)
    embedder: str = "all-minilm-l6-v2"

    def validate(self):
        if self.k < 1:
            return f"k must be >= 1, got {self.k}"
        if self.selection not in ("random", "similar"):
            return f"selection must be random or similar, got {self.selection!r}"
        return None


@STRATEGIES.register("few_shot")
class FewShot(PromptingStrategy):
    name = "few_shot"
    description = "k exemplars from the train split (seeded random, or most similar by embedding)"
    Params = FewShotParams

    def prepare(self, ctx):
        self._pool = list(ctx.task.train)
        self._vecs = None
        if self.params.selection == "similar" and self._pool:

            self._embedder = load_embedder(self.params.embedder)
            self._vecs = self._embedder.encode([format_query(e) for e in self._pool])

    def exemplars(self, example: Example, ctx) -> list[Example]:
        pool = [e for e in self._pool if e.id != example.id]
        k = min(self.params.k, len(pool))
        if self._vecs is not None:

            q = self._embedder.encode([format_query(example)])[0]
            sims = self._vecs @ q
            order = [i for i in np.argsort(-sims, kind="stable") if self._pool[i].id != example.id]
            # most similar last, nearest to the question
            return [self._pool[i] for i in order[:k]][::-1]
        return rng(ctx.seed, "few_shot", example.id).sample(pool, k)

    def predict(self, example, ctx, passages=None):
        shots = self.exemplars(example, ctx)
        gen = ctx.generate(build_messages(ctx.task, example, exemplars=shots, passages=passages))
        info = {**_info(passages), "exemplars": [e.id for e in shots]}
        return Prediction(example.id, gen.output.strip(), [gen], info=info)


@dataclass(frozen=True)
class CotParams:
    max_new_tokens: int = 256  # reasoning needs room before the answer line

    def validate(self):
        return None if self.max_new_tokens >= 16 else f"max_new_tokens must be >= 16, got {self.max_new_tokens}"


@STRATEGIES.register("cot")
class ChainOfThought(PromptingStrategy):
    name = "cot"
    description = "reason step by step, then a final 'Answer:' line that is extracted"
    Params = CotParams

    def predict(self, example, ctx, passages=None):
        gen = ctx.generate(
            build_messages(ctx.task, example, passages=passages, cot=True),
            ctx.gen_params(max_new_tokens=self.params.max_new_tokens),
        )
        answer, found = extract_answer(gen.output)
        return Prediction(example.id, answer, [gen], info={**_info(passages), "answer_line": found})


@dataclass(frozen=True)
class SelfConsistencyParams:
    n: int = 5
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 256

    def validate(self):
        if self.n < 1:
            return f"n must be >= 1, got {self.n}"
        if self.temperature <= 0:
            return f"temperature must be > 0 for sampled chains, got {self.temperature}"
        return None


def medoid(texts: list[str], language: str) -> int:
    """Index of the text with the highest mean ROUGE-L to the others (long-form 'majority')."""

    if len(texts) <= 2:
        return 0
    totals = [sum(rouge_f(a, b, language)["rougeL"] for j, b in enumerate(texts) if j != i) for i, a in enumerate(texts)]
    return int(np.argmax(totals))


@STRATEGIES.register("self_consistency")
class SelfConsistency(PromptingStrategy):
    name = "self_consistency"
    description = "n sampled chains of thought; majority vote (qa) or ROUGE-L medoid (generation)"
    Params = SelfConsistencyParams

    def predict(self, example, ctx, passages=None):
        p = self.params
        params = ctx.gen_params(temperature=p.temperature, top_p=p.top_p, max_new_tokens=p.max_new_tokens)
        messages = build_messages(ctx.task, example, passages=passages, cot=True)
        gens = [ctx.generate(messages, params, sample=i) for i in range(p.n)]
        answers = [extract_answer(g.output)[0] for g in gens]
        if ctx.task.kind == "qa":
            norm = [normalize_answer(a, ctx.task.language) for a in answers]
            votes = Counter(n for n in norm if n)
            if votes:
                top, count = votes.most_common(1)[0]
                chosen = norm.index(top)
            else:
                chosen, count = 0, 0
            info = {"votes": count, "n": p.n}
        else:
            chosen = medoid(answers, ctx.task.language)
            info = {"medoid": chosen, "n": p.n}
        return Prediction(example.id, answers[chosen], gens, info={**_info(passages), **info})
