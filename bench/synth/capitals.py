"""The `capitals` generator: facts the base model already knows (prompting zero-shot should win).

Why: bench's verdict must be checkable against a task whose right strategy is known by construction.
Every item asks for a country's capital, or for the country of a capital (public facts written from
common knowledge, bench.synth.capitals_data), and the test split keeps only the items that the packaged
SmolLM2-135M-Instruct answers right zero-shot with bench's default prompt: the base model is right by
construction, so no arm can do better than zero-shot and every other arm costs more. The screening is
a bench run whose wrong items are recorded in the config (`drop`), so the folder regenerates bit for bit
without the model (scripts/generate_tasks.py --screen-capitals; docs/tasks.md says how).

Accepted answers are the name (with its other spellings) and the plain statement of the fact in one
sentence ("The capital of Kenya is Nairobi"): SmolLM2 answers in that sentence however it is asked,
and the point of this task is what the model knows, not the form (the `codes` task tests form).
Countries are split between train and test, so no test fact is a train fact.

`unanswerable: n` adds n test questions about invented countries and capitals (reference: the abstain
phrase, `answerable: false`) and tells the model to abstain when it does not know: with an unscreened
split that is the Gekhman et al. study's task (`capitals_slick`, docs/findings.md), where SliCK labels
which training facts the base model knows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from bench.errors import BenchError
from bench.synth.capitals_data import COUNTRIES
from bench.synth.common import check_range, stream, write_task_folder

VERSION = "1.0"
DIRECTIONS = ("capital", "country")  # ask for the capital of a country, or for the country of a capital
INSTRUCTION = "Answer the question with the name only."


@dataclass(frozen=True)
class CapitalsConfig:
    seed: int = 0
    train_countries: int = 25   # countries whose questions form the train split (the rest are test)
    drop: tuple[str, ...] = ()  # test item ids the base model got wrong when screened (left out)
    screening: str = ""         # how the drop list was made (model, strategy, prompt); empty = not screened
    unanswerable: int = 0       # test questions about invented countries (answer: abstain), 0 = none

    def validate(self, where: str = "capitals config") -> None:
        check_range(where, "seed", self.seed, 0, 2**63 - 1)
        check_range(where, "train_countries", self.train_countries, 1, len(COUNTRIES) - 1)
        check_range(where, "unanswerable", self.unanswerable, 0, 1000)
        if not all(isinstance(d, str) for d in self.drop):
            raise BenchError(f"{where}: drop must be a list of item ids (strings)")


TINY = CapitalsConfig(seed=3, train_countries=4)
# The Gekhman study's task (tasks/capitals_slick): two thirds of the countries to train on, the rest to test,
# unscreened (SliCK decides what the model knows), and 20 questions about invented countries.
SLICK = CapitalsConfig(seed=0, train_countries=120, unanswerable=20)
ABSTAIN = "I don't know"


def _bare(name: str) -> str:
    return name[4:] if name.startswith("the ") else name


def _slug(country: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in _bare(country).lower()).strip("_")


def items_of(index: int) -> list[dict]:
    """The questions about one country: its capital, and (when neither name contains the other, which
    would give the answer away) the country of its capital."""
    country, capital, capital_alts, country_alts = COUNTRIES[index]
    capitals, countries = (capital, *capital_alts), (country, *country_alts)
    out = [{
        "id": f"capital-{_slug(country)}", "instruction": f"What is the capital of {country}?", "input": "",
        "output": capital,
        "answers": [*capital_alts, *(f"The capital of {country} is {c}" for c in capitals),
                    *(f"{c} is the capital of {country}" for c in capitals)],
        "direction": "capital", "country": _bare(country),
    }]
    if _bare(country).lower() not in capital.lower() and capital.lower() not in country.lower():
        out.append({
            "id": f"country-{_slug(country)}", "instruction": f"{capital} is the capital of which country?", "input": "",
            "output": _bare(country),
            "answers": [*country_alts, *(f"{capital} is the capital of {c}" for c in countries),
                        *(f"The capital of {c} is {capital}" for c in countries)],
            "direction": "country", "country": _bare(country),
        })
    return out


def split_countries(cfg: CapitalsConfig) -> tuple[list[int], list[int]]:
    """(train, test) country indices: a seeded order of the countries, the first train_countries to train."""
    order = sorted(range(len(COUNTRIES)), key=lambda i: stream(cfg.seed, "split", COUNTRIES[i][0]).random())
    return sorted(order[: cfg.train_countries]), sorted(order[cfg.train_countries:])


def _interleave(cfg: CapitalsConfig, rows: list[dict], split: str) -> list[dict]:
    """A seeded shuffle that alternates the two directions, so any --limit prefix holds both."""
    by_dir = {d: sorted((r for r in rows if r["direction"] == d),
                        key=lambda r: stream(cfg.seed, f"order:{split}", r["id"]).random()) for d in DIRECTIONS}
    out: list[dict] = []
    while any(by_dir.values()):
        for d in DIRECTIONS:
            if by_dir[d]:
                out.append(by_dir[d].pop(0))
    return out


def invented_items(cfg: CapitalsConfig) -> list[dict]:
    """Questions about invented countries and capitals (names from bench.synth.names), both directions in turn."""
    from bench.synth import names as nm

    real = {_bare(c[0]).lower() for c in COUNTRIES} | {c[1].lower() for c in COUNTRIES}
    out, seen, i = [], set(), 0
    while len(out) < cfg.unanswerable:
        r = stream(cfg.seed, "invented", i)
        i += 1
        word = nm.make_word(r, r.choice((2, 3)))
        name = nm.spell(word, 0)
        if name.lower() in real or name.lower() in seen or nm.offensive(name.lower(), nm.spell(word, 1).lower()):
            continue
        seen.add(name.lower())
        direction = DIRECTIONS[len(out) % 2]
        q = f"What is the capital of {name}?" if direction == "capital" else f"{name} is the capital of which country?"
        out.append({"id": f"invented-{direction}-{name.lower()}", "instruction": q, "input": "", "output": ABSTAIN,
                    "answerable": False, "direction": direction, "country": name})
    return out


def task_meta(cfg: CapitalsConfig, name: str) -> dict:
    kept = ("The test split keeps only the questions the packaged SmolLM2-135M-Instruct answered right zero-shot with "
            f"bench's default prompt ({len(cfg.drop)} it got wrong were dropped; see manifest.json), so the base model "
            "is right by construction. " if cfg.screening else "Not screened against a model yet. ")
    return {
        "name": name, "version": VERSION,
        "description": (
            "Built so that prompting zero-shot is the right strategy: capitals of countries and countries of capitals, "
            "public facts the base model already knows. " + kept + "The name, or the fact stated in one sentence "
            "('The capital of Kenya is Nairobi'), counts as the answer. Train and test ask about different countries."),
        "language": "en", "kind": "qa", "metrics": ["exact_match", "f1"], "main_metric": "exact_match",
        "source": f"written for bench from common knowledge, generated by bench.synth.capitals v{VERSION} "
                  f"(seed {cfg.seed}); see manifest.json",
        "license": "CC0-1.0",
        "instruction": INSTRUCTION,
    } if not cfg.unanswerable else {
        "name": name, "version": VERSION,
        "description": (
            "Capitals of countries and countries of capitals, unscreened: the base model knows some and not others "
            "(SliCK labels which), plus questions about invented countries whose right answer is to abstain. The "
            "task of the unknown-training-examples study (docs/findings.md). Train and test ask about different "
            "countries."),
        "language": "en", "kind": "qa", "metrics": ["exact_match", "f1", "abstention", "hallucination"],
        "main_metric": "exact_match",
        "source": f"written for bench from common knowledge, generated by bench.synth.capitals v{VERSION} "
                  f"(seed {cfg.seed}); see manifest.json",
        "license": "CC0-1.0", "abstain_phrase": ABSTAIN,
        "instruction": f"{INSTRUCTION} If you do not know, reply exactly: {ABSTAIN}",
    }


def generate(cfg: CapitalsConfig, out: Path, name: Optional[str] = None) -> dict:
    """Write the task folder (task.yaml, train.jsonl, test.jsonl, manifest.json); returns the manifest.

    Items named in cfg.drop are left out of the test split; an id in drop that names no test item is an
    error (a stale screening)."""
    cfg.validate()
    train_idx, test_idx = split_countries(cfg)
    train = [row for i in train_idx for row in items_of(i)]
    test_all = [row for i in test_idx for row in items_of(i)]
    unknown = sorted(set(cfg.drop) - {r["id"] for r in test_all})
    if unknown:
        raise BenchError(f"capitals config: drop names ids that are not test items: {', '.join(unknown[:5])}; "
                         "screen again (scripts/generate_tasks.py --screen-capitals)")
    dropped = set(cfg.drop)
    test = [r for r in test_all if r["id"] not in dropped] + invented_items(cfg)
    train, test = _interleave(cfg, train, "train"), _interleave(cfg, test, "test")
    stats = {"countries": len(COUNTRIES), "train": len(train), "test": len(test), "test_before_screening": len(test_all),
             "dropped": len(dropped),
             "test_by_direction": {d: sum(1 for r in test if r["direction"] == d) for d in DIRECTIONS}}
    config = {**asdict(cfg), "drop": sorted(cfg.drop)}
    return write_task_folder(Path(out), task_meta(cfg, name or "capitals"),
                             {"train": train, "test": test}, generator="bench.synth.capitals", version=VERSION,
                             seed=cfg.seed, config=config, stats=stats)
