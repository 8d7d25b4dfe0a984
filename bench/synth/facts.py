"""The `facts` generator: a typed fact graph of invented entities, rendered into documents and QA.

Why: fine-tuning vs retrieval is only a fair contest on knowledge no model has seen. This builds it
from a seed (data-notes §6): groups of four linked entities (town ← clinic → director, drug → clinic,
director → home town), typed attributes (years with constraints, numbers, closed sets), every fact
rendered into `multiplicity` documents of different genres; QA with held-out templates and held-out
entities for evaluation, both directions of each relation, a 2-hop question, look-alike distractor
entities (one vowel changed), and unanswerable questions of three kinds: a non-existent entity, a
missing attribute, a false premise (all `answerable: false`, reference = the abstain phrase).
English and Russian render the same graph (`language`).

For knowledge-injection studies (docs/findings.md) two options add to that, both off by default:
`paraphrases: k` gives every answerable training question k paraphrases (the other training templates
first, then framed variants; items with `paraphrase_of`, which only the `qa+paraphrases` recipe trains on),
and `seen_per_group: n` asks n facts of every training group again at test time, once verbatim and once
with a held-out template. Test items then carry a `stratum` the report splits by: `verbatim`,
`rephrased` (facts seen in training pairs), `docs_only` (held-out entities: only the documents state
them) and `unanswerable`; the verbatim and rephrased items of one fact share its `fact` id.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from bench.errors import BenchError
from bench.synth import names as nm
from bench.synth.common import check_range, stream, write_task_folder
from bench.synth.difficulty import difficulty
from bench.synth.facts_text import (
    ABSTAIN,
    CLOSED,
    GENRES,
    MEMO_OPENERS,
    NEWS_OPENERS,
    PARAPHRASE_FRAMES,
    QUESTIONS,
    RELATIONS,
    STATEMENTS,
)

VERSION = "1.0"
TYPES = ("town", "clinic", "person", "drug")
OPTIONAL = ("clinic_beds", "drug_dose")  # attributes that may be left unstated (missing-attribute questions)


@dataclass(frozen=True)
class FactsConfig:
    seed: int = 0
    groups: int = 30            # town + clinic + director + drug per group
    lookalikes: int = 6         # extra groups whose clinic and drug names are one vowel off another group's
    multiplicity: int = 4       # documents per entity (each states every fact of the entity)
    eval_fraction: float = 0.4  # share of groups whose questions are held out for evaluation
    questions_per_group: int = 8  # eval questions sampled per held-out group
    missing_rate: float = 0.2   # share of clinics/drugs with beds/dose never stated
    unanswerable_per_kind: int = 8  # test items of each unanswerable kind (train gets half as many)
    paraphrases: int = 0        # k paraphrased training questions per answerable training fact (`paraphrase_of`)
    seen_per_group: int = 0     # facts of each training group asked again at test time (verbatim + rephrased)
    exclude_names: tuple[str, ...] = ()  # Latin names rejected by real vocabularies (kept so regeneration needs none)

    def validate(self, where: str = "facts config") -> None:
        check_range(where, "seed", self.seed, 0, 2**63 - 1)
        check_range(where, "groups", self.groups, 2, 5000)
        check_range(where, "lookalikes", self.lookalikes, 0, self.groups)
        check_range(where, "multiplicity", self.multiplicity, 1, 10)
        check_range(where, "eval_fraction", self.eval_fraction, 0.05, 0.95)
        check_range(where, "questions_per_group", self.questions_per_group, 1, 40)
        check_range(where, "missing_rate", self.missing_rate, 0.0, 0.9)
        check_range(where, "unanswerable_per_kind", self.unanswerable_per_kind, 0, 1000)
        check_range(where, "paraphrases", self.paraphrases, 0, 3 * len(PARAPHRASE_FRAMES["en"]) - 1)
        check_range(where, "seen_per_group", self.seen_per_group, 0, 40)


# The knowledge-injection studies' task (tasks/facts_injection, docs/findings.md): the first groups of `facts`
# (same seed, so the same vocabulary-checked names), 4 paraphrases per training fact, 6 facts per training
# group asked again verbatim and rephrased. Small enough that a study's fine-tunes fit in an hour on 2 cores.
INJECTION = FactsConfig(seed=0, groups=6, lookalikes=1, multiplicity=3, questions_per_group=8, unanswerable_per_kind=4,
                        paraphrases=4, seen_per_group=6)
TINY = FactsConfig(seed=7, groups=4, lookalikes=1, multiplicity=3, questions_per_group=4, unanswerable_per_kind=2)


@dataclass
class Entity:
    type: str
    key: str                       # stable id, e.g. clinic-3
    word: list                     # syllables (see names.py)
    attrs: dict = field(default_factory=dict)
    initials: tuple = ("", "")
    lookalike_of: Optional[str] = None

    def name(self, lang: str) -> str:
        s = 0 if lang == "en" else 1
        base = nm.spell(self.word, s)
        if self.type == "person":
            return f"{self.initials[0]} {base}" if lang == "en" else f"{base} {self.initials[1]}"
        return base


class _Namer:
    """Unique invented names; rejects excluded (real-vocabulary) names and optionally checks a vocabulary."""

    def __init__(self, seed: int, exclude: Iterable[str], vocabulary=None):
        self.seed, self.used = seed, set()
        self.exclude = {e.lower() for e in exclude}
        self.vocabulary = vocabulary
        self.rejected: list[str] = []

    def ok(self, word) -> bool:
        lat, cyr = nm.spell(word, 0).lower(), nm.spell(word, 1).lower()
        if lat in self.used or lat in self.exclude or nm.offensive(lat, cyr):
            return False
        if self.vocabulary is not None and self.vocabulary(lat, cyr):
            self.rejected.append(lat)
            return False
        return True

    def new(self, kind: str, idx) -> list:
        for attempt in range(1000):
            r = stream(self.seed, f"name:{kind}", f"{idx}:{attempt}")
            word = nm.make_word(r, r.choice((2, 2, 3)))
            if self.ok(word):
                self.used.add(nm.spell(word, 0).lower())
                return word
        raise BenchError(f"facts generator: could not find a fresh name for {kind} {idx}; lower `groups`")

    def lookalike(self, word, idx) -> list:
        for attempt in range(200):
            cand = nm.mutate(word, stream(self.seed, "lookalike", f"{idx}:{attempt}"))
            if self.ok(cand):
                self.used.add(nm.spell(cand, 0).lower())
                return cand
        raise BenchError(f"facts generator: no look-alike name for group {idx}")


def build_graph(cfg: FactsConfig, vocabulary=None) -> tuple[list[dict], list[list], _Namer]:
    """Groups of entities {type: Entity} plus the held-out (never rendered) ghost names."""
    cfg.validate()
    namer = _Namer(cfg.seed, cfg.exclude_names, vocabulary)
    groups: list[dict] = []
    n_total = cfg.groups + cfg.lookalikes
    for g in range(n_total):
        r = stream(cfg.seed, "group", g)
        src = None
        if g >= cfg.groups:  # a look-alike of an earlier group
            src = groups[stream(cfg.seed, "lookalike-src", g).randrange(cfg.groups)]
        ents = {}
        for t in TYPES:
            if src is not None and t in ("clinic", "drug"):
                word = namer.lookalike(src[t].word, f"{g}:{t}")
            else:
                word = namer.new(t, g)
            ents[t] = Entity(t, f"{t}-{g}", word, lookalike_of=src[t].key if src is not None and t in ("clinic", "drug") else None)
        town_founded = r.randint(1620, 1900)
        clinic_founded = r.randint(max(1950, town_founded + 50), 2005)
        ents["town"].attrs = {"town_founded": town_founded, "town_population": r.randrange(2000, 90000, 10)}
        ents["clinic"].attrs = {"clinic_founded": clinic_founded, "clinic_beds": r.randrange(40, 900, 5),
                                "clinic_specialty": r.randrange(len(CLOSED["specialty"]))}
        ents["drug"].attrs = {"drug_approved": r.randint(clinic_founded + 3, 2023),
                              "drug_indication": r.randrange(len(CLOSED["indication"])),
                              "drug_dose": r.choice((5, 10, 20, 25, 40, 50, 100, 150, 250, 500))}
        ents["person"].attrs = {"person_born": r.randint(1940, 1985),
                                "person_profession": r.randrange(len(CLOSED["profession"]))}
        ents["person"].initials = nm.initials(r)
        for attr in OPTIONAL:
            if stream(cfg.seed, f"missing:{attr}", g).random() < cfg.missing_rate:
                ents["clinic" if attr == "clinic_beds" else "drug"].attrs[attr] = None
        groups.append(ents)
    # relations: the clinic is in its group's town; the director's home town is the next group's town
    for g, ents in enumerate(groups):
        ents["_hometown"] = groups[(g + 1) % len(groups)]["town"]
    ghosts = [namer.new("ghost", i) for i in range(cfg.unanswerable_per_kind * 2)]
    return groups, ghosts, namer


def _value(rel: str, v, lang: str) -> str:
    key = {"clinic_specialty": "specialty", "drug_indication": "indication", "person_profession": "profession"}.get(rel)
    if key:
        return CLOSED[key][v][0 if lang == "en" else 1]
    return str(v)


def facts_of(ents: dict, lang: str) -> list[tuple[str, str, dict, str]]:
    """(relation, subject key, placeholder values, answer) for every stated fact of a group."""
    names = {t: ents[t].name(lang) for t in TYPES}
    home = ents["_hometown"].name(lang)
    out = []
    for rel, (subj, obj) in RELATIONS.items():
        ph = dict(names)
        if rel == "person_hometown":
            ph["town"] = home
            out.append((rel, ents[subj].key, ph, home))
        elif obj is not None:
            out.append((rel, ents[subj].key, ph, names[obj]))
        else:
            v = ents[subj].attrs.get(rel)
            if v is None:
                continue
            ph["value"] = _value(rel, v, lang)
            out.append((rel, ents[subj].key, ph, ph["value"]))
    return out


def render_docs(cfg: FactsConfig, groups: list[dict], lang: str) -> tuple[list[dict], dict[str, list[str]]]:
    """`multiplicity` documents per entity, genres rotating; returns docs and entity key -> doc ids."""
    docs, by_entity = [], {}
    genres = list(GENRES[lang])
    for g, ents in enumerate(groups):
        facts = facts_of(ents, lang)
        for t in TYPES:
            ent = ents[t]
            mine = [f for f in facts if f[1] == ent.key]
            # facts about this entity stated by other entities' relations (e.g. "X heads clinic Y" on the person)
            mine += [f for f in facts if f[1] != ent.key and RELATIONS[f[0]][1] == t and f[0] != "person_hometown"]
            extra = {"clinic": "clinic_open", "drug": "drug_market"}.get(t)
            ids = []
            for k in range(cfg.multiplicity):
                r = stream(cfg.seed, f"doc:{lang}", f"{ent.key}:{k}")
                genre = genres[(g + TYPES.index(t) + k) % len(genres)]
                sents = []
                for rel, _, ph, _ans in mine:
                    sents.append(_tidy(r.choice(STATEMENTS[lang][rel]).format(**ph)))
                if extra:
                    sents.append(r.choice(STATEMENTS[lang][extra]).format(**{x: ent.name(lang) for x in (t,)}))
                r.shuffle(sents)
                name = ent.name(lang)
                if genre == "infobox":
                    text = "\n".join(f"- {s}" for s in sents)
                elif genre == "faq":
                    text = " ".join(sents)
                elif genre == "news":
                    text = r.choice(NEWS_OPENERS[lang]).format(name=name) + " " + " ".join(sents)
                elif genre == "memo":
                    text = r.choice(MEMO_OPENERS[lang]) + " " + " ".join(sents)
                else:
                    text = " ".join(sents)
                doc_id = f"{ent.key}-d{k}"
                docs.append({"id": doc_id, "title": GENRES[lang][genre].format(name=name), "text": text,
                             "entity": ent.key, "genre": genre})
                ids.append(doc_id)
            by_entity[ent.key] = ids
    return docs, by_entity


def _tidy(text: str) -> str:
    """"Е. А.." → "Е. А." where an initial ends a sentence; English "a"/"an"."""
    text = re.sub(r"(?<=[A-ZА-Я])\.\.(?!\.)", ".", text)
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)  # "a epidemiologist" → "an epidemiologist"


def _q(lang: str, rel: str, direction: str, idx: int, ph: dict) -> str:
    return _tidy(QUESTIONS[lang][(rel, direction)][idx].format(**ph))


def questions(cfg: FactsConfig, groups: list[dict], ghosts: list, by_entity: dict, lang: str) -> tuple[list, list]:
    """(train, test) QA items. Train: held-in groups x train templates; test: held-out groups x eval templates."""
    abstain = ABSTAIN[lang]
    n_eval = max(1, round(cfg.groups * cfg.eval_fraction))
    order = sorted(range(len(groups)), key=lambda g: stream(cfg.seed, "split", g).random())
    eval_groups = set(order[:n_eval])
    train, test = [], []

    def item(split, qid, question, answer, doc_ids, **extra):
        row = {"id": qid, "instruction": question, "input": "", "output": answer, "doc_ids": doc_ids, **extra}
        (test if split == "test" else train).append(row)

    for g, ents in enumerate(groups):
        split = "test" if g in eval_groups else "train"
        r = stream(cfg.seed, f"questions:{split}", g)
        cands = []
        for rel, subj_key, ph, ans in facts_of(ents, lang):
            obj = RELATIONS[rel][1]
            cands.append((rel, "fwd", ph, ans, subj_key))
            if obj is not None and (rel, "rev") in QUESTIONS[lang]:
                subj_name = ents[RELATIONS[rel][0]].name(lang)
                obj_key = ents["_hometown"].key if rel == "person_hometown" else ents[obj].key
                cands.append((rel, "rev", ph, subj_name, obj_key))
        if split == "test":
            names = {t: ents[t].name(lang) for t in TYPES}
            cands.append(("drug_town", "fwd", names, names["town"], ents["drug"].key))
            r.shuffle(cands)
            cands = cands[: cfg.questions_per_group]
        for rel, direction, ph, ans, key in cands:
            tmpl = r.choice((3, 4)) if split == "test" else r.randrange(3)
            doc_ids = list(by_entity[key])
            if rel == "drug_town":
                doc_ids += by_entity[ents["clinic"].key]
            lookalike = any(ents[t].lookalike_of for t in ("clinic", "drug"))
            item(split, f"{lang}-{key}-{rel}-{direction}", _q(lang, rel, direction, tmpl, ph), ans, doc_ids,
                 relation=rel, direction=direction, hops=2 if rel == "drug_town" else 1, template=tmpl,
                 entity_group=g, lookalike=lookalike)

    # unanswerable items, three kinds; test uses held-out groups and the first ghosts, train the rest
    year_r = stream(cfg.seed, "premise", 0)
    for split, n in (("test", cfg.unanswerable_per_kind), ("train", cfg.unanswerable_per_kind // 2)):
        pool = sorted(g for g in range(len(groups)) if (g in eval_groups) == (split == "test"))
        tmpls = (3, 4) if split == "test" else (0, 1, 2)
        for i in range(n):  # (a) non-existent entity: a never-rendered name in a real question template
            ghost = ghosts[i if split == "test" else len(ghosts) // 2 + i]
            r = stream(cfg.seed, f"ghost:{split}", i)
            rel = r.choice(["clinic_founded", "clinic_town", "drug_approved", "drug_indication", "clinic_specialty"])
            gname = nm.spell(ghost, 0 if lang == "en" else 1)
            ph = {"clinic": gname, "drug": gname}
            item(split, f"{lang}-ghost{i}-{split}-{rel}", _q(lang, rel, "fwd", r.choice(tmpls), ph), abstain, [],
                 answerable=False, unanswerable="nonexistent_entity", relation=rel)
        missing = [(g, a) for g in pool for a in OPTIONAL
                   if groups[g]["clinic" if a == "clinic_beds" else "drug"].attrs.get(a) is None]
        for i, (g, attr) in enumerate(missing[:n]):  # (b) the entity exists, the attribute is never stated
            ents = groups[g]
            ph = {t: ents[t].name(lang) for t in TYPES}
            key = ents["clinic" if attr == "clinic_beds" else "drug"].key
            item(split, f"{lang}-{key}-{attr}-missing", _q(lang, attr, "fwd", tmpls[i % len(tmpls)], ph), abstain,
                 list(by_entity[key]), answerable=False, unanswerable="missing_attribute", relation=attr)
        for i, g in enumerate(pool[:n]):  # (c) false premise: the clinic never closed, the drug was never withdrawn
            ents = groups[g]
            kind = "premise_clinic" if i % 2 == 0 else "premise_drug"
            ph = {t: ents[t].name(lang) for t in TYPES}
            ph["year"] = year_r.randint(2006, 2023)
            key = ents["clinic" if kind == "premise_clinic" else "drug"].key
            item(split, f"{lang}-{key}-{kind}", _q(lang, kind, "fwd", i % 2, ph), abstain, list(by_entity[key]),
                 answerable=False, unanswerable="false_premise", relation=kind)
    if cfg.paraphrases or cfg.seen_per_group:
        train, test = _injection_items(cfg, train, test, groups, lang)
    return _interleave(cfg, train, "train"), _interleave(cfg, test, "test")


def _injection_items(cfg: FactsConfig, train: list[dict], test: list[dict], groups: list[dict],
                     lang: str) -> tuple[list[dict], list[dict]]:
    """Paraphrased training questions and the verbatim / rephrased test questions (module docstring)."""
    facts = [r for r in train if r.get("answerable", True)]
    paraphrased = []
    for row in facts:
        r = stream(cfg.seed, f"paraphrase:{lang}", row["id"].split("-", 1)[1])
        pairs = [(t, 0) for t in range(3) if t != row["template"]]
        rest = [(t, f) for t in range(3) for f in range(1, len(PARAPHRASE_FRAMES[lang]))]
        r.shuffle(pairs)
        r.shuffle(rest)
        for j, (tmpl, frame) in enumerate((pairs + rest)[: cfg.paraphrases]):
            q = PARAPHRASE_FRAMES[lang][frame].format(q=_q(lang, row["relation"], row["direction"], tmpl,
                                                          _placeholders(groups, row, lang)))
            paraphrased.append({**row, "id": f"{row['id']}-p{j + 1}", "instruction": q, "template": tmpl,
                                "frame": frame, "paraphrase_of": row["id"]})
    seen = []
    by_group: dict[int, list[dict]] = {}
    for row in facts:
        by_group.setdefault(row["entity_group"], []).append(row)
    for g, rows in sorted(by_group.items()):
        r = stream(cfg.seed, f"seen:{lang}", g)
        pick = sorted(rows, key=lambda x: x["id"])
        r.shuffle(pick)
        for row in pick[: cfg.seen_per_group]:
            ph = _placeholders(groups, row, lang)
            base = {k: v for k, v in row.items() if k not in ("id", "instruction", "template")}
            seen.append({**base, "id": f"{row['id']}-verbatim", "instruction": row["instruction"],
                         "template": row["template"], "fact": row["id"], "stratum": "verbatim"})
            seen.append({**base, "id": f"{row['id']}-rephrased", "template": (tmpl := r.choice((3, 4))),
                         "instruction": _q(lang, row["relation"], row["direction"], tmpl, ph), "fact": row["id"],
                         "stratum": "rephrased"})
    if cfg.seen_per_group:
        for row in test:
            row["stratum"] = "docs_only" if row.get("answerable", True) else "unanswerable"
    return train + paraphrased, test + seen


def _placeholders(groups: list[dict], row: dict, lang: str) -> dict:
    """The template placeholders of an answerable item's fact (names of its group, the home town)."""
    ents = groups[row["entity_group"]]
    ph = {t: ents[t].name(lang) for t in TYPES}
    if row["relation"] == "person_hometown":
        ph["town"] = ents["_hometown"].name(lang)
    for rel, _key, fph, _ans in facts_of(ents, lang):
        if rel == row["relation"]:
            return fph
    return ph


