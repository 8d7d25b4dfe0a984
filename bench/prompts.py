"""Building the chat messages of one query: task instruction, exemplars, passages, chain of thought.

Every strategy builds its prompt here so that arms differ only in what their channel adds (the
fairness rule of DESIGN.md): few-shot adds exemplar turns, rag adds numbered passages, cot adds the
reasoning instruction. The rendered string (model template applied) is what the cache keys on.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from bench.types import Example, Task

COT_INSTRUCTION = {
    "en": "Think step by step. Then write the final answer on its own last line, starting with 'Answer:'.",
    "ru": "Рассуждай по шагам. Затем напиши окончательный ответ отдельной последней строкой, начиная с 'Ответ:'.",
}
PASSAGES_INSTRUCTION = {
    "en": "Answer using only the numbered passages below. If they do not contain the answer, reply exactly: {abstain}",
    "ru": "Отвечай, используя только пронумерованные фрагменты ниже. Если в них нет ответа, ответь ровно: {abstain}",
}
ANSWER_LINE = re.compile(r"^\s*\**\s*(?:final\s+answer|answer|ответ|итоговый ответ)\s*\**\s*[:：]\s*(.+?)\s*$", re.I | re.M)


def _lang(task: Task) -> str:
    return "ru" if task.language.startswith("ru") else "en"


def format_query(example: Example) -> str:
    """The user turn of an Alpaca item: instruction, then input if any (also what retrieval searches with)."""
    parts = [example.instruction.strip()]
    if example.input.strip():
        parts.append(example.input.strip())
    return "\n\n".join(p for p in parts if p)


NO_PASSAGES = {"en": "(no passages were found)", "ru": "(фрагменты не найдены)"}


def format_passages(passages: Sequence, task: Task) -> str:
    lines = [PASSAGES_INSTRUCTION[_lang(task)].format(abstain=task.abstain_phrase), ""]
    if not passages:
        lines.append(NO_PASSAGES[_lang(task)])
    for i, p in enumerate(passages, start=1):
        head = f"[{i}] {p.title}".rstrip()
        lines.append(f"{head}\n{p.text.strip()}\n")
    return "\n".join(lines).rstrip()


def build_messages(
    task: Task,
    example: Example,
    *,
    exemplars: Sequence[Example] = (),
    passages: Optional[Sequence] = None,
    cot: bool = False,
) -> list[dict]:
    """Chat messages for one query: optional system (task instruction), exemplar turns, the question.

    passages None means the arm has no retriever; an empty list means the retriever found nothing,
    and the prompt still says so and still tells the model to abstain.
    """
    messages: list[dict] = []
    if task.instruction.strip():
        messages.append({"role": "system", "content": task.instruction.strip()})
    for ex in exemplars:
        messages.append({"role": "user", "content": format_query(ex)})
        messages.append({"role": "assistant", "content": ex.output.strip()})
    query = format_query(example)
    if passages is not None:
        query = f"{format_passages(passages, task)}\n\n{query}"
    if cot:
        query = f"{query}\n\n{COT_INSTRUCTION[_lang(task)]}"
    messages.append({"role": "user", "content": query})
    return messages


def extract_answer(text: str) -> tuple[str, bool]:
    """The final answer of a chain of thought: the last 'Answer:' line, else the last non-empty line.

    Returns (answer, found) where found says whether an explicit answer line was there.
    """
    matches = ANSWER_LINE.findall(text)
    if matches:
        return matches[-1].strip(), True
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else ""), False
