"""How well do the judge-free support checks (bench.metrics.support) find planted hallucinations?

Real references of the built-in tasks are perturbed one way each — a number changed, a side flipped,
a negation removed or added, a sentence from another item inserted, a real domain term that the task
never uses added — and each detector is run on the perturbed text and on the unperturbed reference,
against the sources an arm would have had: the item's instruction and input, plus the item's gold
documents where the task has them (a retrieval arm that found the right passage). The reference itself
is not given to the checks (it is the text under test). A hit counts only when the detector flags the
planted span (the new number, the flipped clause, the inserted sentence or term); a flag anywhere on an
unperturbed reference, or elsewhere on a perturbed one, is a false positive.

Which perturbations each item admits (`eligible`, written here and not taken from the detectors):
number — a number of the reference that its sources state; side — a side word (left/right, слева/левой...)
in a reference whose sources name a side; negation — a negator removed from, or put into, a clause that
shares a content word with the sources and is not a sentence the train references repeat (boilerplate is
not in any source, so no source can contradict it); foreign — a sentence found in exactly one other
reference of the task (so it belongs to that item); novel — a term from a fixed list of real domain words
that the task's vocabulary lacks.

    python benchmarks/support_detection.py                      # every task, test split
    python benchmarks/support_detection.py --tasks mri_reports_ru --split train --show 5

It prints precision and recall per task, language and perturbation, with the counts behind them.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics import support as S  # noqa: E402
from bench.taskio import load_folder  # noqa: E402
from bench.textnorm import split_sentences  # noqa: E402
from bench.types import Example, Task  # noqa: E402

TASKS = ("mri_reports_ru", "debian_faq", "debian_faq_ru", "pubmedqa", "facts", "facts_ru")
KINDS = ("number", "side", "negation", "foreign", "novel")
DETECTOR = {"number": "numbers", "side": "contradictions", "negation": "contradictions",
            "foreign": "foreign", "novel": "novel"}
# real words of neighbouring domains that the built-in tasks do not use (only those absent from a task are planted)
NOVEL_TERMS = {
    "ru": ["менингиома", "гидроцефалия", "кавернома", "лейкоареоз", "аневризма", "виртуализация", "контейнеризация",
           "брандмауэр", "гипервизор", "кластеризация"],
    "en": ["meningioma", "hydrocephalus", "kubernetes", "flatpak", "hypervisor", "containerization", "firmware",
           "blockchain", "microservices", "cavernoma"],
}
SIDE_SWAP = {"ru": (r"(?<!\w)(слева|справа|лев(?=(?:ый|ая|ое|ые|ой|ого|ому|ом|ую|ых|ым|ыми)(?!\w))"
                    r"|прав(?=(?:ый|ая|ое|ые|ой|ого|ому|ом|ую|ых|ым|ыми)(?!\w)))",
                    {"слева": "справа", "справа": "слева", "лев": "прав", "прав": "лев"}),
             "en": (r"(?<!\w)(left|right)(?!\w)", {"left": "right", "right": "left"})}
# (pattern, replacement): negations removed or put in; tried in order, the first that applies is used
NEGATION_EDITS = {
    "ru": [(r"(?<!\w)не (?=\w)", ""), (r"(?<!\w)без признаков", "с признаками"), (r"(?<!\w)с признаками", "без признаков"),
           (r"(?<!\w)нет(?!\w)", "есть"), (r"(?<!\w)(накапливающ\w*)", r"не \1"), (r"(?<!\w)(выявлен\w*)", r"не \1"),
           (r"(?<!\w)(можно)(?!\w)", "нельзя")],
    "en": [(r"(?<!\w)(is|are|was|were|can|does|do|will|should) not(?!\w)", r"\1"), (r"(?<!\w)cannot(?!\w)", "can"),
           (r"(?<!\w)(does|do|is|are|was|were)n't(?!\w)", r"\1"), (r"(?<!\w)(is|are|was|were|will|should)(?= \w)", r"\1 not"),
           (r"(?<!\w)can(?= \w)", "cannot")],
}


@dataclass(frozen=True)
class Case:
    """One text to check: an unperturbed reference (kind "none") or a perturbed one, and the planted span."""

    task: str
    example_id: str
    kind: str
    text: str
    target: str = ""  # the new number / the changed clause's word / the inserted sentence / the inserted term


def sources_for(task: Task, ex: Example) -> list[str]:
    """The passages an arm would have shown besides the item: its gold documents (none for mri_reports_ru)."""
    docs = {d.id: f"{d.title}. {d.text}" if d.title else d.text for d in task.docs}
    return [docs[d] for d in ex.doc_ids if d in docs]


def _source_text(task: Task, ex: Example) -> str:
    return "\n".join(S.source_texts(ex, task, sources_for(task, ex)))


def perturb_number(task: Task, ex: Example, rng: random.Random) -> Optional[Case]:
    support = S.NumberSupport()
    support.add_text(_source_text(task, ex), task.language)
    spots = [m for m in re.finditer(r"(?<![\w.,])\d+(?![\w.,]?\d)", ex.output)
             if any(not support.unsupported(n) for n in S.numbers_in(m.group(0), task.language))]
    if not spots:
        return None
    m = rng.choice(spots)
    old = int(m.group(0))
    for new in (old + 1, old + 2, old + 3, old * 2 + 1, old + 10):
        if support.unsupported(S.numbers_in(str(new), task.language)[0]):
            text = ex.output[:m.start()] + str(new) + ex.output[m.end():]
            return Case(task.name, ex.id, "number", text, str(new))
    return None


def perturb_side(task: Task, ex: Example, rng: random.Random) -> Optional[Case]:
    lang = "ru" if task.language.startswith("ru") else "en"
    pattern, swap = SIDE_SWAP[lang]
    if not S.clause_of(_source_text(task, ex), task.language).sides:
        return None
    spots = list(re.finditer(pattern, ex.output, flags=re.IGNORECASE))
    if not spots:
        return None
    m = rng.choice(spots)
    word = m.group(1)
    new = swap[word.lower()]
    new = new.capitalize() if word[0].isupper() else new
    text = ex.output[:m.start()] + new + ex.output[m.end():]
    end = re.match(r"\w*", text[m.start():]).group(0)
    return Case(task.name, ex.id, "side", text, end)


def perturb_negation(task: Task, ex: Example, rng: random.Random) -> Optional[Case]:
    lang = "ru" if task.language.startswith("ru") else "en"
    index = S.task_index(task)
    facts = "\n".join([ex.input, *sources_for(task, ex)])  # what the item states (its instruction does not count)
    source_terms = S.content_terms(facts, task.language)
    sentences = [s for s in split_sentences(ex.output)
                 if frozenset(S.content_terms(s, task.language)) not in index.boilerplate]
    rng.shuffle(sentences)
    for sentence in sentences:
        for pattern, repl in NEGATION_EDITS[lang]:
            m = re.search(pattern, sentence)
            if not m:
                continue
            clause = next((c for c in re.split(r"[,;()]", sentence) if m.group(0) in c), sentence)
            if not S.content_terms(clause, task.language) & source_terms:
                continue
            new_sentence = sentence[:m.start()] + m.expand(repl) + sentence[m.end():]
            word = re.search(r"\w+", sentence[m.end():])
            target = word.group(0) if word else m.expand(repl).split()[-1]
            return Case(task.name, ex.id, "negation", ex.output.replace(sentence, new_sentence, 1), target)
    return None


_OWNERS: dict[int, tuple[Task, dict[str, set[str]]]] = {}


def sentence_owners(task: Task) -> dict[str, set[str]]:
    """{reference sentence: ids of the items whose reference has it}, cached per task object."""
    hit = _OWNERS.get(id(task))
    if hit is None or hit[0] is not task:
        owners: dict[str, set[str]] = defaultdict(set)
        for other in (*task.train, *task.test):
            for s in split_sentences(other.output):
                owners[s].add(other.id)
        _OWNERS[id(task)] = hit = (task, owners)
    return hit[1]


def perturb_foreign(task: Task, ex: Example, rng: random.Random) -> Optional[Case]:
    owners = sentence_owners(task)
    own = set(split_sentences(ex.output))
    candidates = [(s, next(iter(ids))) for s, ids in owners.items() if len(ids) == 1 and ex.id not in ids and s not in own]
    rng.shuffle(candidates)
    candidates = [c for c in candidates[:50] if len(S.content_terms(c[0], task.language)) >= 3]
    if not candidates:
        return None
    candidates.sort()
    sentence, _ = rng.choice(candidates)
    parts = split_sentences(ex.output)
    at = rng.randint(0, len(parts))
    return Case(task.name, ex.id, "foreign", " ".join(parts[:at] + [sentence] + parts[at:]), sentence)


def perturb_novel(task: Task, ex: Example, rng: random.Random) -> Optional[Case]:
    lang = "ru" if task.language.startswith("ru") else "en"
    index = S.task_index(task)
    known = index.train_vocab | S.content_terms(_source_text(task, ex) + "\n" + ex.output, task.language)
    terms = [t for t in NOVEL_TERMS[lang] if not S.content_terms(t, task.language) & known]
    if not terms:
        return None
    term = rng.choice(terms)
    parts = split_sentences(ex.output)
    i = rng.randrange(len(parts))
    body = parts[i].rstrip(".!?…")
    parts[i] = f"{body}, {term}{parts[i][len(body):] or '.'}"
    return Case(task.name, ex.id, "novel", " ".join(parts), term)


PERTURB = {"number": perturb_number, "side": perturb_side, "negation": perturb_negation,
           "foreign": perturb_foreign, "novel": perturb_novel}


def build_cases(task: Task, split: str = "test", seed: int = 0, limit: Optional[int] = None) -> list[Case]:
    """The unperturbed reference of every item of a split plus each perturbation the item admits."""
    examples = list(getattr(task, split))[:limit]
    out = []
    for ex in examples:
        if not ex.output.strip() or not ex.answerable:
            continue
        out.append(Case(task.name, ex.id, "none", ex.output))
        for kind in KINDS:
            case = PERTURB[kind](task, ex, random.Random(f"{seed}:{ex.id}:{kind}"))
            if case is not None:
                out.append(case)
    return out


def flags(case: Case, task: Task, examples: dict[str, Example]) -> dict[str, list[str]]:
    """What each detector flagged on a case's text: {detector: [flagged spans]}."""
    ex = examples[case.example_id]
    r = S.check(case.text, ex, task, sources_for(task, ex), refs=())
    return {"numbers": r.unsupported_numbers, "contradictions": [c for _, c, _ in r.contradictions],
            "foreign": [s for s, _ in r.foreign_sentences], "novel": r.novel_terms}


