"""The `townfacts` generator: short facts about invented towns that exist only in the documents (retrieval should win).

Why: bench's verdict must be checkable against a task whose right strategy is known by construction.
Every town is invented (syllable names, bench.synth.names), so no model knows its facts; each town
has one document that states all five of them as clean spans (founding year, river, main export,
mayor, best-known landmark: answers of one to three words). The questions about the test towns are
answered only by their documents: the train split asks the same questions about other towns, so
fine-tuning can learn the answer form and the answer distribution, never these answers (test answers
occur in no train item). Smaller than `facts` (no unanswerable items, no look-alikes, no 2-hop
questions), so a default run can afford it. Deterministic from the config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from bench.errors import BenchError
from bench.synth import names as nm
from bench.synth.capitals_data import COUNTRIES
from bench.synth.common import check_range, stream, write_task_folder
from bench.synth.difficulty import difficulty

VERSION = "1.0"
RELATIONS = ("founded", "river", "export", "mayor", "landmark")
# main exports: the train towns draw from one seeded half, the test towns from the other
EXPORTS = ("honey", "wool", "copper", "salt", "timber", "cheese", "glass", "leather", "paper", "silk", "tea",
           "tobacco", "wine", "marble", "coal", "amber", "linen", "pottery", "rope", "soap", "iron", "tin", "flax",
           "barley", "apples", "cider", "beer", "candles", "lace", "porcelain", "clocks", "furniture", "saffron",
           "olives", "cotton", "granite", "pewter", "hemp", "dyes", "herring")
FIRST_NAMES = ("Anna", "Peter", "Maria", "John", "Clara", "Thomas", "Helen", "Robert", "Lucy", "Martin", "Sofia",
               "David", "Irene", "Victor", "Laura", "Simon", "Nora", "Oscar", "Eva", "Paul")
LANDMARKS = ("Tower", "Bridge", "Gate", "Abbey", "Mill", "Fountain", "Lighthouse", "Castle")
STATEMENTS = {
    "founded": ("{town} was founded in {value}.", "The town of {town} was founded in {value}."),
    "river": ("{town} lies on the river {value}.", "The town of {town} stands on the river {value}."),
    "export": ("The main export of {town} is {value}.", "The chief export of {town} is {value}."),
    "mayor": ("The mayor of {town} is {value}.", "{town} is governed by its mayor, {value}."),
    "landmark": ("The best-known landmark of {town} is the {value}.", "The most famous sight of {town} is the {value}."),
}
QUESTIONS = {
    "founded": "In which year was {town} founded?",
    "river": "On which river does {town} lie?",
    "export": "What is the main export of {town}?",
    "mayor": "Who is the mayor of {town}?",
    "landmark": "What is the best-known landmark of {town}?",
}
INSTRUCTION = "Reply with the answer only (one to three words), not a full sentence."
# real places a syllable name must not collide with (the capitals task's countries and capitals)
REAL_PLACES = frozenset(w.lower() for c, cap, alts, calts in COUNTRIES for w in (c, cap, *alts, *calts))


@dataclass(frozen=True)
class TownfactsConfig:
    seed: int = 0
    train_towns: int = 18  # towns whose questions form the train split
    test_towns: int = 26   # towns whose questions form the test split (all five relations each)
    year_min: int = 1150
    year_max: int = 1899

    def validate(self, where: str = "townfacts config") -> None:
        check_range(where, "seed", self.seed, 0, 2**63 - 1)
        check_range(where, "train_towns", self.train_towns, 1, 2000)
        check_range(where, "test_towns", self.test_towns, 1, 2000)
        check_range(where, "year_min", self.year_min, 1, 2000)
        check_range(where, "year_max", self.year_max, self.year_min, 2000)
        if self.year_max - self.year_min + 1 < 2 * (self.train_towns + self.test_towns):
            raise BenchError(f"{where}: year_min..year_max must hold at least twice as many years as towns "
                             f"({2 * (self.train_towns + self.test_towns)}); widen it")


TINY = TownfactsConfig(seed=11, train_towns=2, test_towns=3)


class _Names:
    """Unique invented words: never a real capital or country, never a blocked substring, never reused."""

    def __init__(self, seed: int):
        self.seed, self.used = seed, set(REAL_PLACES)

    def new(self, kind: str, idx, syllables: tuple[int, ...] = (2, 3)) -> str:
        for attempt in range(1000):
            r = stream(self.seed, f"name:{kind}", f"{idx}:{attempt}")
            word = nm.make_word(r, r.choice(syllables))
            lat, cyr = nm.spell(word, 0), nm.spell(word, 1)
            if lat.lower() not in self.used and not nm.offensive(lat.lower(), cyr.lower()):
                self.used.add(lat.lower())
                return lat
        raise BenchError(f"townfacts generator: no fresh name for {kind} {idx}; lower the number of towns")


def build_towns(cfg: TownfactsConfig) -> list[dict]:
    """Every town with its five facts. Years, rivers, mayors and landmarks are used by one town only; the
    exports of train and test towns come from disjoint halves of EXPORTS, so no test answer is a train answer."""
    cfg.validate()
    names = _Names(cfg.seed)
    goods = sorted(EXPORTS, key=lambda g: stream(cfg.seed, "export-half", g).random())
    halves = {"train": goods[: len(goods) // 2], "test": goods[len(goods) // 2:]}
    towns, years = [], set()
    for t in range(cfg.train_towns + cfg.test_towns):
        r = stream(cfg.seed, "town", t)
        split = "train" if t < cfg.train_towns else "test"
        for attempt in range(10000):
            year = stream(cfg.seed, "year", f"{t}:{attempt}").randint(cfg.year_min, cfg.year_max)
            if year not in years:
                break
        else:  # pragma: no cover (validate keeps at least half of the years free)
            raise BenchError("townfacts config: no free founding year; widen year_min..year_max")
        years.add(year)
        towns.append({
            "key": f"town-{t}", "name": names.new("town", t, (2, 3)), "split": split,
            "facts": {
                "founded": str(year),
                "river": names.new("river", t, (2,)),
                "export": r.choice(halves[split]),
                "mayor": f"{FIRST_NAMES[r.randrange(len(FIRST_NAMES))]} {names.new('surname', t, (2, 3))}",
                "landmark": f"{names.new('landmark', t, (2,))} {LANDMARKS[r.randrange(len(LANDMARKS))]}",
            },
        })
    return towns


def document(cfg: TownfactsConfig, town: dict) -> dict:
    """The one document of a town: every fact once, paraphrase and order drawn from the town's stream."""
    r = stream(cfg.seed, "doc", town["key"])
    sents = [r.choice(STATEMENTS[rel]).format(town=town["name"], value=town["facts"][rel]) for rel in RELATIONS]
    r.shuffle(sents)
    return {"id": f"{town['key']}-doc", "title": f"{town['name']} (town)", "text": " ".join(sents), "entity": town["key"]}


