"""The three kinds of strategy and what each must implement.

A run names strategies like `zero_shot`, `rag+cot` or `lora+rag`. Each part belongs to one family:

- prompting (`PromptingStrategy`): turns one example (plus any retrieved passages) into an answer by
  calling `ctx.generate`; exactly one per arm (zero_shot when none is named);
- retrieval (`RetrievalStrategy`): builds an index once per cell (`prepare`) and returns passages for
  each example (`retrieve`); at most one per arm;
- fine-tuning (`FinetuneStrategy`): trains on the task's train split once per cell (`adapt`) and
  returns the backend of the adapted model; at most one per arm.

Every strategy declares a frozen `Params` dataclass; the run config's `params.<name>` is checked
against it, and its values are part of every cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Optional, Sequence

from bench.prompts import PromptForm
from bench.types import Call, Doc, Example, Generation, Passage, Prediction, Task

if TYPE_CHECKING:
    from bench.models.backend import Backend
    from bench.run.context import CellContext


@dataclass(frozen=True)
class NoParams:
    """For strategies without settings."""


class Strategy:
    """A registered strategy. Attributes: `name` (the CLI name), `family` (prompting, retrieval or
    fine-tuning: set by the family base class, written into every row), `description` (one line for
    `bench ls strategies`), `Params` (a frozen dataclass of its settings; part of every cache key),
    `diagnostic` (it reads gold information, like rag_oracle: reported as a ceiling, never recommended)."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    diagnostic: ClassVar[bool] = False

    def __init__(self, params: Optional[object] = None):
        self.params = params if params is not None else self.Params()

    def reads(self, task: Task) -> tuple[str, ...]:
        """The parts of `task` besides its test items that this strategy reads ("train", "docs"): a finished
        cell is recomputed when one of them changes, and only then."""
        return ()

    def check(self, task: Task) -> Optional[str]:
        """Why this strategy cannot run on `task` (asked when the run is planned, before any model work), or None."""
        return None

    def tune_grid(self, task: Task) -> list[dict]:
        """Settings `--tune` tries for this strategy (each a dict of Params fields), on a validation split carved
        from train; [] = nothing to tune. Small on purpose: every candidate is a full evaluation."""
        return []


@dataclass(frozen=True)
class PromptParams:
    """Settings every prompting strategy has: the prompt form (bench.prompts.PromptForm)."""

    form: str = "auto"  # auto | chat | completion
    instruction: str = "system"  # where the task instruction goes: system | user

    def prompt_form(self) -> PromptForm:
        return PromptForm(self.form, self.instruction)

    def validate(self) -> Optional[str]:
        return self.prompt_form().problem()


class PromptingStrategy(Strategy):
    """Turns one example (plus any retrieved passages) into model calls, then the calls' outputs into an answer.

    The cell asks every item for its `calls` first and sends them all to the model at once (batched
    generation, generation cache first), then hands each item its generations in `answer`. The answer
    a strategy returns is the model's final text; bench.prompts.final_answer then extracts the scored
    answer the same way for every arm.
    """

    family = "prompting"
    Params: ClassVar[type] = PromptParams

    def prepare(self, ctx: "CellContext") -> None:
        """Once per cell, before the first example (e.g. embed the exemplar pool)."""

    def calls(self, example: Example, ctx: "CellContext", passages: Optional[Sequence[Passage]] = None) -> list[Call]:
        """The model calls this example needs; passages is None when the arm has no retriever."""
        raise NotImplementedError

    def answer(self, example: Example, ctx: "CellContext", passages: Optional[Sequence[Passage]],
               generations: Sequence[Generation]) -> Prediction:
        """The prediction for one example from the generations of its calls (in the order of `calls`)."""
        raise NotImplementedError

    def predict(self, example: Example, ctx: "CellContext", passages: Optional[Sequence[Passage]] = None) -> Prediction:
        """One example end to end (calls, generation, answer): for callers outside a cell."""
        return self.answer(example, ctx, passages, ctx.generate_many(self.calls(example, ctx, passages)))

    def tune_grid(self, task: Task) -> list[dict]:
        return [{"form": "auto", "instruction": "system"}, {"form": "completion", "instruction": "system"},
                {"form": "auto", "instruction": "user"}]


class RetrievalStrategy(Strategy):
    family = "retrieval"

    def prepare(self, ctx: "CellContext") -> None:
        """Build (or load from cache) the index over the task's docs; record its cost in ctx."""

    def retrieve(self, example: Example, ctx: "CellContext") -> list[Passage]:
        """The passages for one example, best first."""
        raise NotImplementedError

    def reads(self, task: Task) -> tuple[str, ...]:
        return ("docs",) if task.docs else ("train",)

    def tune_grid(self, task: Task) -> list[dict]:
        if not hasattr(self.params, "k"):
            return []
        retrievers = ("dense", "hybrid") if hasattr(self.params, "retriever") else ("auto",)
        return [{"k": k, "retriever": r} if r != "auto" else {"k": k} for r in retrievers for k in (2, 4, 8)]

    @staticmethod
    def corpus(ctx: "CellContext") -> list[Doc]:
        """The task's docs.jsonl, or its train split as documents when it has none (DESIGN.md)."""
        return corpus_of(ctx.task)

    def check(self, task: Task) -> Optional[str]:
        if not corpus_of(task):
            return f"strategy {self.name}: task {task.name} has no docs.jsonl and no train items to retrieve from"
        return None


def corpus_of(task: Task) -> list[Doc]:
    """What retrieval searches: the task's docs, or its train split as documents when it has none."""
    if task.docs:
        return list(task.docs)
    return [Doc(id=e.id, title=e.instruction, text=f"{e.input}\n{e.output}".strip()) for e in task.train]


class FinetuneStrategy(Strategy):
    family = "fine-tuning"
    LEARNING_RATES = (2e-4, 1e-3, 2e-3)  # what --tune tries (epochs follow from early stopping)

    def tune_grid(self, task: Task) -> list[dict]:
        if not hasattr(self.params, "learning_rate"):
            return []
        return [{"learning_rate": lr} for lr in self.LEARNING_RATES]

    def adapt(self, ctx: "CellContext") -> "Backend":
        """Train (or load the cached adapter), record costs in ctx, and return the adapted model."""
        raise NotImplementedError

