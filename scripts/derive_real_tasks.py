#!/usr/bin/env python
"""Derive the built-in tasks built on real data (debian_faq, debian_faq_ru, pubmedqa, selfaware).

Why a script: bench must never read ../shared or a package cache at run time, so the derived
JSONL is committed under tasks/ together with the source's licence and a provenance.json (source
package or repository, version, sha256 of what was read). A developer reruns this script to refresh.

    python scripts/derive_real_tasks.py --faq-en debian-faq_11.1_all.deb --faq-ru debian-faq-ru_11.1_all.deb \
        --shared /work/shared/data
    # the .deb files come from: apt-get update && apt-get download debian-faq debian-faq-ru
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"



def _line_safe(text: str) -> str:
    """Escape the characters str.splitlines() treats as line breaks (U+0085, U+2028, U+2029)."""
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")

def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stable_bucket(key: str, buckets: int = 1000) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % buckets


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(_line_safe(json.dumps(r, ensure_ascii=False, sort_keys=True)) + "\n" for r in rows), encoding="utf-8")


def write_yaml(path: Path, meta: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=100), encoding="utf-8")


# ---------------------------------------------------------------- Debian FAQ
_HEAD = re.compile(r'<h([23]) class="title"[^>]*>(.*?)</h\1>', re.S)
_ANY_HEAD = re.compile(r'<h[1-6][ >]', re.S)


def html_text(fragment: str) -> str:
    t = re.sub(r"(?is)<(script|style).*?</\1>", " ", fragment)
    t = re.sub(r"(?i)</(p|li|pre|dt|dd|tr|h\d|div|table)>|<br\s*/?>", "\n", t)
    t = re.sub(r"(?s)<[^>]+>", "", t)
    t = html.unescape(t).replace("\xa0", " ")
    lines = [re.sub(r"\s+([.,;:!?)»])", r"\1", " ".join(line.split())) for line in t.splitlines()]
    return "\n".join(line for line in lines if line)


def faq_sections(folder: Path, suffix: str) -> dict[str, dict]:
    """{'7.1': {'title': 'What is a Debian package?', 'text': body, 'chapter': file stem}} for h2/h3 sections."""
    out: dict[str, dict] = {}
    for f in sorted(folder.glob(f"*.{suffix}.html")):
        if f.name.startswith("index."):
            continue
        t = f.read_text(encoding="utf-8")
        heads = list(_HEAD.finditer(t))
        for i, m in enumerate(heads):
            title = " ".join(html_text(m.group(2)).split())
            num = re.match(r"^(\d+(?:\.\d+)+)\.?\s+(.*)$", title)
            if not num:
                continue
            rest = t[m.end():]
            nxt = _ANY_HEAD.search(rest)
            body = html_text(rest[: nxt.start()] if nxt else rest)
            out[num.group(1)] = {"title": num.group(2).strip(), "text": body, "chapter": f.name.split(".")[0]}
    return out


def short_answer(text: str, limit: int = 700) -> str:
    """The opening of a section, cut at a sentence end near `limit` characters: the reference answer."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = max(text.rfind(". ", 0, limit), text.rfind("? ", 0, limit), text.rfind("! ", 0, limit))
    return text[: cut + 1] if cut > limit // 3 else text[:limit].rsplit(" ", 1)[0] + " …"


def extract_deb(deb: Path, dest: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)


def deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True).stdout.strip()


