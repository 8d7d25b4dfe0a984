"""Invented names in two scripts: syllables with a Latin and a Cyrillic form, so EN and RU renderings
of the fact graph name the same entity ("Velmorat" / "Велморат").

Names are checked against real vocabularies by the caller (an `exclude` set of rejected names kept in
the generator config, so regeneration needs no dictionary) and can be mutated into look-alikes
(one vowel changed: edit distance 1) for distractor entities.
"""

from __future__ import annotations

import random

ONSETS = [("b", "б"), ("d", "д"), ("f", "ф"), ("g", "г"), ("k", "к"), ("l", "л"), ("m", "м"), ("n", "н"),
          ("p", "п"), ("r", "р"), ("s", "с"), ("t", "т"), ("v", "в"), ("z", "з"), ("sh", "ш"), ("kh", "х"),
          ("br", "бр"), ("dr", "др"), ("gr", "гр"), ("kr", "кр"), ("tr", "тр"), ("vl", "вл"), ("st", "ст")]
VOWELS = [("a", "а"), ("e", "е"), ("i", "и"), ("o", "о"), ("u", "у")]
CODAS = [("", ""), ("", ""), ("n", "н"), ("r", "р"), ("l", "л"), ("m", "м"), ("s", "с"), ("t", "т"), ("k", "к")]
INITIALS = [("A", "А"), ("B", "Б"), ("V", "В"), ("G", "Г"), ("D", "Д"), ("E", "Е"), ("K", "К"), ("L", "Л"),
            ("M", "М"), ("N", "Н"), ("O", "О"), ("P", "П"), ("R", "Р"), ("S", "С"), ("T", "Т")]

Syllable = tuple[str, str, str]  # onset index, vowel index, coda index as strings of ints "o.v.c"


def make_word(rng: random.Random, n_syll: int) -> list[tuple[int, int, int]]:
    return [(rng.randrange(len(ONSETS)), rng.randrange(len(VOWELS)), rng.randrange(len(CODAS))) for _ in range(n_syll)]


def spell(word: list[tuple[int, int, int]], script: int) -> str:
    """script 0 = Latin, 1 = Cyrillic; capitalised."""
    s = "".join(ONSETS[o][script] + VOWELS[v][script] + CODAS[c][script] for o, v, c in word)
    return s[:1].upper() + s[1:]


def mutate(word: list[tuple[int, int, int]], rng: random.Random) -> list[tuple[int, int, int]]:
    """A look-alike: one syllable's vowel replaced by another (edit distance 1 in both scripts)."""
    out = list(word)
    i = rng.randrange(len(out))
    o, v, c = out[i]
    out[i] = (o, (v + 1 + rng.randrange(len(VOWELS) - 1)) % len(VOWELS), c)
    return out


def initials(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(len(INITIALS)), rng.randrange(len(INITIALS))
    return f"{INITIALS[a][0]}. {INITIALS[b][0]}.", f"{INITIALS[a][1]}. {INITIALS[b][1]}."


# Substrings that make a name read as an obscenity or slur in Russian or English; such names are skipped.
BLOCKED = ("пизд", "писд", "пезд", "песд", "бляд", "блят", "бля", "еба", "ебу", "ебл", "ебо", "ебн", "муд", "жоп",
           "сук", "говн", "дерьм", "срат", "сран", "ссак", "хуй", "хуе", "хер", "шлюх", "пидо", "пида", "залуп", "дроч",
           "трах", "манд", "гавн", "fuck", "shit", "cunt", "dick", "cock", "piss", "slut", "whor", "nig", "fag", "rape",
           "anal", "anus", "tit", "porn", "sex", "kill", "nazi")


def offensive(latin: str, cyrillic: str) -> bool:
    return any(b in latin or b in cyrillic for b in BLOCKED)
