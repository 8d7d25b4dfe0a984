"""`support`: judge-free checks that an answer says nothing its sources do not, for any task and any arm.

ROUGE cannot see a fluent answer that carries a wrong size, a swapped side or a sentence from another
item's report; a judge model adds its own errors and cost. These checks compare the answer with its
*sources* — the task's and the item's instruction, the item's input and the texts the arm showed the
model (`Prediction.sources`: retrieved passages; a fine-tuned arm has nothing else) — with lexicons per
language (`lexicons/support_<lang>.txt`: stopwords, negators, sides, opposite pairs, number words) and
the task's own data. bench.metrics.scoring adds them to every task (`scorers_for`). Per item:

  unsupported_number_rate  1 if the answer states a number that no source states, else 0 (units and
                           ranges read: "19×13 мм", "2.5 cm", "1,2 см" = "12 мм", "5-7 mm", "80 %")
  contradiction_rate       1 if a clause of the answer flips what the source clause it matches says:
                           a side (left/right, слева/справа), a negation (detected / not detected,
                           есть/нет, не выявлено/выявлено) or an opposite pair (hyper-/hypointense)
  novel_term_rate          share of the answer's distinct content terms (stemmed) found neither in its
                           sources, nor in the task's train split, nor in the item's reference: invented vocabulary
  foreign_sentence_rate    1 if a sentence of the answer belongs to another item: at least half of its
                           specific weight (idf) lies in words of other items' sources and not of this
                           item's, and one other item holds >= 80 % of that weight

The task value of each is its mean with a bootstrap interval: "20 % of answers carry an unsupported number";
novel_term_rate is the mean share of invented terms. The reason of every score lists the offending spans.
An empty answer or a one-sentence abstention asserts nothing and scores 0 on all four (a longer answer
that abstains is checked like any other); a failed prediction is None (counted in n_failed). Numbers and terms the item's reference states are never flagged (a correct
recalled fact is not a hallucination); contradictions are judged against the sources only.

An "item's source" for foreign sentences is its instruction, input and the documents its `doc_ids` name
(the answer passage a perfect retriever would show); words that occur only in outputs (report boilerplate)
never make a sentence foreign.

Optional: `configure(nli_model=...)` (the run config's `support.nli_model`) adds `unentailed_sentence_rate`,
the share of answer sentences that an NLI / fact-checking cross-encoder does not find entailed by any
source passage. It is the one metric that loads a model (transformers, lazily); it is off by default.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

from bench.errors import BenchError
from bench.metrics.abstention import detect as detect_abstention
from bench.metrics.base import Metric, references
from bench.metrics.text import stemmer
from bench.registry import METRICS
from bench.textnorm import split_sentences
from bench.types import Example, Score, Task

NAMES = ("unsupported_number_rate", "contradiction_rate", "novel_term_rate", "foreign_sentence_rate")
NLI_NAME = "unentailed_sentence_rate"
_LEX_DIR = Path(__file__).resolve().parent / "lexicons"

# foreign sentences: how much more idf weight another item's source must explain than this item's sources,
# through how many terms this item's sources lack
FOREIGN_MARGIN = 1.5
FOREIGN_MIN_TERMS = 1
FREE_TERM_SHARE = 0.1  # a term the train references use without their source this often is not evidence
# contradictions: the least idf weight an answer clause must share with a source sentence to be compared with it
MATCH_MIN_WEIGHT = 1.0
# a sentence whose term set recurs in this share of the train references is boilerplate: never foreign,
# never compared with the source (the references state it whatever the input)
BOILERPLATE_SHARE = 0.02
BOILERPLATE_MIN_COUNT = 3
MAX_LISTED = 5  # offending spans listed in a reason


# -- lexicons -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WordSet:
    """Lexicon entries: whole words, prefixes (entries ending in *) and phrases (several words)."""

    words: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()
    # the phrases by first word, in their order (a phrase's first word matches whole): scoring asks
    # phrase_at of every token of every text, and most tokens start no phrase
    _by_first: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_first: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for ph in self.phrases:
            by_first[ph[0]].append(ph)
        object.__setattr__(self, "_by_first", {w: tuple(v) for w, v in by_first.items()})

    def has(self, token: str) -> bool:
        return token in self.words or token.startswith(self.prefixes)

    @property
    def phrase_starts(self) -> frozenset[str]:
        """The words a phrase of this set can start with (a phrase's first word matches whole)."""
        return frozenset(self._by_first)

    def phrase_at(self, tokens: Sequence[str], i: int) -> int:
        """Length of the phrase of this set that starts at tokens[i], else 0."""
        for ph in self._by_first.get(tokens[i], ()):
            n = len(ph)
            if tuple(tokens[i:i + n - 1]) == ph[:-1] and i + n <= len(tokens) and _entry_match(tokens[i + n - 1], ph[-1]):
                return n
        return 0


def _entry_match(token: str, entry: str) -> bool:
    return token.startswith(entry[:-1]) if entry.endswith("*") else token == entry


def _word_set(entries: list[str]) -> WordSet:
    words, prefixes, phrases = set(), [], []
    for e in entries:
        toks = [t for t in re.split(r"[\s\-]+", e) if t]
        if len(toks) > 1:
            phrases.append(tuple(toks))
        elif toks[0].endswith("*"):
            prefixes.append(toks[0][:-1])
        else:
            words.add(toks[0])
    return WordSet(frozenset(words), tuple(prefixes), tuple(phrases))


@dataclass(frozen=True)
class Lexicon:
    """The union of every `support_<lang>.txt` (texts mix languages: an English sentence in a Russian answer)."""

    stopwords: WordSet
    negators: WordSet
    sides: tuple[tuple[str, WordSet], ...]  # ("left", ...), ("right", ...), ("both", ...)
    opposites: tuple[tuple[WordSet, WordSet], ...]
    numbers: tuple[tuple[str, float], ...]  # (entry, value)

    def number_value(self, token: str) -> Optional[float]:
        for entry, value in self.numbers:
            if _entry_match(token, entry):
                return value
        return None

    def opposite_of(self, token: str) -> Optional[tuple[int, int]]:
        """(pair index, 0 or 1) when the token is a member of an opposite pair."""
        for k, (a, b) in enumerate(self.opposites):
            if a.has(token):
                return k, 0
            if b.has(token):
                return k, 1
        return None


@lru_cache(maxsize=None)
def lexicon() -> Lexicon:
    """Every support lexicon of bench/metrics/lexicons, merged (see support_en.txt for the format)."""
    sections: dict[str, list[str]] = defaultdict(list)
    files = sorted(_LEX_DIR.glob("support_*.txt"))
    if not files:
        raise BenchError(f"{_LEX_DIR}: no support_<lang>.txt lexicon; reinstall bench (`pip install -e .`)")
    for path in files:
        section = None
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                continue
            if section is None:
                raise BenchError(f"{path}:{n}: an entry before any [section]; start the file with e.g. [stopwords]")
            sections[section].append(_fold(line))
    pairs = []
    for line in sections["opposites"]:
        a, _, b = line.partition("|")
        if not b.strip():
            raise BenchError(f"{_LEX_DIR}: opposite pair {line!r} needs the form 'a | b'")
        pairs.append((_word_set([a.strip()]), _word_set([b.strip()])))
    numbers = []
    for line in sections["numbers"]:
        word, _, value = line.partition("=")
        numbers.append((word.strip(), float(value)))
    return Lexicon(
        stopwords=_word_set(sections["stopwords"]), negators=_word_set(sections["negators"]),
        sides=tuple((s, _word_set(sections[s])) for s in ("left", "right", "both")),
        opposites=tuple(pairs), numbers=tuple(numbers),
    )


# -- words and stems ----------------------------------------------------------------------------------
_WORD = re.compile(r"\w+", re.UNICODE)
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def _fold(text: str) -> str:
    """NFKC, lower case, ё→е, typographic apostrophes straightened, "n't" read as " not"."""
    t = unicodedata.normalize("NFKC", text).lower().replace("ё", "е")
    t = re.sub(r"[’ʼ`]", "'", t)
    return re.sub(r"n't\b", " not", t)


def _tokens(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


@lru_cache(maxsize=200_000)
def stem(token: str, language: str = "en") -> str:
    """The token's stem: Snowball Russian for Cyrillic words, the task language's stemmer for the others
    (Porter for English and for languages without one); words of up to 3 letters are kept whole."""
    if len(token) <= 3 or token.isdigit():
        return token
    lang = "ru" if _CYRILLIC.search(token) else (language[:2] if language[:2] != "ru" else "en")
    fn = stemmer(lang) or stemmer("en")
    return fn(token)


def content_terms(text: str, language: str = "en") -> set[str]:
    """Stems of the words that carry content: no stopwords, negators, sides, numbers or 1-2 letter words."""
    return {t for t, _ in _content(_tokens(text), language)}


def _content(tokens: list[str], language: str) -> list[tuple[str, str]]:
    """(stem, word) of each content word of a token list."""
    lex = lexicon()
    starts = _side_phrase_starts()
    out = []
    skip = 0
    for i, tok in enumerate(tokens):
        if skip:
            skip -= 1
            continue
        if tok in starts:
            n = max((ws.phrase_at(tokens, i) for _, ws in lex.sides), default=0)
            if n:
                skip = n - 1
                continue
        term = _content_stem(tok, language)
        if term is not None:
            out.append((term, tok))
    return out


@lru_cache(maxsize=None)
def _side_phrase_starts() -> frozenset[str]:
    """First words of the side phrases ("left sided", "с обеих сторон"): only these tokens can start one."""
    return frozenset().union(*(ws.phrase_starts for _, ws in lexicon().sides))


@lru_cache(maxsize=200_000)
def _content_stem(tok: str, language: str) -> Optional[str]:
    """The stem of a word that carries content, None for stopwords, negators, sides, numbers and 1-2 letter
    words (cached: scoring meets the same words in every answer and source)."""
    lex = lexicon()
    if (len(tok) < 3 or any(ch.isdigit() for ch in tok) and not any(ch.isalpha() for ch in tok)
            or lex.stopwords.has(tok) or lex.negators.has(tok) or any(ws.has(tok) for _, ws in lex.sides)):
        return None
    return stem(tok, language)


# -- numbers ------------------------------------------------------------------------------------------
_NUM = r"\d+(?:[.,]\d+)*"
_SEP = r"\s*(?:[x×х*]|-|–|—|\.\.\.?|…|до|to)\s*"
_NUMBER_GROUP = re.compile(rf"(?<![\w.,])({_NUM}(?:{_SEP}{_NUM})*)(?:(\s*)(%|[^\W\d_]+))?", re.UNICODE)
_ORDINAL = re.compile(r"^(?:st|nd|rd|th|й|я|е|го|м|х|ти|ми|ей)$")
_LENGTH_MM = {"mm": 1.0, "мм": 1.0, "cm": 10.0, "см": 10.0, "m": 1000.0, "м": 1000.0, "km": 1e6, "км": 1e6,
              "µm": 0.001, "мкм": 0.001, "dm": 100.0, "дм": 100.0}
_PERCENT = ("%", "percent", "процент")


@dataclass(frozen=True)
class Number:
    """A number mention: its text, its values (several for "19×13" or "5-7"), and its dimension."""

    span: str
    values: tuple[float, ...]  # in the dimension's canonical unit (mm for lengths)
    raw: tuple[float, ...]  # as written
    dimension: str  # "length" | "percent" | "" (no unit read)
    versions: tuple[str, ...] = ()  # dotted multi-part numbers ("2.6.32"), compared as strings


def _parse_number(s: str, language: str) -> list[tuple[Optional[float], Optional[str]]]:
    """Interpretations of one written number as (value, version string); several when it is ambiguous."""
    seps = re.findall(r"[.,]", s)
    parts = re.split(r"[.,]", s)
    if not seps:
        return [(float(s), None)]
    if len(seps) >= 2:
        if len(set(seps)) == 1 and all(len(p) == 3 for p in parts[1:]):
            return [(float("".join(parts)), None), (None, s)]
        return [(None, s)]
    whole, frac = parts
    decimal = float(f"{whole}.{frac}")
    if seps[0] == "," and len(frac) == 3:
        thousands = float(whole + frac)
        return [(thousands, None), (decimal, None)] if language.startswith("en") else [(decimal, None), (thousands, None)]
    return [(decimal, None)]


def numbers_in(text: str, language: str = "en", all_readings: bool = False) -> list[Number]:
    """Every number mention of a text with units and ranges read ("1,2 см" → 12 mm; "5-7 mm" → 5 and 7 mm).

    Numbers inside words (T1, x86_64, i386) are not numbers. all_readings: keep every reading of an
    ambiguous number ("1,200": 1200 and 1.2) — used on sources, where a reading can only add support.
    """
    out = []
    for m in _NUMBER_GROUP.finditer(_fold(text)):
        body, space, word = m.group(1), m.group(2), m.group(3) or ""
        if word and not space and word != "%" and not _is_unit(word) and not _ORDINAL.match(word):
            continue  # digits glued to letters are part of a word ("3d", "2fa", "64bit")
        unit = word if _is_unit(word) else ""
        scale, dimension = _unit(unit)
        values, raw, versions = [], [], []
        for num in re.findall(_NUM, body):
            readings = _parse_number(num, language)
            for value, version in (readings if all_readings else readings[:1]):
                if version is not None:
                    versions.append(version)
                else:
                    raw.append(value)
                    values.append(value * scale)
        span = (body + space + unit) if unit else body
        out.append(Number(span.strip(), tuple(values), tuple(raw), dimension, tuple(versions)))
    return out


def _is_unit(word: str) -> bool:
    return word in _LENGTH_MM or any(word.startswith(p) for p in _PERCENT)


def _unit(word: str) -> tuple[float, str]:
    if word in _LENGTH_MM:
        return _LENGTH_MM[word], "length"
    if word and any(word.startswith(p) for p in _PERCENT):
        return 1.0, "percent"
    return 1.0, ""


@dataclass
class NumberSupport:
    """What the sources state, by dimension: the values a number in an answer may take."""

    by_dimension: dict[str, set[float]] = field(default_factory=lambda: defaultdict(set))
    unitless: set[float] = field(default_factory=set)
    any_value: set[float] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)

    def add_text(self, text: str, language: str) -> None:
        for n in numbers_in(text, language, all_readings=True):
            self.versions.update(n.versions)
            for v in n.versions:  # "11.1" also supports "11"
                self.unitless.add(_key(float(v.split(".")[0].split(",")[0])))
            for v, r in zip(n.values, n.raw):
                self.any_value.update((_key(v), _key(r)))
                if n.dimension:
                    self.by_dimension[n.dimension].add(_key(v))
                else:
                    self.unitless.add(_key(r))
                    if math.isfinite(r):
                        self.unitless.add(_key(math.floor(r)))
        lex = lexicon()
        for tok in _tokens(text):
            value = lex.number_value(tok)
            if value is not None:
                self.unitless.add(_key(value))
                self.any_value.add(_key(value))

    def unsupported(self, n: Number) -> list[str]:
        """The values of a mention that no source states (as written)."""
        bad = [v for v in n.versions if v not in self.versions]
        for v, r in zip(n.values, n.raw):
            if n.dimension:
                ok = _key(v) in self.by_dimension.get(n.dimension, ()) or _key(r) in self.unitless
            else:
                ok = _key(r) in self.any_value or _key(r) in self.unitless
            if not ok:
                bad.append(_fmt(r))
        return bad


def _key(v: float) -> float:
    return round(v, 6)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


# -- clauses ------------------------------------------------------------------------------------------
_CLAUSE_SPLIT = re.compile(r"(?i)(?<!\d),|,(?!\d)|;|\(|\)|\[|\]|\s[—–-]\s|\b(?:but|however|whereas|но|однако)\b")
_SOURCE_SENTENCE = re.compile(r"(?<=[.!?…;:])\s*\n\s*|\n(?=\s*(?:\d+[.)]|[-•*]))|(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Clause:
    """What one clause asserts: its content stems, whether it is negated, its sides and opposite words."""

    text: str
    terms: frozenset[str]  # content stems (and "~k" for the opposite pair k)
    negated: bool
    sides: frozenset[str]  # left / right
    opposites: tuple[tuple[int, int], ...]  # (pair, member)
    negated_terms: frozenset[str] = frozenset()  # the terms a negator governs


def clause_of(text: str, language: str) -> Clause:
    """Read one clause: its sides, its content terms, and which of them a negator governs.

    A negator governs the terms after it in the clause ("не накапливающий контрастное вещество", "is not
    enabled"); one that ends the clause governs all of it ("контрастное усиление: нет", "lesions: none").
    """
    lex = lexicon()
    toks = _tokens(text)
    sides: set[str] = set()
    i = 0
    while i < len(toks):
        n = 0
        for side, ws in lex.sides:
            n = ws.phrase_at(toks, i)
            if n or ws.has(toks[i]):
                sides |= {"left", "right"} if side == "both" else {side}
                break
        i += max(n, 1)
    opposites = []
    placed: list[tuple[int, str]] = []  # (token position, term)
    negators: list[int] = []
    for pos, tok in enumerate(toks):
        if lex.negators.has(tok):
            negators.append(pos)
            continue
        opp = lex.opposite_of(tok)
        if opp:
            opposites.append(opp)
            placed.append((pos, f"~{opp[0]}"))
        else:
            placed.extend((pos, s) for s, _ in _content([tok], language))
    last_term = max((p for p, _ in placed), default=-1)
    scope = {t for p, t in placed if any(n < p or n > last_term for n in negators)}
    terms = frozenset(t for _, t in placed)
    return Clause(text.strip(), terms, bool(negators), frozenset(sides), tuple(sorted(set(opposites))), frozenset(scope))


def clauses_of(sentence: str, language: str) -> list[Clause]:
    return [clause_of(c, language) for c in _CLAUSE_SPLIT.split(sentence) if c and c.strip()]


def source_sentences(text: str) -> list[str]:
    """Sentences of a source: at sentence punctuation, and at line breaks that end a sentence or start a
    list item (a document's line wrapping inside a sentence is not a break)."""
    return [s.strip() for s in _SOURCE_SENTENCE.split(text) if s and s.strip()]


@dataclass(frozen=True)
class SourceSentence:
    text: str
    terms: frozenset[str]  # content stems + numbers, for matching
    sides: frozenset[str]
    clauses: tuple[Clause, ...]


def _match_terms(text: str, language: str) -> frozenset[str]:
    nums = {_fmt(v) for n in numbers_in(text, language) for v in n.raw}
    return frozenset(content_terms(text, language) | nums)


# -- the task's index (built once per task) --------------------------------------------------------------
@dataclass
class TaskIndex:
    """Per-task facts the checks need: the training vocabulary, each item's source terms and their idf."""

    train_vocab: frozenset[str]
    profiles: dict[str, frozenset[str]]  # item id → content stems of its source (instruction, input, gold docs)
    postings: dict[str, tuple[str, ...]]  # stem → item ids whose source holds it
    idf: dict[str, float]
    max_idf: float
    docs: dict[str, str]
    boilerplate: frozenset[frozenset[str]]  # term sets of sentences the train references repeat (>= 2 %)
    free_terms: frozenset[str]  # terms the train references use whatever their sources say ("контрастное вещество")

    def weight(self, term: str) -> float:
        return self.idf.get(term, self.max_idf)


_INDEX: dict[object, tuple[Task, TaskIndex]] = {}


def task_index(task: Task) -> TaskIndex:
    """The task's index, cached per task: by its files' hashes when it was read from a folder, else per task
    object (the cache holds the task, so its id is not reused while cached)."""
    key = (task.name, task.version, task.sha256) if task.files_sha256 else id(task)
    hit = _INDEX.get(key)
    if hit is not None and (task.files_sha256 or hit[0] is task):
        return hit[1]
    lang = task.language
    docs = {d.id: f"{d.title}. {d.text}" if d.title else d.text for d in task.docs}
    vocab: set[str] = content_terms(task.instruction, lang)
    repeated: Counter = Counter()
    for ex in task.train:
        vocab |= content_terms(f"{ex.instruction}\n{ex.input}\n{ex.output}", lang)
        repeated.update({frozenset(content_terms(s, lang)) for s in split_sentences(ex.output)})
    floor = max(BOILERPLATE_MIN_COUNT, BOILERPLATE_SHARE * len(task.train))
    boilerplate = frozenset(k for k, c in repeated.items() if k and c >= floor)
    profiles = {}
    for ex in (*task.train, *task.test):
        text = "\n".join([ex.instruction, ex.input, *(docs[d] for d in ex.doc_ids if d in docs)])
        profiles[ex.id] = frozenset(content_terms(text, lang))
    bound, free = Counter(), Counter()  # per term: train references that use it with / without their source
    for ex in task.train:
        for t in content_terms(ex.output, lang):
            (bound if t in profiles[ex.id] else free)[t] += 1
    free_terms = frozenset(t for t, c in free.items() if c >= 2 and c > FREE_TERM_SHARE * (c + bound[t]))
    df = Counter(t for p in profiles.values() for t in p)
    n = max(len(profiles), 1)
    idf = {t: math.log((n + 1) / (c + 1)) for t, c in df.items()}
    postings: dict[str, list[str]] = defaultdict(list)
    for item, terms in profiles.items():
        for t in terms:
            postings[t].append(item)
    index = TaskIndex(frozenset(vocab), profiles, {t: tuple(v) for t, v in postings.items()}, idf,
                      math.log(n + 1), docs, boilerplate, free_terms)
    if len(_INDEX) >= 8:
        _INDEX.pop(next(iter(_INDEX)))
    _INDEX[key] = (task, index)
    return index


# -- the checks ---------------------------------------------------------------------------------------
@dataclass
class SupportResult:
    """The offending spans of one answer, and what they were counted among."""

    numbers: int = 0
    unsupported_numbers: list[str] = field(default_factory=list)
    contradictions: list[tuple[str, str, str]] = field(default_factory=list)  # (side|negation|opposite, clause, source)
    terms: int = 0
    novel_terms: list[str] = field(default_factory=list)
    sentences: int = 0
    foreign_sentences: list[tuple[str, str]] = field(default_factory=list)  # (sentence, the other item's id)

    def scores(self) -> dict[str, Score]:
        """The four per-item Scores with reasons that list the offending spans."""
        nums = (f"{len(self.unsupported_numbers)} of {self.numbers} number(s) unsupported: {_listed(self.unsupported_numbers)}"
                if self.unsupported_numbers else f"all {self.numbers} number(s) in the sources" if self.numbers
                else "no numbers")
        flips = [f"{kind} {clause!r} vs source {src!r}" for kind, clause, src in self.contradictions]
        contra = (f"{len(flips)} flip(s): {_listed(flips, quote=False)}" if flips
                  else "no flip against the sources")
        novel = (f"{len(self.novel_terms)} of {self.terms} content term(s) novel: {_listed(self.novel_terms)}"
                 if self.novel_terms else f"all {self.terms} content term(s) known" if self.terms else "no content terms")
        foreign_spans = [f"{s!r} (source of {item})" for s, item in self.foreign_sentences]
        foreign = (f"{len(foreign_spans)} of {self.sentences} sentence(s) foreign: {_listed(foreign_spans, quote=False)}"
                   if self.foreign_sentences else f"no foreign sentence among {self.sentences}")
        return {
            "unsupported_number_rate": Score("unsupported_number_rate", float(bool(self.unsupported_numbers)), nums),
            "contradiction_rate": Score("contradiction_rate", float(bool(self.contradictions)), contra),
            "novel_term_rate": Score("novel_term_rate", len(self.novel_terms) / self.terms if self.terms else 0.0, novel),
            "foreign_sentence_rate": Score("foreign_sentence_rate", float(bool(self.foreign_sentences)), foreign),
        }


def _listed(spans: list[str], quote: bool = True) -> str:
    shown = [_short(s) if quote else s for s in spans[:MAX_LISTED]]
    more = f" (+{len(spans) - MAX_LISTED} more)" if len(spans) > MAX_LISTED else ""
    return "; ".join(repr(s) if quote else s for s in shown) + more


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def source_texts(example: Example, task: Task, sources: Sequence[str] = ()) -> list[str]:
    """What the arm had: the task's and the item's instruction, the item's input, the passages it was shown."""
    return [t for t in (task.instruction, example.instruction, example.input, *sources) if t and t.strip()]


def check(answer: str, example: Example, task: Task, sources: Sequence[str] = (),
          refs: Optional[Sequence[str]] = None) -> SupportResult:
    """Every check of one answer against its sources (see the module docstring).

    refs: texts whose numbers and terms are never flagged; default the item's references (gold answers).
    The perturbation benchmark passes () because the text it checks is a perturbed reference.
    """
    lang = task.language
    index = task_index(task)
    texts = source_texts(example, task, sources)
    refs = references(example) if refs is None else list(refs)
    res = SupportResult()

    # numbers
    support = NumberSupport()
    for t in (*texts, *refs):
        support.add_text(t, lang)
    for n in numbers_in(answer, lang):
        res.numbers += 1
        bad = support.unsupported(n)
        if bad:
            res.unsupported_numbers.append(n.span if len(bad) == len(n.raw) + len(n.versions) else f"{n.span} ({', '.join(bad)})")

    # novel terms
    known = set(index.train_vocab)
    for t in (*texts, *refs):
        known |= content_terms(t, lang)
    seen: dict[str, str] = {}
    for s, w in _content(_tokens(answer), lang):
        seen.setdefault(s, w)
    res.terms = len(seen)
    res.novel_terms = [w for s, w in seen.items() if s not in known]

    # contradictions
    src_sentences = [_source_sentence(s, lang) for t in texts for s in source_sentences(t)]
    res.contradictions = _contradictions(answer, src_sentences, index, lang)

    # foreign sentences
    home = set()
    for t in (*texts, *(index.docs[d] for d in example.doc_ids if d in index.docs)):
        home |= content_terms(t, lang)
    sentences = split_sentences(answer)
    res.sentences = len(sentences)
    for s in sentences:
        if frozenset(content_terms(s, lang)) in index.boilerplate:
            continue
        other = _foreign_to(s, home, example.id, index, lang)
        if other:
            res.foreign_sentences.append((s, other))
    return res


@lru_cache(maxsize=4096)
def _source_sentence(text: str, lang: str) -> SourceSentence:
    clauses = tuple(clauses_of(text, lang))
    sides = frozenset().union(*(c.sides for c in clauses)) if clauses else frozenset()
    return SourceSentence(text, _match_terms(text, lang), sides, clauses)


def _contradictions(answer: str, src: list[SourceSentence], index: TaskIndex, lang: str) -> list[tuple[str, str, str]]:
    """Clauses of the answer whose side, negation or opposite word differs from the source clause they match.

    Each answer clause is compared within one source sentence: the one sharing the most idf weight with
    the clause and its sentence; within it, with the clause(s) sharing the most words. A flip counts only
    when no equally good source clause agrees. Boilerplate sentences are not compared.
    """
    if not src:
        return []
    out = []
    for sentence in split_sentences(answer):
        if frozenset(content_terms(sentence, lang)) in index.boilerplate:
            continue
        sentence_terms = _match_terms(sentence, lang)
        for c in clauses_of(sentence, lang):
            ctx = _best_sentences(c.terms | _match_terms(c.text, lang), sentence_terms, src, index)
            if not ctx:
                continue
            src_sides = frozenset().union(*(s.sides for s in ctx))
            if c.sides and src_sides and not c.sides <= src_sides:
                out.append(("side", c.text, _short(ctx[0].text)))
                continue
            flip = _polarity_flip(c, [sc for s in ctx for sc in s.clauses], index.free_terms)
            if flip:
                out.append((flip[0], c.text, _short(flip[1].text)))
    return out


def _best_sentences(clause: frozenset[str], sentence: frozenset[str], src: list[SourceSentence],
                    index: TaskIndex) -> list[SourceSentence]:
    """The source sentences sharing the most idf weight with the clause plus its sentence (ties kept), if the
    weight reaches MATCH_MIN_WEIGHT (the sentence places a short clause: "не накапливающий контрастное
    вещество" belongs to the finding its sentence names)."""
    best, top = [], 0.0
    for s in src:
        w = sum(index.weight(t) for t in clause & s.terms) + sum(index.weight(t) for t in sentence & s.terms)
        if w > top + 1e-9:
            best, top = [s], w
        elif w > 0 and abs(w - top) <= 1e-9:
            best.append(s)
    return best if top >= MATCH_MIN_WEIGHT else []


def _polarity_flip(c: Clause, candidates: list[Clause], free: frozenset[str]) -> Optional[tuple[str, Clause]]:
    """('negation' or 'opposite', the source clause) when the best-matching source clauses all disagree with c.

    Clauses match on shared words, leaving out the free terms (words the references use whatever the source).
    """
    mine_terms = c.terms - free
    if not mine_terms:
        return None
    scored = [(len(mine_terms & s.terms), s) for s in candidates]
    top = max((k for k, _ in scored), default=0)
    need = max(1, math.ceil(0.5 * min(len(mine_terms), min((len(s.terms) for k, s in scored if k == top), default=1))))
    if top < need:
        return None
    best = [s for k, s in scored if k == top]
    mine = dict(c.opposites)

    def verdict(s: Clause) -> Optional[str]:
        theirs = dict(s.opposites)
        shared = mine_terms & s.terms
        negated_here, negated_there = bool(shared & c.negated_terms), bool(shared & s.negated_terms)
        opposite = any(k in theirs and theirs[k] != v for k, v in mine.items())
        if opposite and negated_here == negated_there:
            return "opposite"
        if not opposite and negated_here != negated_there:
            return "negation"
        return None

    verdicts = [verdict(s) for s in best]
    return (verdicts[0], best[0]) if all(verdicts) else None


def _foreign_to(sentence: str, home: set[str], item_id: str, index: TaskIndex, lang: str) -> Optional[str]:
    """The other item whose source explains this sentence better than this item's does, if any.

    Explained weight: the idf of the sentence's content terms that a source holds, leaving out the terms the
    train references use whatever their sources say (free terms). The sentence is foreign
    when another item's source explains at least FOREIGN_MARGIN more than this item's sources do, through
    at least FOREIGN_MIN_TERMS terms that this item's sources lack.
    """
    terms = content_terms(sentence, lang) - index.free_terms
    w_home = sum(index.weight(t) for t in terms if t in home)
    cover: Counter = Counter()
    outside: Counter = Counter()
    for t in terms:
        for item in index.postings.get(t, ()):
            if item != item_id:
                cover[item] += index.weight(t)
                outside[item] += t not in home
    best = max(cover, key=lambda j: (cover[j], j), default=None)
    if best is None or outside[best] < FOREIGN_MIN_TERMS or cover[best] - w_home < FOREIGN_MARGIN:
        return None
    return best


# -- the registered metrics ---------------------------------------------------------------------------
@METRICS.register("support")
class Support(Metric):
    names = NAMES
    higher_is_better = False
    inputs = ("sources",)  # score_prediction passes Prediction.sources
    description = "judge-free source support: unsupported numbers, flips, invented terms, foreign sentences"

    def score(self, answer: str, example: Example, task: Task, sources: Sequence[str] = ()) -> dict[str, Score]:
        """The four support scores of one answer against its sources (module docstring)."""
        abstained, phrase = detect_abstention(answer, task.language, (task.abstain_phrase,))
        if abstained and len(split_sentences(answer)) <= 1:  # a longer answer may abstain and still assert
            why = "empty answer: asserts nothing" if phrase == "<empty answer>" else f"abstained ({phrase!r}): asserts nothing"
            return {n: Score(n, 0.0, why) for n in NAMES}
        return check(answer, example, task, sources).scores()


# -- optional model-based check -------------------------------------------------------------------------
@dataclass
class _NliState:
    model: Optional[str] = None
    loaded: Optional[tuple] = None  # (tokenizer, model, entailment label index or None for 1-logit models)


_NLI = _NliState()


def configure(nli_model: Optional[str] = None) -> None:
    """Turn the model-based check on (an HF id or local path of an NLI / fact-checking cross-encoder) or off (None).

    The runner calls it with the run config's `support.nli_model` in every process that scores cells;
    the model is loaded on first use.
    """
    if nli_model != _NLI.model:
        _NLI.model, _NLI.loaded = nli_model, None


def nli_enabled() -> bool:
    """Whether `configure` named an NLI model (then `support_nli` scores every task too)."""
    return bool(_NLI.model)


def _nli():
    if _NLI.loaded is None:
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError:
            raise BenchError("support.nli_model needs transformers; run `pip install -e .`") from None
        try:
            tok = AutoTokenizer.from_pretrained(_NLI.model)
            model = AutoModelForSequenceClassification.from_pretrained(_NLI.model).eval()
        except OSError as e:
            raise BenchError(f"support.nli_model {_NLI.model!r}: cannot load it ({e}); give a local path or a "
                             "reachable Hugging Face id of a sequence-classification model") from None
        labels = {int(k): str(v).lower() for k, v in model.config.id2label.items()}
        if model.config.num_labels == 1:
            entail = None
        else:
            hits = [k for k, v in labels.items() if ("entail" in v or v in ("supported", "support", "consistent"))
                    and not v.startswith(("not", "non", "no_"))]
            if len(hits) != 1:
                raise BenchError(f"support.nli_model {_NLI.model!r}: no single entailment label in its config "
                                 f"(id2label={labels}); use an NLI model with an 'entailment' label")
            entail = hits[0]
        _NLI.loaded = (tok, model, entail)
    return _NLI.loaded


def entailment_probabilities(premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 16) -> list[float]:
    """P(entailed) of each (premise, hypothesis) pair under the configured NLI model."""
    import torch

    tok, model, entail = _nli()
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(premises), batch_size):
            enc = tok(list(premises[i:i + batch_size]), list(hypotheses[i:i + batch_size]), truncation="only_first",
                      padding=True, max_length=min(getattr(tok, "model_max_length", 512), 512), return_tensors="pt")
            logits = model(**enc).logits
            probs = torch.sigmoid(logits[:, 0]) if entail is None else torch.softmax(logits, dim=-1)[:, entail]
            out.extend(float(p) for p in probs)
    return out


def _premises(texts: Sequence[str], max_words: int = 200) -> list[str]:
    """Source texts cut into passages of at most max_words words at sentence boundaries."""
    out = []
    for t in texts:
        cur: list[str] = []
        for s in source_sentences(t):
            if cur and sum(len(x.split()) for x in cur) + len(s.split()) > max_words:
                out.append(" ".join(cur))
                cur = []
            cur.append(s)
        if cur:
            out.append(" ".join(cur))
    return out


@METRICS.register("support_nli")
class SupportNli(Metric):
    names = (NLI_NAME,)
    higher_is_better = False
    inputs = ("sources",)
    description = "share of answer sentences an NLI cross-encoder finds not entailed by the sources (support.nli_model)"

    def score(self, answer: str, example: Example, task: Task, sources: Sequence[str] = ()) -> dict[str, Score]:
        """Share of the answer's sentences whose best P(entailed) over the source passages is below 0.5."""
        if not _NLI.model:
            return {NLI_NAME: Score(NLI_NAME, None, "no NLI model: set support.nli_model in the run config")}
        abstained, _ = detect_abstention(answer, task.language, (task.abstain_phrase,))
        sentences = split_sentences(answer)
        if abstained or not sentences:
            return {NLI_NAME: Score(NLI_NAME, 0.0, "asserts nothing")}
        premises = _premises(source_texts(example, task, sources))
        pairs = [(p, s) for s in sentences for p in premises]
        probs = entailment_probabilities([p for p, _ in pairs], [s for _, s in pairs])
        best = [max(probs[i * len(premises):(i + 1) * len(premises)]) for i in range(len(sentences))]
        bad = [s for s, p in zip(sentences, best) if p < 0.5]
        why = (f"{len(bad)} of {len(sentences)} sentence(s) not entailed: {_listed(bad)}" if bad
               else f"all {len(sentences)} sentence(s) entailed")
        return {NLI_NAME: Score(NLI_NAME, len(bad) / len(sentences), why)}
