#!/usr/bin/env python
"""Regenerate the synthetic built-in tasks (facts, facts_ru, mri_reports_ru, codes, townfacts, capitals) and their manifests.

Names of the fact graph are checked against real vocabularies when the dictionaries are given
(Debian `wamerican` and `hunspell-ru`: `apt-get download wamerican hunspell-ru`, `dpkg -x`); the names
they reject are written into the config's exclude_names, so the committed folders regenerate bit for
bit without the dictionaries (`--no-vocab`, what the determinism test does for the tiny config).

`facts_injection` (the knowledge-injection studies' task, docs/findings.md) is a small `facts` with
paraphrased training questions and verbatim / rephrased test questions.

The tasks whose right strategy is known by construction (codes, townfacts, capitals) need no
dictionary. `capitals` keeps only the test items the base model answers right zero-shot; the drop list
is recorded in its manifest, and `--screen-capitals` remakes it from a bench run (docs/tasks.md).

    python scripts/generate_tasks.py --words /usr/share/dict/american-english --hunspell-ru /usr/share/hunspell/ru_RU.dic
    python scripts/generate_tasks.py --no-vocab         # reuse the exclude_names recorded in tasks/facts/manifest.json
    python scripts/generate_tasks.py --only codes,townfacts,capitals
    python scripts/generate_tasks.py --capitals-unscreened /tmp/capitals_all     # then bench run zero_shot on it
    python scripts/generate_tasks.py --screen-capitals results/<run_id>          # drop what zero-shot got wrong
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

from bench.synth import capitals, codes, facts, mri, townfacts  # noqa: E402
from bench.synth.common import folder_digest  # noqa: E402

ALL = ("facts", "facts_ru", "facts_injection", "mri_reports_ru", "codes", "townfacts", "capitals", "capitals_slick")


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


def committed_capitals_config() -> capitals.CapitalsConfig:
    """The capitals config recorded in the committed manifest (its drop list and screening), or the default."""
    path = ROOT / "tasks/capitals/manifest.json"
    if not path.is_file():
        return capitals.CapitalsConfig()
    cfg = dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    cfg["drop"] = tuple(cfg["drop"])
    return capitals.CapitalsConfig(**cfg)


def screen_capitals(run_dir: Path, cfg: capitals.CapitalsConfig) -> capitals.CapitalsConfig:
    """The config whose drop list holds every test item the run's zero_shot cell got wrong (or failed on)."""
    cells = sorted(run_dir.glob("cells/*__zero_shot__*/scores.jsonl"))
    if len(cells) != 1:
        sys.exit(f"{run_dir}: expected one zero_shot cell with scores.jsonl, found {len(cells)}")
    scores = [json.loads(line) for line in cells[0].read_text(encoding="utf-8").splitlines() if line.strip()]
    unscreened = {r["id"] for i in capitals.split_countries(replace(cfg, drop=()))[1] for r in capitals.items_of(i)}
    seen = {s["example_id"] for s in scores}
    if seen != unscreened:
        sys.exit(f"{run_dir}: the run scored {len(seen)} items, the unscreened test split has {len(unscreened)}; "
                 "run bench on the whole --capitals-unscreened folder (no --limit)")
    wrong = sorted(s["example_id"] for s in scores if s["failed"] or s["scores"].get("exact_match", 0.0) < 1.0)
    man = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    model = man.get("model", {})
    screening = (f"bench run zero_shot (default prompt, greedy) on {model.get('name', '?')} "
                 f"sha256 {str(model.get('sha256', '?'))[:12]}, bench git {str(man.get('git_hash', '?'))[:10]}: "
                 f"{len(scores) - len(wrong)}/{len(scores)} right")
    print(screening)
    return replace(cfg, drop=tuple(wrong), screening=screening)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=Path, help="English word list (wamerican: /usr/share/dict/american-english)")
    ap.add_argument("--hunspell-ru", type=Path, help="Russian hunspell dictionary (hunspell-ru: ru_RU.dic)")
    ap.add_argument("--no-vocab", action="store_true", help="reuse exclude_names from the committed manifest")
    ap.add_argument("--multiplicity", type=int, default=facts.FactsConfig.multiplicity, help="documents per entity")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}")
    ap.add_argument("--capitals-unscreened", type=Path, metavar="DIR",
                    help="write the capitals task with no item dropped to DIR (for the screening run) and stop")
    ap.add_argument("--screen-capitals", type=Path, metavar="RUN_DIR",
                    help="drop the capitals test items the zero_shot cell of this bench run got wrong")
    ap.add_argument("--out", type=Path, default=ROOT / "tasks")
    a = ap.parse_args()
    only = [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        sys.exit(f"--only: unknown task(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")

    cap_cfg = committed_capitals_config()
    if a.capitals_unscreened:
        capitals.generate(replace(cap_cfg, drop=(), screening=""), a.capitals_unscreened, "capitals_unscreened")
        print(f"wrote {a.capitals_unscreened}; now: bench run --task {a.capitals_unscreened} --strategy zero_shot "
              "--probes none --out /tmp/screen, then --screen-capitals /tmp/screen/<run_id>")
        return

    if {"facts", "facts_ru", "facts_injection"} & set(only):
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
            if name in only:
                man = facts.generate(cfg, a.out / name, lang, name)
                print(f"{name}: {man['stats']}  digest {folder_digest(a.out / name)[:12]}")
        if "facts_injection" in only:  # the studies' task: facts' first groups, with the same name exclusions
            inj = replace(facts.INJECTION, exclude_names=cfg.exclude_names)
            man = facts.generate(inj, a.out / "facts_injection", "en", "facts_injection")
            print(f"facts_injection: {man['stats']}  digest {folder_digest(a.out / 'facts_injection')[:12]}")
    if "mri_reports_ru" in only:
        man = mri.generate(mri.MriConfig(), a.out / "mri_reports_ru")
        print(f"mri_reports_ru: {man['stats']}  digest {folder_digest(a.out / 'mri_reports_ru')[:12]}")
    if "codes" in only:
        man = codes.generate(codes.CodesConfig(), a.out / "codes")
        print(f"codes: {man['stats']}  digest {folder_digest(a.out / 'codes')[:12]}")
    if "townfacts" in only:
        man = townfacts.generate(townfacts.TownfactsConfig(), a.out / "townfacts")
        print(f"townfacts: {man['stats']}  digest {folder_digest(a.out / 'townfacts')[:12]}")
    if "capitals" in only or a.screen_capitals:
        if a.screen_capitals:
            cap_cfg = screen_capitals(a.screen_capitals, cap_cfg)
        man = capitals.generate(cap_cfg, a.out / "capitals")
        print(f"capitals: {man['stats']}  digest {folder_digest(a.out / 'capitals')[:12]}")


    if "capitals_slick" in only:  # the unknown-examples study's task: unscreened, with invented countries
        man = capitals.generate(capitals.SLICK, a.out / "capitals_slick", "capitals_slick")
        print(f"capitals_slick: {man['stats']}  digest {folder_digest(a.out / 'capitals_slick')[:12]}")


if __name__ == "__main__":
    main()
