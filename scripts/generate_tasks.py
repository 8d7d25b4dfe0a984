#!/usr/bin/env python
"""Regenerate the synthetic built-in tasks (facts, facts_ru, mri_reports_ru) and their manifests.

Names of the fact graph are checked against real vocabularies when the dictionaries are given
(Debian `wamerican` and `hunspell-ru`: `apt-get download wamerican hunspell-ru`, `dpkg -x`); the names
they reject are written into the config's exclude_names, so the committed folders regenerate bit for
bit without the dictionaries (`--no-vocab`, what the determinism test does for the tiny config).

    python scripts/generate_tasks.py --words /usr/share/dict/american-english --hunspell-ru /usr/share/hunspell/ru_RU.dic
    python scripts/generate_tasks.py --no-vocab         # reuse the exclude_names recorded in tasks/facts/manifest.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synth import facts, mri  # noqa: E402
from bench.synth.common import folder_digest  # noqa: E402


def load_vocabulary(words: Path | None, hunspell: Path | None):
    en: set[str] = set()
    ru: set[str] = set()
    if words:
        en = {w.strip().lower() for w in words.read_text(encoding="utf-8", errors="ignore").splitlines() if w.strip()}
        en = {re.sub(r"'s$", "", w) for w in en}
    if hunspell:
        lines = hunspell.read_text(encoding="utf-8", errors="ignore").splitlines()[1:]
        ru = {ln.split("/")[0].strip().lower() for ln in lines if ln.strip()}
    print(f"vocabulary: {len(en)} English words, {len(ru)} Russian stems")
    return lambda lat, cyr: lat in en or cyr in ru or cyr.replace("ё", "е") in ru


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=Path, help="English word list (wamerican: /usr/share/dict/american-english)")
    ap.add_argument("--hunspell-ru", type=Path, help="Russian hunspell dictionary (hunspell-ru: ru_RU.dic)")
    ap.add_argument("--no-vocab", action="store_true", help="reuse exclude_names from the committed manifest")
    ap.add_argument("--multiplicity", type=int, default=facts.FactsConfig.multiplicity, help="documents per entity")
    ap.add_argument("--out", type=Path, default=ROOT / "tasks")
    a = ap.parse_args()

    cfg = replace(facts.FactsConfig(), multiplicity=a.multiplicity)
    if a.no_vocab:
        m = json.loads((ROOT / "tasks/facts/manifest.json").read_text(encoding="utf-8"))
        cfg = replace(cfg, exclude_names=tuple(m["config"]["exclude_names"]))
    else:
        if not (a.words or a.hunspell_ru):
            sys.exit("give --words and/or --hunspell-ru (or --no-vocab to reuse the recorded exclusions)")
        vocab = load_vocabulary(a.words, a.hunspell_ru)
        graph = facts.build_graph(cfg, vocab)[2]
        cfg = replace(cfg, exclude_names=tuple(sorted(graph.rejected)))
        print(f"names rejected by the vocabularies: {list(cfg.exclude_names)}")
    for lang, name in (("en", "facts"), ("ru", "facts_ru")):
        man = facts.generate(cfg, a.out / name, lang, name)
        print(f"{name}: {man['stats']}  digest {folder_digest(a.out / name)[:12]}")
    man = mri.generate(mri.MriConfig(), a.out / "mri_reports_ru")
    print(f"mri_reports_ru: {man['stats']}  digest {folder_digest(a.out / 'mri_reports_ru')[:12]}")


if __name__ == "__main__":
    main()
