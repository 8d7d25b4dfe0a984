"""Training data: the task's train split rendered exactly as the model will see it at evaluation.

Each Alpaca item becomes the zero-shot chat prompt (bench.prompts.build_messages rendered with the
model's own template, or the plain ### Instruction template for base models) followed by the answer
and the end-of-turn token; loss is on the answer tokens only. The knowledge-injection recipes
(`recipe_records`) choose what trains: the pairs, the pairs with their generated paraphrases (train
items with `paraphrase_of`), the task's documents as plain text with loss on every token, or documents
then pairs; `token_budget` cycles the tokenized records to an exact number of training tokens so that
recipes compare at matched training tokens. A validation slice is carved from train with the cell's
seed, and the whole rendered set is hashed into the adapter cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.models.chat import ChatTemplate
from bench.prompts import build_messages
from bench.seeding import rng
from bench.types import Doc, Example, Task


@dataclass(frozen=True)
class Record:
    """One training sequence: `prompt` is context (no loss), `completion` is learned."""

    id: str
    prompt: str
    completion: str


def sft_records(task: Task, examples: Sequence[Example], template: ChatTemplate) -> list[Record]:
    end = template.eos_token if template.is_chat else ""
    out = []
    for ex in examples:
        prompt = template.render(build_messages(task, ex))
        out.append(Record(ex.id, prompt, ex.output.strip() + end))
    return out


PARAPHRASE_FIELD = "paraphrase_of"  # a train item that restates another (bench.synth.facts, `paraphrases: k`)


def is_paraphrase(example: Example) -> bool:
    return bool(example.get(PARAPHRASE_FIELD))


def recipe_uses_docs(recipe: str) -> bool:
    return recipe.startswith("docs")


def recipe_problem(recipe: str, task: Task) -> str | None:
    """Why `recipe` cannot train on `task` (no documents, no paraphrases), or None."""
    if recipe_uses_docs(recipe) and not task.docs:
        return f"recipe {recipe} trains on the documents, and task {task.name} has no docs.jsonl; use recipe qa"
    if recipe == "qa+paraphrases" and not any(is_paraphrase(e) for e in task.train):
        return (f"recipe qa+paraphrases: task {task.name} has no paraphrased training items (`{PARAPHRASE_FIELD}`); "
                "generate it with paraphrases > 0 or use recipe qa")
    return None


def recipe_split(recipe: str, examples: Sequence[Example], val_fraction: float, seed: int,
                 option: str = "val_fraction") -> tuple[list[Example], list[Example]]:
    """(train pairs, validation pairs) of a recipe. The validation slice is carved from the original items
    only, so it is the same for every recipe of a seed; qa+paraphrases adds the paraphrases of the
    training items (never of a validation item, which would leak it)."""
    originals = [e for e in examples if not is_paraphrase(e)]
    train, val = split_train_val(originals, val_fraction, seed, option=option)
    if recipe == "qa+paraphrases":
        ids = {e.id for e in train}
        train += [e for e in examples if is_paraphrase(e) and e.get(PARAPHRASE_FIELD) in ids]
    return train, val


def recipe_records(recipe: str, task: Task, train: Sequence[Example], template: ChatTemplate) -> list[Record]:
    """The training records of a recipe: documents (every token learned) first for docs and docs+qa, then the
    pairs (answer tokens learned) unless the recipe is docs alone."""
    records = doc_records(list(task.docs)) if recipe_uses_docs(recipe) else []
    if recipe != "docs":
        records += sft_records(task, train, template)
    return records


def token_budget(rows: Sequence[dict], budget: int, seed: int) -> list[dict]:
    """Tokenized rows cycled in seeded passes (each pass a new order) until they hold `budget` tokens;
    the last row is cut so the total is `budget`, unless the cut leaves it no learned token: then it is
    dropped and the total falls short by less than one row (a QA row cut before its answer teaches nothing)."""
    if budget <= 0 or not rows:
        return list(rows)
    out, total, k = [], 0, 0
    while total < budget:
        order = list(range(len(rows)))
        rng(seed, f"token-budget:{k}").shuffle(order)
        for i in order:
            r = rows[i]
            take = min(len(r["input_ids"]), budget - total)
            cut = {"input_ids": r["input_ids"][:take], "completion_mask": r["completion_mask"][:take]}
            if sum(cut["completion_mask"]):
                out.append(cut)
            total += take
            if total >= budget:
                break
        k += 1
    return out


def doc_records(docs: Sequence[Doc]) -> list[Record]:
    """Continued pretraining: each document is one sequence, every token learned."""
    return [Record(f"doc:{d.id}", "", f"{d.title.strip()}\n{d.text.strip()}".strip()) for d in docs]


def split_train_val(examples: Sequence[Example], val_fraction: float, seed: int,
                    option: str = "val_fraction") -> tuple[list[Example], list[Example]]:
    """A seeded validation slice of the train split (at least one item, leaving at least two to train)."""
    items = list(examples)
    if val_fraction <= 0:
        return items, []
    n_val = max(1, round(len(items) * val_fraction))
    if len(items) - n_val < 2:
        raise BenchError(
            f"params.{option}: the train split has {len(items)} examples, too few to hold out {n_val} for "
            f"validation and still train on 2; add training examples or set {option}: 0"
        )
    order = list(range(len(items)))
    rng(seed, "finetune-val").shuffle(order)
    val_idx = set(order[:n_val])
    return [e for i, e in enumerate(items) if i not in val_idx], [e for i, e in enumerate(items) if i in val_idx]


def tokenize(records: Sequence[Record], tokenizer: Any, max_length: int) -> list[dict]:
    """input_ids + completion_mask per record; the prompt keeps the tokenizer's BOS like generation does."""
    rows = []
    for r in records:
        p_ids = tokenizer(r.prompt, add_special_tokens=True)["input_ids"] if r.prompt else []
        c_ids = tokenizer(r.completion, add_special_tokens=not r.prompt)["input_ids"]
        ids = (p_ids + c_ids)[:max_length]
        mask = ([0] * len(p_ids) + [1] * len(c_ids))[:max_length]
        if sum(mask) == 0:  # the prompt alone fills max_length: nothing to learn from this item
            continue
        rows.append({"input_ids": ids, "completion_mask": mask})
    return rows


def records_hash(train: Sequence[Record], val: Sequence[Record]) -> str:
    return sha256_json({"train": [r.__dict__ for r in train], "val": [r.__dict__ for r in val]})
