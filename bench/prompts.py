"""Building the messages of one query, and reading the answer back out of what the model wrote.

Every strategy builds its prompt here so that arms differ only in what their channel adds (the
fairness rule of DESIGN.md): few-shot adds exemplar turns (each with its own passages when the arm
retrieves, so demonstrations show the task in the form the question will be asked), rag adds
numbered passages, cot adds the reasoning instruction. The rendered string (model template applied,
bench.run.context) is what the cache keys on.

`PromptForm` says where the task instruction goes (a system turn, or the first user turn) and whether
the model sees its chat template or a plain completion prompt; the same text is never shown twice
(a task whose task.yaml instruction equals its records' instruction shows it once).

`final_answer` is the one answer extraction, applied identically to every arm before scoring:

- chain of thought: what follows the last answer marker ("Answer:", "The answer is:", "Ответ:") —
  the rest of that line on qa tasks, everything after it on generation tasks (a report is not cut to
  one line); without a marker, the last non-empty line (qa) or the whole text (generation);
- qa tasks: the first non-empty line, without a leading "Answer:", "A:", "The answer is", without
  surrounding quotes or markdown emphasis and a trailing full stop;
- generation tasks: the whole output, stripped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
NO_PASSAGES = {"en": "(no passages were found)", "ru": "(фрагменты не найдены)"}

FORMS = ("auto", "chat", "completion")
INSTRUCTION_PLACES = ("system", "user")

# "Answer:", "Final answer:", "Ответ:" (a colon is required), or "The answer is" (colon optional)
_MARKER = (r"(?:(?:final\s+answer|answer|итоговый\s+ответ|ответ)\s*[*_]*\s*[:：]"
           r"|(?:the\s+)?(?:final\s+)?answer\s+is\s*[*_]*\s*[:：]?|ответ\s*[-—])")
MARKER_LINE = re.compile(rf"^[ \t]*[*_#>]*[ \t]*{_MARKER}[ \t]*[*_]*[ \t]*(.*)$", re.I | re.M)
LEADING = re.compile(rf"^[ \t]*[*_#>]*[ \t]*(?:{_MARKER}|a[ \t]*:)[ \t]*", re.I)


@dataclass(frozen=True)
class PromptForm:
    """How messages become a prompt. form: auto (the model's chat template when it has one, else a plain
    completion prompt), chat, or completion; instruction: the task instruction as a system turn or at
    the start of the first user turn."""

    form: str = "auto"
    instruction: str = "system"

    def problem(self) -> Optional[str]:
        if self.form not in FORMS:
            return f"form must be one of {', '.join(FORMS)}, got {self.form!r}"
        if self.instruction not in INSTRUCTION_PLACES:
            return f"instruction must be one of {', '.join(INSTRUCTION_PLACES)}, got {self.instruction!r}"
        return None


def language_of(task: Task) -> str:
    """The language whose fixed prompt texts are used: ru for Russian tasks, en otherwise."""
    return "ru" if task.language.startswith("ru") else "en"


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def format_query(example: Example, omit: str = "") -> str:
    """The user turn of an Alpaca item: instruction, then input if any (also what retrieval searches with).

    omit: text already shown elsewhere in the prompt (the task instruction); an item instruction equal
    to it is left out rather than repeated.
    """
    parts = [] if omit and _same(example.instruction, omit) else [example.instruction.strip()]
    if example.input.strip():
        parts.append(example.input.strip())
    return "\n\n".join(p for p in parts if p)


def format_passages(passages: Sequence, task: Task) -> str:
    lines = [PASSAGES_INSTRUCTION[language_of(task)].format(abstain=task.abstain_phrase), ""]
    if not passages:
        lines.append(NO_PASSAGES[language_of(task)])
    for i, p in enumerate(passages, start=1):
        head = f"[{i}] {p.title}".rstrip()
        lines.append(f"{head}\n{p.text.strip()}\n")
    return "\n".join(lines).rstrip()


def _turn(task: Task, example: Example, passages: Optional[Sequence], omit: str) -> str:
    query = format_query(example, omit)
    if passages is not None:
        query = f"{format_passages(passages, task)}\n\n{query}"
    return query


def build_messages(
    task: Task,
    example: Example,
    *,
    exemplars: Sequence[Example] = (),
    passages: Optional[Sequence] = None,
    exemplar_passages: Optional[Sequence[Sequence]] = None,
    cot: bool = False,
    form: PromptForm = PromptForm(),
) -> list[dict]:
    """Chat messages for one query: the task instruction, exemplar turns, the question.

    passages None means the arm has no retriever; an empty list means the retriever found nothing, and
    the prompt still says so and still tells the model to abstain. exemplar_passages (one list per
    exemplar) puts each demonstration in the same layout as the question.
    """
    instruction = task.instruction.strip()
    messages: list[dict] = []
    if instruction and form.instruction == "system":
        messages.append({"role": "system", "content": instruction})
    for i, ex in enumerate(exemplars):
        shown = exemplar_passages[i] if exemplar_passages is not None else None
        messages.append({"role": "user", "content": _turn(task, ex, shown, instruction)})
        messages.append({"role": "assistant", "content": ex.output.strip()})
    query = _turn(task, example, passages, instruction)
    if cot:
        query = f"{query}\n\n{COT_INSTRUCTION[language_of(task)]}"
    messages.append({"role": "user", "content": query})
    if instruction and form.instruction == "user":
        first = next(m for m in messages if m["role"] == "user")
        first["content"] = f"{instruction}\n\n{first['content']}"
    return messages


def _clean(answer: str) -> str:
    a = answer.strip().strip("*_`").strip()
    if len(a) >= 2 and a[0] == a[-1] and a[0] in "\"'«»“”":
        a = a[1:-1].strip()
    if a[:1] in "«“" and a[-1:] in "»”":
        a = a[1:-1].strip()
    if a.endswith(".") and not a.endswith(".."):
        a = a[:-1].rstrip()
    return a


def final_answer(text: str, task: Task, cot: bool = False) -> tuple[str, bool]:
    """The answer scored for `text` (see the module docstring) and whether an answer marker was found."""
    text = (text or "").strip()
    found = False
    if cot:
        matches = list(MARKER_LINE.finditer(text))
        if matches:
            m = matches[-1]
            found = True
            text = (m.group(1) + text[m.end():]).strip()
        elif task.kind == "qa":
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            text = lines[-1] if lines else ""
    if task.kind != "qa":
        return text, found
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    stripped = LEADING.sub("", first)
    return _clean(stripped), found or stripped != first
