"""`mri_consistency`: hallucination probes for generated MRI descriptions, checked against structured truth.

A test item of mri_reports_ru carries `findings` (region, side, count, size_mm, ...). The generated
text is parsed for sides (слева/справа/левой/правой/с обеих сторон/...), brain regions (by stem),
sizes ("6 мм", "1,2 см", "5×4 мм") and lesion counts ("3 очага", "единичный очаг"). Each check is
1.0 when the answer asserts nothing the truth contradicts (omission is ROUGE's business, not this one's):

  mri_laterality_ok  no side that no finding has (a swapped or invented side)
  mri_region_ok      no region that no finding has (an invented lesion site)
  mri_size_ok        every size mentioned is a true size
  mri_count_ok       every lesion count mentioned is a true count
  mri_consistent     all four
"""

from __future__ import annotations

import re

from bench.metrics.base import Metric
from bench.registry import METRICS
from bench.synth.mri_text import NUMBER_WORDS, REGIONS
from bench.types import Score

_LEFT = re.compile(r"(?<!\w)(слева|лев(?:ая|ой|ого|ом|ому|ую|ый|ое|ые|ых|ым|ыми))(?!\w)")
_RIGHT = re.compile(r"(?<!\w)(справа|прав(?:ая|ой|ого|ом|ому|ую|ый|ое|ые|ых|ым|ыми))(?!\w)")
_BOTH = re.compile(r"(с обеих сторон|билатеральн\w*|двусторонн\w*|симметрично в обоих)")
_SIZE = re.compile(r"(\d+(?:[.,]\d+)?)(?:\s*[x×х*]\s*(\d+(?:[.,]\d+)?))?(?:\s*[x×х*]\s*(\d+(?:[.,]\d+)?))?\s*(мм|см|mm|cm)(?!\w)")
_COUNT = re.compile(r"(?<!\w)(\d+|" + "|".join(NUMBER_WORDS) + r")\w*\s+(?:\w+\s+)?(очаг\w*|образовани\w*|участ\w*)")


def sides_in(text: str) -> set[str]:
    t = text.lower()
    out = set()
    if _BOTH.search(t):
        out |= {"left", "right"}
    if _LEFT.search(t):
        out.add("left")
    if _RIGHT.search(t):
        out.add("right")
    return out


def regions_in(text: str) -> set[str]:
    t = text.lower()
    return {name for name, _, stem, _ in REGIONS if stem in t}


def sizes_in(text: str) -> list[float]:
    out = []
    for m in _SIZE.finditer(text.lower()):
        scale = 10.0 if m.group(4) in ("см", "cm") else 1.0
        for g in m.groups()[:3]:
            if g:
                out.append(float(g.replace(",", ".")) * scale)
    return out


def counts_in(text: str) -> list[int]:
    out = []
    for m in _COUNT.finditer(text.lower()):
        w = m.group(1)
        if w.isdigit():
            out.append(int(w))
        else:
            out.append(next(v for k, v in NUMBER_WORDS.items() if w.startswith(k)))
    return out


def check(answer: str, findings: list[dict]) -> dict[str, tuple[float, str]]:
    true_sides = set()
    for f in findings:
        if f.get("side") == "both":
            true_sides |= {"left", "right"}
        elif f.get("side"):
            true_sides.add(f["side"])
    true_regions = {f["region"] for f in findings}
    true_sizes = {float(f["size_mm"]) for f in findings}
    true_counts = {int(f["count"]) for f in findings}
    res = {}
    extra = sides_in(answer) - true_sides
    res["mri_laterality_ok"] = (0.0, f"side(s) {sorted(extra)} not in the findings") if extra else (1.0, "no wrong side")
    extra = regions_in(answer) - true_regions
    res["mri_region_ok"] = (0.0, f"invented region(s) {sorted(extra)}") if extra else (1.0, "no invented region")
    wrong = [s for s in sizes_in(answer) if not any(abs(s - t) < 0.51 for t in true_sizes)]
    res["mri_size_ok"] = (0.0, f"size(s) {wrong} mm not in the findings") if wrong else (1.0, "no wrong size")
    wrong = [c for c in counts_in(answer) if c not in true_counts]
    res["mri_count_ok"] = (0.0, f"lesion count(s) {wrong} not in the findings") if wrong else (1.0, "no wrong count")
    bad = [k for k, (v, _) in res.items() if v == 0.0]
    res["mri_consistent"] = (0.0, "failed: " + ", ".join(bad)) if bad else (1.0, "all checks pass")
    return res


@METRICS.register("mri_consistency")
class MriConsistency(Metric):
    names = ("mri_laterality_ok", "mri_region_ok", "mri_size_ok", "mri_count_ok", "mri_consistent")
    description = "MRI description vs structured findings: no swapped side, invented region, wrong size/count"

    def score(self, answer, example, task):
        findings = example.get("findings")
        if findings is None:
            return {n: Score(n, None, "item has no structured 'findings'") for n in self.names}
        findings = [dict(f) if not isinstance(f, dict) else f for f in findings]
        return {n: Score(n, v, why) for n, (v, why) in check(answer, findings).items()}
