"""Training data: the task's train split rendered exactly as the model will see it at evaluation.

Each Alpaca item becomes the zero-shot chat prompt (bench.prompts.build_messages rendered with the
model's own template, or the plain ### Instruction template for base models) followed by the answer
and the end-of-turn token; loss is on the answer tokens only. The continued-pretraining arm adds the
task's documents as plain text with loss on every token. A validation slice is carved from train
with the cell's seed, and the whole rendered set is hashed into the adapter cache key.
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
