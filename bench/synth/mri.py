"""The `mri_reports_ru` generator: structured brain-MRI findings → the descriptive part of a Russian report.

Why synthetic: seed 003 fine-tunes a model to write the "описание" of a Russian MRI report from a
short characterisation of the pathology, on private data. No open Russian radiology reports exist,
so findings are sampled from a closed ontology (sequence, region, laterality, lesion count and size,
signal, contrast enhancement), rendered through paraphrase templates, and scored by ROUGE-1/2/L/Lsum;
because the truth is structured, `mri_consistency` also checks each generated description for swapped
sides, invented regions, and wrong sizes or counts (hallucination probes). Deterministic per seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from bench.synth.common import check_range, stream, write_task_folder
from bench.synth.mri_text import (
    BOILERPLATE,
    ENHANCEMENT,
    ENHANCEMENT_SINGLE,
    FINDING_TEMPLATES,
    NORMAL,
    OPENERS,
    REGIONS,
    SEQUENCES,
    SIDES,
    SIGNALS,
    SINGLE_TEMPLATES,
    lesion_form,
)

VERSION = "1.0"


@dataclass(frozen=True)
class MriConfig:
    seed: int = 0
    train: int = 240
    test: int = 60
    max_findings: int = 3
    normal_rate: float = 0.1   # studies without findings
    max_lesions: int = 8

    def validate(self, where: str = "mri config") -> None:
        check_range(where, "seed", self.seed, 0, 2**63 - 1)
        check_range(where, "train", self.train, 1, 100000)
        check_range(where, "test", self.test, 1, 100000)
        check_range(where, "max_findings", self.max_findings, 1, len(REGIONS))
        check_range(where, "normal_rate", self.normal_rate, 0.0, 0.9)
        check_range(where, "max_lesions", self.max_lesions, 1, 30)


TINY = MriConfig(seed=3, train=6, test=4)


def sample_findings(cfg: MriConfig, idx: int) -> list[dict]:
    r = stream(cfg.seed, "mri-study", idx)
    if r.random() < cfg.normal_rate:
        return []
    regions = r.sample(range(len(REGIONS)), r.randint(1, cfg.max_findings))
    out = []
    for ri in regions:
        _, _, _, lateral = REGIONS[ri]
        seq = r.choice(SEQUENCES)
        count = r.choice([1, 1, 2, 3, r.randint(1, cfg.max_lesions)])
        size = r.choice([2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 18, 22])
        out.append({"region": REGIONS[ri][0], "side": r.choice(["left", "right", "left", "right", "both"]) if lateral else None,
                    "sequence": seq, "signal": r.randrange(len(SIGNALS[seq])), "count": count, "size_mm": size,
                    "enhancement": r.random() < 0.25})
    return out


def card(findings: list[dict]) -> str:
    """The structured input: one line per finding, as a radiologist's short characterisation."""
    if not findings:
        return "Находки: нет (норма)."
    lines = []
    for i, f in enumerate(findings, start=1):
        side = SIDES[f["side"]][1] if f["side"] else "срединная структура"
        lines.append(f"{i}. Последовательность: {f['sequence']}; область: {f['region']}; сторона: {side}; "
                     f"очагов: {f['count']}; размер: до {f['size_mm']} мм; сигнал: {SIGNALS[f['sequence']][f['signal']][0]}; "
                     f"контрастное усиление: {'да' if f['enhancement'] else 'нет'}.")
    return "\n".join(lines)


def describe(findings: list[dict], r) -> str:
    """The descriptive part of the report (the reference output)."""
    parts = [r.choice(OPENERS)]
    for f in findings:
        ri = next(i for i, reg in enumerate(REGIONS) if reg[0] == f["region"])
        where = REGIONS[ri][1] + (f" {SIDES[f['side']][0]}" if f["side"] else "")
        signal = SIGNALS[f["sequence"]][f["signal"]][1]
        size = f"до {f['size_mm']} мм" if f["count"] > 1 else f"{f['size_mm']} мм"
        if f["count"] == 1:
            t = r.choice(SINGLE_TEMPLATES)
            enh = r.choice(ENHANCEMENT_SINGLE[f["enhancement"]])
        else:
            t = r.choice(FINDING_TEMPLATES)
            enh = r.choice(ENHANCEMENT[f["enhancement"]])
        s = t.format(where=where, Where=where[:1].upper() + where[1:], n=f["count"], lesions=lesion_form(f["count"]),
                     signal=signal, seq=f["sequence"], size=size, enh=enh)
        parts.append(s)
    if not findings:
        parts.append(r.choice(NORMAL))
    parts.extend(r.sample(BOILERPLATE, 3))
    return " ".join(parts)


def item(cfg: MriConfig, split: str, idx: int) -> dict:
    findings = sample_findings(cfg, idx)
    r = stream(cfg.seed, "mri-text", idx)
    return {"id": f"mri-{split}-{idx}", "instruction": "Составьте описательную часть заключения МРТ головного мозга по находкам.",
            "input": card(findings), "output": describe(findings, r), "findings": findings}


def task_meta(cfg: MriConfig) -> dict:
    return {
        "name": "mri_reports_ru", "version": VERSION,
        "description": ("Seed 003 made checkable: structured brain-MRI findings (sequence, region, side, lesion count "
                        "and size, signal, enhancement) → the descriptive part of a Russian MRI report. Synthetic "
                        "(no open Russian reports exist), scored by ROUGE-1/2/L/Lsum and by consistency checks against "
                        "the structured truth (swapped side, invented region, wrong size or count)."),
        "language": "ru", "kind": "generation", "metrics": ["rouge", "mri_consistency"], "main_metric": "rougeL",
        "source": f"generated by bench.synth.mri v{VERSION} (seed {cfg.seed}); after seed 003 (Stepanov & Shichkina)",
        "license": "CC0-1.0 (synthetic)",
        "abstain_phrase": "Не знаю",
        "instruction": "Ты врач-рентгенолог. Напиши описательную часть заключения МРТ головного мозга по-русски, только по данным находкам.",
    }


def generate(cfg: MriConfig, out: Path) -> dict:
    cfg.validate()
    train = [item(cfg, "train", i) for i in range(cfg.train)]
    test = [item(cfg, "test", cfg.train + i) for i in range(cfg.test)]
    stats = {"train": len(train), "test": len(test), "normal_test": sum(1 for t in test if not t["findings"])}
    return write_task_folder(Path(out), task_meta(cfg), {"train": train, "test": test}, generator="bench.synth.mri",
                             version=VERSION, seed=cfg.seed, config=asdict(cfg), stats=stats)