def located(case: Case, spans: list[str]) -> bool:
    """Did the detector flag the planted span?"""
    t = case.target.lower()
    if case.kind == "number":
        return any(re.search(rf"(?<![\d.,]){re.escape(t)}(?![\d])", s) for s in spans)
    if case.kind == "foreign":
        return any(t in s.lower() or s.lower() in t for s in spans)
    return any(t in s.lower() for s in spans)


def evaluate(cases: list[Case], task: Task) -> dict[str, dict[str, int]]:
    """Counts per perturbation kind: n, tp (planted span flagged), fp (flags on unperturbed references of the
    same items), off_target (flags elsewhere on a perturbed text, not counting those its clean reference has);
    and under "clean": n (unperturbed references) and, per detector, how many of them it flagged."""
    examples = {ex.id: ex for ex in (*task.train, *task.test)}
    flagged_clean: dict[str, set[str]] = defaultdict(set)  # detector → example ids flagged on the clean reference
    counts: dict[str, Counter] = defaultdict(Counter)
    results = [(c, flags(c, task, examples)) for c in cases]
    for c, f in results:
        if c.kind == "none":
            counts["clean"]["n"] += 1
            for det, spans in f.items():
                if spans:
                    flagged_clean[det].add(c.example_id)
                    counts["clean"][det] += 1
    for c, f in results:
        if c.kind == "none":
            continue
        det = DETECTOR[c.kind]
        k = counts[c.kind]
        k["n"] += 1
        hit = located(c, f[det])
        k["tp"] += hit
        # clean references of the items this kind perturbed, judged by the same detector
        k["fp"] += c.example_id in flagged_clean[det]
        k["off_target"] += (not hit) and bool(f[det]) and c.example_id not in flagged_clean[det]
    return counts


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--split", default="test", choices=("test", "train"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="first N items of each task")
    ap.add_argument("--show", type=int, default=0, help="print N missed cases of each kind")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1] / "tasks"
    print(f"support detection: split={args.split} seed={args.seed}; precision = tp / (tp + fp + off-target), "
          "fp = the same items' clean references flagged; recall = tp / n")
    print(f"{'task':16} {'lang':4} {'perturbation':12} {'n':>5} {'tp':>5} {'fp':>4} {'off':>4} {'precision':>9} {'recall':>7}")
    for name in args.tasks.split(","):
        task = load_folder(root / name)
        cases = build_cases(task, args.split, args.seed, args.limit)
        counts = evaluate(cases, task)
        for kind in KINDS:
            k = counts.get(kind)
            if not k or not k["n"]:
                continue
            flagged = k["tp"] + k["fp"] + k["off_target"]
            prec = k["tp"] / flagged if flagged else float("nan")
            print(f"{name:16} {task.language:4} {kind:12} {k['n']:5d} {k['tp']:5d} {k['fp']:4d} {k['off_target']:4d} "
                  f"{prec:9.3f} {k['tp'] / k['n']:7.3f}")
        clean = counts["clean"]
        print(f"{name:16} {task.language:4} clean references flagged, of {clean['n']}: "
              + ", ".join(f"{det} {clean[det]}" for det in sorted(set(DETECTOR.values()))))
        if args.show:
            examples = {ex.id: ex for ex in (*task.train, *task.test)}
            shown: Counter = Counter()
            for c in cases:
                if c.kind != "none" and shown[c.kind] < args.show:
                    f = flags(c, task, examples)
                    if not located(c, f[DETECTOR[c.kind]]):
                        shown[c.kind] += 1
                        print(f"  MISSED {c.kind} {c.example_id} target={c.target!r}: {c.text[:300]!r} -> {f[DETECTOR[c.kind]]}")
            for c in cases:
                if c.kind == "none":
                    f = flags(c, task, examples)
                    for det, spans in f.items():
                        if spans and shown["fp-" + det] < args.show:
                            shown["fp-" + det] += 1
                            print(f"  FLAGGED CLEAN {det} {c.example_id}: {spans}")


if __name__ == "__main__":
    main()
