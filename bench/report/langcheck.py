"""Can the model work in the task's language at all? A plain-words check for the report.

The packaged SmolLM2 writes no usable Russian: on a Russian task its zero-shot scores sit at the floor
and its outputs are English or garbage. A report that only shows "ROUGE-L 0.02" hides why, so
`language_check` measures the share of outputs written in the task's script (Cyrillic for ru,
Latin for en, ...), and returns a verdict and one sentence the report can print as is. Gemma-3-270M
(`--model gemma3-270m`) is the packaged multilingual option.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Iterable, Optional

from bench.atomic import read_jsonl
from bench.results import GENERATIONS
from bench.textnorm import normalize_answer

if TYPE_CHECKING:
    from bench.report.data import Run

SCRIPTS = {"ru": "CYRILLIC", "uk": "CYRILLIC", "bg": "CYRILLIC", "sr": "CYRILLIC", "kk": "CYRILLIC",
           "el": "GREEK", "ar": "ARABIC", "he": "HEBREW", "hi": "DEVANAGARI", "zh": "CJK", "ja": "CJK", "ko": "HANGUL"}


def script_of(language: str) -> str:
    return SCRIPTS.get(language[:2].lower(), "LATIN")


def _char_script(ch: str) -> Optional[str]:
    if not ch.isalpha():
        return None
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "OTHER"
    if name.startswith("CJK") or "HIRAGANA" in name or "KATAKANA" in name:
        return "CJK"
    return name.split(" ")[0]


def script_share(text: str, script: str) -> Optional[float]:
    """Share of the letters of `text` that belong to `script` (None when there are no letters)."""
    letters = [s for s in map(_char_script, text) if s is not None]
    if not letters:
        return None
    return sum(1 for s in letters if s == script) / len(letters)


def _echoes(answer: str, query: str) -> bool:
    """The answer only repeats the question (a model that cannot write the language often copies it)."""
    a, q = normalize_answer(answer or ""), normalize_answer(query or "")
    return bool(a) and a[:80] in q


def language_check(task, answers: Iterable[Optional[str]], scores: Optional[Iterable[Optional[float]]] = None,
                   threshold: float = 0.5, floor: float = 0.05, queries: Optional[Iterable[str]] = None) -> dict:
    """Share of outputs in the task's script, and a verdict.

    task: a Task (its .language is used) or a language code. answers: the model's outputs (None = failed).
    scores: optional main-metric values of the same answers, to say "at the floor" when their mean <= floor.
    queries: optional prompts/questions of the same answers; outputs that merely repeat them count as echoes
    (a model that cannot write the language often copies the question, which passes the script test).
    Verdicts: "ok" (>= 80 % of outputs in script), "echo" (in script, but half or more only repeat the
    question and scores are at the floor), "mixed", "wrong_language" (< 20 %), "no_output".
    """
    language = getattr(task, "language", task) or "en"
    name = getattr(task, "name", language)
    script = script_of(language)
    answers = list(answers)
    shares = [script_share(a or "", script) for a in answers]
    with_letters = [s for s in shares if s is not None]
    in_script = sum(1 for s in with_letters if s >= threshold)
    n = len(answers)
    share = in_script / len(with_letters) if with_letters else None
    mean_score = None
    if scores is not None:
        vals = [v for v in scores if v is not None]
        mean_score = sum(vals) / len(vals) if vals else None
    at_floor = mean_score is not None and mean_score <= floor
    echo_share = None
    if queries is not None:
        qs = list(queries)
        echo_share = sum(_echoes(a or "", q) for a, q in zip(answers, qs)) / max(1, len(answers))
    if not with_letters:
        verdict = "no_output"
    elif share >= 0.8 and echo_share is not None and echo_share >= 0.5 and (at_floor or mean_score is None):
        verdict = "echo"
    elif share >= 0.8:
        verdict = "ok"
    elif share < 0.2:
        verdict = "wrong_language"
    else:
        verdict = "mixed"
    if verdict == "ok":
        msg = f"{name}: {share:.0%} of outputs are in the task's script ({script.lower()})."
    elif verdict == "no_output":
        msg = f"{name}: the model produced no text to check."
    elif verdict == "echo":
        msg = (f"{name}: {echo_share:.0%} of outputs only repeat the question; the base model does not produce "
               f"'{language}' text of its own" + (f" (mean score {mean_score:.3f}, at the floor)" if at_floor else "")
               + ". Use a multilingual model (e.g. --model gemma3-270m).")
    else:
        msg = (f"{name}: only {share:.0%} of outputs are in {script.lower()} script; the base model cannot work in "
               f"'{language}', so its scores on this task measure the language gap, not the strategy")
        if at_floor:
            msg += f" (mean score {mean_score:.3f}, at the floor)"
        msg += ". Use a multilingual model (e.g. --model gemma3-270m)."
    return {"language": language, "script": script, "n": n, "n_with_letters": len(with_letters),
            "n_empty": n - len(with_letters), "in_script": in_script, "in_script_share": share,
            "mean_letter_share": sum(with_letters) / len(with_letters) if with_letters else None,
            "mean_score": mean_score, "at_floor": at_floor, "echo_share": echo_share, "verdict": verdict, "message": msg}


def check_run(run: "Run", strategies: tuple[str, ...] = ("zero_shot",)) -> list[dict]:
    """language_check for every cell of a loaded run whose strategy is in `strategies` (zero-shot by
    default: the base model's own ability). Reads only the run folder (bench.report.data.Run).

    Returns one dict per cell: task, strategy, model, seed, plus language_check's keys.
    """
    out = []
    for cell in run.cells:
        if cell.strategy not in strategies or not cell.scores:
            continue
        info = run.task_info(cell.task)
        main = next((r["metric"] for r in run.rows if r["task"] == cell.task and r.get("main")), None)
        prompts: dict = {}
        for g in read_jsonl(cell.folder / GENERATIONS):
            prompts.setdefault(g.get("example_id"), g.get("prompt", ""))
        recs = cell.scores
        res = language_check(info["language"], [r.get("answer") for r in recs],
                             [(r.get("scores") or {}).get(main) for r in recs] if main else None,
                             queries=[prompts.get(r.get("example_id"), "") for r in recs] if prompts else None)
        out.append({"task": cell.task, "strategy": cell.strategy, "model": cell.model, "seed": cell.seed, **res})
    return out