def _interleave(cfg: FactsConfig, rows: list[dict], split: str) -> list[dict]:
    """Shuffle answerable items across groups and spread the unanswerable ones evenly (kinds in turn),
    so that any prefix (`bench run --limit N`) is a fair mix of relations, entities and unanswerables."""
    key = lambda r: stream(cfg.seed, f"order:{split}", r["id"].split("-", 1)[1]).random()  # noqa: E731 (same order in every language)
    ans = sorted((r for r in rows if r.get("answerable", True)), key=key)
    kinds: dict[str, list[dict]] = {}
    for r in sorted((r for r in rows if not r.get("answerable", True)), key=key):
        kinds.setdefault(r["unanswerable"], []).append(r)
    un = []
    while any(kinds.values()):
        for k in sorted(kinds):
            if kinds[k]:
                un.append(kinds[k].pop(0))
    if not un:
        return ans
    step = max(1, (len(ans) + len(un)) // len(un))
    out, ai = [], 0
    for i, u in enumerate(un):
        take = step - 1 if i else min(2, len(ans))
        out.extend(ans[ai: ai + take])
        ai += take
        out.append(u)
    out.extend(ans[ai:])
    return out


def task_meta(cfg: FactsConfig, lang: str, name: str) -> dict:
    abstain = ABSTAIN[lang]
    return {
        "name": name, "version": VERSION,
        "description": (("Synthetic new knowledge no model can know: invented towns, clinics, doctors and drugs "
                         "(names checked against real vocabularies), each fact stated in several documents of different "
                         "genres; held-out entities and question templates for evaluation, both directions of relations, "
                         "a 2-hop question, look-alike distractors, and unanswerable questions (non-existent entity, "
                         "missing attribute, false premise) whose right answer is to abstain.")
                        + (" Russian rendering of the same fact graph as `facts`." if lang == "ru" else "")),
        "language": lang, "kind": "qa",
        "metrics": ["exact_match", "f1", "rouge", "abstention", "hallucination"], "main_metric": "f1",
        "source": f"generated by bench.synth.facts v{VERSION} (seed {cfg.seed}); see manifest.json",
        "license": "CC0-1.0 (synthetic)",
        "abstain_phrase": abstain,
        "instruction": ("Answer the question with a short phrase. If the answer is not known, reply exactly: " + abstain
                        if lang == "en" else "Ответь на вопрос коротко. Если ответ неизвестен, ответь ровно: " + abstain),
    }


def generate(cfg: FactsConfig, out: Path, lang: str = "en", name: Optional[str] = None, vocabulary=None) -> dict:
    """Write one rendering of the graph as a task folder; returns its manifest."""
    if lang not in ("en", "ru"):
        raise BenchError(f"facts generator: language must be en or ru, got {lang!r}")
    groups, ghosts, namer = build_graph(cfg, vocabulary)
    docs, by_entity = render_docs(cfg, groups, lang)
    train, test = questions(cfg, groups, ghosts, by_entity, lang)
    stats = {"entities": sum(len(TYPES) for _ in groups), "groups": len(groups), "docs": len(docs),
             "train": len(train), "test": len(test),
             "test_unanswerable": sum(1 for t in test if t.get("answerable") is False),
             "rejected_by_vocabulary": sorted(namer.rejected), "retrieval": difficulty(test, docs)}
    name = name or ("facts" if lang == "en" else f"facts_{lang}")
    config = {**asdict(cfg), "exclude_names": list(cfg.exclude_names), "language": lang}
    return write_task_folder(Path(out), task_meta(cfg, lang, name), {"train": train, "test": test, "docs": docs},
                             generator="bench.synth.facts", version=VERSION, seed=cfg.seed, config=config, stats=stats)