def derive_debian_faq(deb_en: Path, deb_ru: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        extract_deb(deb_en, Path(tmp) / "en")
        extract_deb(deb_ru, Path(tmp) / "ru")
        en = faq_sections(Path(tmp) / "en/usr/share/doc/debian/FAQ", "en")
        ru = faq_sections(Path(tmp) / "ru/usr/share/doc/debian/FAQ/ru", "ru")
        notice = (Path(tmp) / "en/usr/share/doc/debian-faq/copyright").read_text(encoding="utf-8")
    if sorted(en) != sorted(ru):
        sys.exit(f"FAQ sections are not aligned: {sorted(set(en) ^ set(ru))}")
    key = lambda s: tuple(int(x) for x in s.split("."))  # noqa: E731
    nums = sorted(en, key=key)
    questions = [n for n in nums if en[n]["title"].endswith("?") and en[n]["text"].strip()]
    test_ids = {n for n in questions if stable_bucket(f"debian_faq:{n}") < 340}
    prov = {"packages": {p.name: {"version": deb_version(p), "sha256": sha256(p)} for p in (deb_en, deb_ru)},
            "sections": len(nums), "questions": len(questions), "test": len(test_ids),
            "derived_by": "scripts/derive_real_tasks.py"}
    for lang, sec in (("en", en), ("ru", ru)):
        name = "debian_faq" if lang == "en" else "debian_faq_ru"
        folder = TASKS / name
        folder.mkdir(parents=True, exist_ok=True)
        docs = [{"id": f"faq-{n}", "title": f"{n}. {sec[n]['title']}", "text": sec[n]["text"] or sec[n]["title"]} for n in nums]
        instr = ("Answer the question about Debian in a few sentences." if lang == "en"
                 else "Ответь на вопрос о Debian в нескольких предложениях.")
        rows = {"train": [], "test": []}
        for n in questions:
            split = "test" if n in test_ids else "train"
            rows[split].append({"id": f"{name}-{n}", "instruction": sec[n]["title"], "input": "",
                                "output": short_answer(sec[n]["text"]), "doc_ids": [f"faq-{n}"], "section": n})
        write_jsonl(folder / "docs.jsonl", docs)
        write_jsonl(folder / "train.jsonl", rows["train"])
        write_jsonl(folder / "test.jsonl", rows["test"])
        (folder / "NOTICE").write_text(notice, encoding="utf-8")
        (folder / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n", encoding="utf-8")
        write_yaml(folder / "task.yaml", {
            "name": name, "version": "11.1-1",
            "description": ("Real long-form QA from the Debian FAQ (" + ("English" if lang == "en" else "Russian")
                            + "): the question is a FAQ section heading, the reference is the opening of the section; "
                            "the 146 sections are the RAG corpus. A known-domain control: models saw Debian "
                            "text in pre-training. The FAQ calls Debian 11 'stable', a built-in context/memory conflict."),
            "language": lang, "kind": "generation", "metrics": ["rouge", "f1"], "main_metric": "rougeL",
            "source": f"Debian package debian-faq{'-ru' if lang == 'ru' else ''} {deb_version(deb_en if lang == 'en' else deb_ru)}",
            "license": "Debian FAQ permission notice (verbatim and modified copies allowed; see NOTICE)",
            "abstain_phrase": "I don't know" if lang == "en" else "Не знаю",
            "instruction": instr,
        })
        print(f"{name}: {len(rows['train'])} train, {len(rows['test'])} test, {len(docs)} docs")


# ---------------------------------------------------------------- PubMedQA
def derive_pubmedqa(shared: Path) -> None:
    src = shared / "pubmedqa" / "ori_pqal.json"
    data = json.loads(src.read_text(encoding="utf-8"))
    folder = TASKS / "pubmedqa"
    folder.mkdir(parents=True, exist_ok=True)
    docs, rows = [], {"train": [], "test": []}
    for pmid in sorted(data, key=int):
        d = data[pmid]
        docs.append({"id": f"pmid-{pmid}", "title": d["QUESTION"], "text": " ".join(d["CONTEXTS"])})
        label = d["final_decision"]
        split = "test" if stable_bucket(f"pubmedqa:{pmid}") < 300 else "train"
        rows[split].append({"id": f"pubmedqa-{pmid}", "instruction": d["QUESTION"], "input": "",
                            "output": f"{label.capitalize()}. {d['LONG_ANSWER']}", "label": label,
                            "options": ["yes", "no", "maybe"], "doc_ids": [f"pmid-{pmid}"], "year": d.get("YEAR")})
    write_jsonl(folder / "docs.jsonl", docs)
    write_jsonl(folder / "train.jsonl", rows["train"])
    write_jsonl(folder / "test.jsonl", rows["test"])
    shutil.copyfile(shared / "pubmedqa" / "LICENSE", folder / "LICENSE")
    (folder / "provenance.json").write_text(json.dumps({
        "source": "github.com/pubmedqa/pubmedqa (commit 1cbae8e), data/ori_pqal.json", "sha256": sha256(src),
        "citation": "Jin et al., PubMedQA: A Dataset for Biomedical Research Question Answering, EMNLP 2019",
        "derived_by": "scripts/derive_real_tasks.py"}, indent=2) + "\n", encoding="utf-8")
    write_yaml(folder / "task.yaml", {
        "name": "pubmedqa", "version": "1.0",
        "description": ("PubMedQA PQA-L: 1,000 expert-labelled biomedical research questions. Answer yes, no or "
                        "maybe, then justify; scored by yes/no/maybe accuracy (first decision word) and ROUGE "
                        "against the long answer. Closed book by default; the 1,000 abstracts are the RAG corpus."),
        "language": "en", "kind": "qa", "metrics": ["choice", "rouge"], "main_metric": "choice_accuracy",
        "source": "PubMedQA PQA-L (Jin et al., EMNLP 2019), github.com/pubmedqa/pubmedqa",
        "license": "MIT (see LICENSE)", "abstain_phrase": "Maybe",
        "instruction": "Answer the biomedical research question with yes, no or maybe, then give a one-sentence justification.",
    })
    print(f"pubmedqa: {len(rows['train'])} train, {len(rows['test'])} test, {len(docs)} docs")


# ---------------------------------------------------------------- SelfAware
def derive_selfaware(shared: Path) -> None:
    src = shared / "selfaware" / "SelfAware.json"
    data = json.loads(src.read_text(encoding="utf-8"))
    items = data["example"] if isinstance(data, dict) else data
    un = sorted((e for e in items if not e["answerable"]), key=lambda e: stable_bucket(f"sa:{e['question_id']}", 10**9))
    an = sorted((e for e in items if e["answerable"] and e.get("answer")), key=lambda e: stable_bucket(f"sa:{e['question_id']}", 10**9))
    abstain = "I don't know"

    def row(e):
        r = {"id": f"selfaware-{e['question_id']}", "instruction": e["question"], "input": "",
             "answerable": bool(e["answerable"]), "origin": e.get("source", "")}
        if e["answerable"]:
            r["output"], r["answers"] = e["answer"][0], e["answer"][1:]
        else:
            r["output"] = abstain
        return r

    test = [row(e) for pair in zip(an[:50], un[:50]) for e in pair]  # alternating: any prefix is balanced
    train = [row(e) for e in un[50:70] + an[50:90]]
    folder = TASKS / "selfaware"
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    shutil.copyfile(shared / "selfaware" / "LICENSE", folder / "LICENSE")
    (folder / "provenance.json").write_text(json.dumps({
        "source": "github.com/yinzhangyue/SelfAware (commit f0bad1f), SelfAware.json", "sha256": sha256(src),
        "citation": "Yin et al., Do Large Language Models Know What They Don't Know?, Findings of ACL 2023",
        "note": "the data set's own description says 'for research purposes'",
        "derived_by": "scripts/derive_real_tasks.py"}, indent=2) + "\n", encoding="utf-8")
    write_yaml(folder / "task.yaml", {
        "name": "selfaware", "version": "1.0",
        "description": ("General unanswerable-question probe: 50 unanswerable SelfAware questions (no answer exists: "
                        "opinions, unsolved problems, the future) and 50 answerable ones. The right answer to an "
                        "unanswerable one is to abstain; scored by abstention recall/precision, hallucination rate "
                        "and false abstention."),
        "language": "en", "kind": "qa", "metrics": ["abstention", "hallucination", "f1"], "main_metric": "abstention_f1",
        "source": "SelfAware (Yin et al., Findings of ACL 2023), github.com/yinzhangyue/SelfAware",
        "license": "Apache-2.0 (see LICENSE); research use per the data set's description",
        "abstain_phrase": abstain,
        "instruction": f"Answer the question briefly. If it cannot be answered, reply exactly: {abstain}",
    })
    print(f"selfaware: {len(train)} train, {len(test)} test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faq-en", type=Path, help="debian-faq_*.deb")
    ap.add_argument("--faq-ru", type=Path, help="debian-faq-ru_*.deb")
    ap.add_argument("--shared", type=Path, help="folder with pubmedqa/ and selfaware/ (the shared data copies)")
    a = ap.parse_args()
    if a.faq_en and a.faq_ru:
        derive_debian_faq(a.faq_en, a.faq_ru)
    if a.shared:
        derive_pubmedqa(a.shared)
        derive_selfaware(a.shared)


if __name__ == "__main__":
    main()