def answers(rel: str, value: str) -> list[str]:
    """Other accepted forms of an answer (the river named with the word 'river')."""
    if rel == "river":
        return [f"river {value}", f"{value} River", f"the {value} river"]
    return []


def questions(towns: list[dict], split: str) -> list[dict]:
    """All five questions about every town of `split`, in rounds of relations so any prefix spans them."""
    rows = []
    mine = [t for t in towns if t["split"] == split]
    for k, town in enumerate(mine):
        for j in range(len(RELATIONS)):
            rel = RELATIONS[(j + k) % len(RELATIONS)]  # rotate so consecutive towns start with different relations
            value = town["facts"][rel]
            rows.append({"id": f"{split}-{town['key']}-{rel}", "instruction": QUESTIONS[rel].format(town=town["name"]),
                         "input": "", "output": value, "answers": answers(rel, value), "doc_ids": [f"{town['key']}-doc"],
                         "relation": rel, "town": town["key"]})
    return rows


def _interleave(cfg: TownfactsConfig, rows: list[dict], split: str) -> list[dict]:
    """A Latin-square order, so a --limit prefix spans the towns and the relations: the towns in a seeded
    order, and in round j the k-th town is asked its relation (k + j) mod 5."""
    by_town: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_town.setdefault(row["town"], {})[row["relation"]] = row
    towns = sorted(by_town, key=lambda t: stream(cfg.seed, f"order:{split}", t).random())
    out = []
    for j in range(len(RELATIONS)):
        for k, town in enumerate(towns):
            row = by_town[town].get(RELATIONS[(k + j) % len(RELATIONS)])
            if row is not None:
                out.append(row)
    return out


def task_meta(cfg: TownfactsConfig, name: str) -> dict:
    return {
        "name": name, "version": VERSION,
        "description": (
            "Built so that retrieval is the right strategy: short questions (answers of one to three words) about "
            "invented towns whose facts (founding year, river, main export, mayor, landmark) are stated only in "
            "docs.jsonl, one document per town, each answer a clean span of its document. No model knows them, and "
            "the train split asks about other towns, so fine-tuning can teach the answer form but not these answers."),
        "language": "en", "kind": "qa", "metrics": ["exact_match", "f1"], "main_metric": "exact_match",
        "source": f"generated by bench.synth.townfacts v{VERSION} (seed {cfg.seed}); see manifest.json",
        "license": "CC0-1.0 (synthetic)",
        "instruction": INSTRUCTION,
    }


def generate(cfg: TownfactsConfig, out: Path, name: Optional[str] = None) -> dict:
    """Write the task folder (task.yaml, train/test/docs JSONL, manifest.json); returns the manifest."""
    towns = build_towns(cfg)
    docs = [document(cfg, t) for t in towns]
    train = _interleave(cfg, questions(towns, "train"), "train")
    test = _interleave(cfg, questions(towns, "test"), "test")
    stats = {"towns": len(towns), "docs": len(docs), "train": len(train), "test": len(test),
             "retrieval": difficulty(test, docs)}
    return write_task_folder(Path(out), task_meta(cfg, name or "townfacts"),
                             {"train": train, "test": test, "docs": docs}, generator="bench.synth.townfacts",
                             version=VERSION, seed=cfg.seed, config=asdict(cfg), stats=stats)
