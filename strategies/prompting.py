"""The prompting family: zero-shot, few-shot, chain of thought, self-consistency.

Each prompting strategy turns one example (plus any passages a retriever found) into model calls and
the calls' outputs into an answer; none of them touches weights. Exemplars come from the task's train
split only; when the arm retrieves, each exemplar carries its own passages (retrieved for the
exemplar's question by the same retriever), so the demonstrations show how to read passages.
Every strategy shares the prompt-form settings of `PromptParams` (chat or completion prompt, where
the instruction goes) and extracts its answer with bench.prompts.final_answer.

    bench run --strategy zero_shot,few_shot,cot,self_consistency
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from bench.metrics.text import rouge_f
from bench.models.embedders import load_embedder
from bench.prompts import build_messages, final_answer, format_query
from bench.registry import STRATEGIES
from bench.seeding import rng
from bench.textnorm import normalize_answer
from bench.types import Call, Example, Generation, Passage, Prediction
from strategies.base import PromptingStrategy, PromptParams


def _info(passages: Optional[Sequence[Passage]]) -> dict:
    return {"retrieved": [p.doc_id for p in passages]} if passages is not None else {}


def _single(example: Example, ctx, passages, gens: Sequence[Generation], cot: bool, **info) -> Prediction:
    """The prediction of a one-call strategy: the extracted answer, or a failure when the call failed."""
    (gen,) = gens
    if gen.error:
        return Prediction(example.id, None, list(gens), error=gen.error, info=_info(passages))
    answer, marked = final_answer(gen.output, ctx.task, cot=cot)
    return Prediction(example.id, answer, list(gens), info={**_info(passages), "answer_marker": marked, **info},
                      raw=gen.output)


@STRATEGIES.register("zero_shot")
class ZeroShot(PromptingStrategy):
    name = "zero_shot"
    description = "the question alone (plus the task instruction), greedy"

    def calls(self, example, ctx, passages=None):
        p = self.params
        return [Call(tuple(build_messages(ctx.task, example, passages=passages, form=p.prompt_form())), form=p.form)]

    def answer(self, example, ctx, passages, generations):
        return _single(example, ctx, passages, generations, cot=False)


@dataclass(frozen=True)
class FewShotParams(PromptParams):
    k: int = 3
    selection: str = "random"  # random (seeded per example) | similar (embedding nearest neighbours)
    embedder: str = "all-minilm-l6-v2"

    def validate(self):
        if self.k < 1:
            return f"k must be >= 1, got {self.k}"
        if self.selection not in ("random", "similar"):
            return f"selection must be random or similar, got {self.selection!r}"
        return super().validate()


@STRATEGIES.register("few_shot")
class FewShot(PromptingStrategy):
    name = "few_shot"
    description = ("k exemplars from the train split (seeded random, or most similar by embedding), each with its "
                   "own passages when the arm retrieves")
    Params = FewShotParams

    def reads(self, task):
        return ("train",)

    def tune_grid(self, task):
        shots = [{"k": k, "selection": sel} for sel in ("random", "similar") for k in (1, 3, 5)]
        return shots + [{**g, "k": self.params.k} for g in super().tune_grid(task)[1:]]

    def check(self, task):
        return None if task.train else f"strategy few_shot: task {task.name} has no train items to take exemplars from"

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

    def calls(self, example, ctx, passages=None):
        shots = self.exemplars(example, ctx)
        shot_passages = [ctx.passages_for(e) for e in shots] if passages is not None else None
        messages = build_messages(ctx.task, example, exemplars=shots, passages=passages,
                                  exemplar_passages=shot_passages, form=self.params.prompt_form())
        return [Call(tuple(messages), form=self.params.form)]

    def answer(self, example, ctx, passages, generations):
        return _single(example, ctx, passages, generations, cot=False,
                       exemplars=[e.id for e in self.exemplars(example, ctx)])


@dataclass(frozen=True)
class CotParams(PromptParams):
    max_new_tokens: int = 256  # reasoning needs room before the answer line

    def validate(self):
        if self.max_new_tokens < 16:
            return f"max_new_tokens must be >= 16, got {self.max_new_tokens}"
        return super().validate()


@STRATEGIES.register("cot")
class ChainOfThought(PromptingStrategy):
    name = "cot"
    description = "reason step by step, then a final 'Answer:' line that is extracted"
    Params = CotParams

    def calls(self, example, ctx, passages=None):
        p = self.params
        messages = build_messages(ctx.task, example, passages=passages, cot=True, form=p.prompt_form())
        return [Call(tuple(messages), ctx.gen_params(max_new_tokens=p.max_new_tokens), form=p.form)]

    def answer(self, example, ctx, passages, generations):
        return _single(example, ctx, passages, generations, cot=True)


@dataclass(frozen=True)
class SelfConsistencyParams(PromptParams):
    n: int = 5
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 256

    def validate(self):
        if self.n < 1:
            return f"n must be >= 1, got {self.n}"
        if self.temperature <= 0:
            return f"temperature must be > 0 for sampled chains, got {self.temperature}"
        return super().validate()


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

    def calls(self, example, ctx, passages=None):
        p = self.params
        params = ctx.gen_params(temperature=p.temperature, top_p=p.top_p, max_new_tokens=p.max_new_tokens)
        messages = tuple(build_messages(ctx.task, example, passages=passages, cot=True, form=p.prompt_form()))
        return [Call(messages, params, sample=i, form=p.form) for i in range(p.n)]

    def answer(self, example, ctx, passages, generations):
        ok = [g for g in generations if not g.error]
        if not ok:
            return Prediction(example.id, None, list(generations), error=generations[0].error, info=_info(passages))
        answers = [final_answer(g.output, ctx.task, cot=True)[0] for g in ok]
        if ctx.task.kind == "qa":
            norm = [normalize_answer(a, ctx.task.language) for a in answers]
            votes = Counter(n for n in norm if n)
            if votes:
                top, count = votes.most_common(1)[0]
                chosen = norm.index(top)
            else:
                chosen, count = 0, 0
            info = {"votes": count, "n": self.params.n}
        else:
            chosen = medoid(answers, ctx.task.language)
            info = {"medoid": chosen, "n": self.params.n}
        return Prediction(example.id, answers[chosen], list(generations), info={**_info(passages), **info},
                          raw=ok[chosen].output)
