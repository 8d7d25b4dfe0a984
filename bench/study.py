"""Studies: a published finding restated as a bench run plus the claims that test it (`bench study NAME`).

A study is a folder `studies/<name>/` with a README (the claim, the paper and its figure, the command),
a run config and `study.yaml`:

    title: RAG vs fine-tuning on new knowledge
    source: Ovadia et al. 2023, Table 1
    run: run.yaml                    # the run config, relative to the study folder
    quick: {limit: 12, seeds: [0]}   # keys merged over the run config by --quick (CI checks the plumbing)
    frontier: false                  # true: also plot gain against forgetting per fine-tuning arm (probes)
    claims:
      - id: retrieval_beats_finetuning
        says: retrieval beats every fine-tuning recipe
        better: rag+few_shot
        than: [lora, lora@docs]
      - id: memorization
        says: verbatim questions score above rephrased ones after fine-tuning
        arm: lora
        better_stratum: verbatim
        than_stratum: rephrased

A claim compares arms (`better` against each of `than`, items paired) or, within one arm, two strata
of the test items (`better_stratum` against `than_stratum`, items paired by fact); optional keys:
`metric` (default: the task's main metric), `stratum` (only items of that stratum, or of any of a list), `answerable`
(true/false: only those items), `lower_is_better`, and `probe` (compare the arms on an accuracy
probe's items instead, e.g. `probe_mmlu_acc`: what a fine-tune forgot). bench.report.claims evaluates them on the finished
run; this module only reads and checks the spec (one-line errors naming study.yaml and the key) and
builds the run config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bench.config import RunConfig
from bench.errors import BenchError
from bench.taskio import read_yaml_file

STUDY_FILE = "study.yaml"
STUDIES_DIR = Path("studies")
STUDY_RESULTS = Path(RunConfig().out) / "studies"  # beside the runs, under the default results folder
SPEC_IN_RUN = "study.json"  # the spec as the run folder keeps it, so `bench report` re-renders the claims
CLAIM_ID = re.compile(r"[a-z0-9_]{1,60}")


@dataclass(frozen=True)
class Claim:
    id: str
    says: str
    better: Optional[str] = None  # arm comparison: this arm ...
    than: tuple[str, ...] = ()  # ... against each of these
    arm: Optional[str] = None  # stratum comparison: within this arm ...
    better_stratum: Optional[str] = None  # ... these items ...
    than_stratum: Optional[str] = None  # ... against these (paired by fact: ids `<fact>-<stratum>`)
    task: Optional[str] = None  # default: every task of the run
    metric: Optional[str] = None  # default: the task's main metric
    stratum: tuple[str, ...] = ()  # only test items of these strata (one name or a list in the YAML)
    answerable: Optional[bool] = None  # only answerable (true) or unanswerable (false) items
    probe: Optional[str] = None  # compare the arms on this accuracy probe's items (probes.json), not on test items
    lower_is_better: bool = False

    @property
    def kind(self) -> str:
        return "arms" if self.better else "strata"


@dataclass(frozen=True)
class Study:
    name: str
    folder: Path
    title: str
    source: str
    run: str = "run.yaml"
    quick: dict = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    frontier: bool = False  # study.md also plots gain against forgetting per fine-tuning arm (needs probes)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "source": self.source, "run": self.run, "frontier": self.frontier,
                "claims": [c.__dict__ | {"than": list(c.than), "stratum": list(c.stratum) or None}
                           for c in self.claims]}


def study_folder(name: str) -> Path:
    """`known_answers` -> studies/known_answers; a path to a folder is taken as it is."""
    p = Path(name)
    if (p / STUDY_FILE).is_file():
        return p
    q = STUDIES_DIR / name
    if (q / STUDY_FILE).is_file():
        return q
    known = sorted(d.name for d in STUDIES_DIR.glob("*") if (d / STUDY_FILE).is_file()) if STUDIES_DIR.is_dir() else []
    raise BenchError(f"bench study {name}: no {STUDY_FILE} in {q} or {p}; "
                     + (f"known studies: {', '.join(known)}" if known else "run it from the repository root"))


def _names(value: Any, where: str, what: str) -> tuple[str, ...]:
    """One name or a list of names as a tuple (none: ()); anything else is a one-line error."""
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BenchError(f"{where}: {what}")
    return tuple(names)


def _claim(raw: Any, where: str) -> Claim:
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: a claim is a mapping (id, says, better/than or arm/better_stratum/than_stratum)")
    known = set(Claim.__dataclass_fields__)
    extra = sorted(set(raw) - known, key=str)
    if extra:
        raise BenchError(f"{where}: unknown key {extra[0]!r}; a claim takes {', '.join(sorted(known))}")
    data = dict(raw)
    if not isinstance(data.get("id"), str) or not CLAIM_ID.fullmatch(data["id"]):
        raise BenchError(f"{where}.id: give each claim an id of 1-60 lower-case letters, digits or _")
    if not isinstance(data.get("says"), str) or not data["says"].strip():
        raise BenchError(f"{where}.says: state the claim in one sentence")
    data["than"] = _names(data.get("than"), f"{where}.than", "a list of arm names")
    data["stratum"] = _names(data.get("stratum"), f"{where}.stratum", "a stratum name or a list of them")
    for key in ("better", "arm", "better_stratum", "than_stratum", "task", "metric", "probe"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise BenchError(f"{where}.{key}: must be a name (text)")
    for key in ("answerable", "lower_is_better"):
        if data.get(key) is not None and not isinstance(data[key], bool):
            raise BenchError(f"{where}.{key}: must be true or false")
    claim = Claim(**{k: v for k, v in data.items() if v is not None})
    arms_form = bool(claim.better and claim.than)
    strata_form = bool(claim.arm and claim.better_stratum and claim.than_stratum)
    if arms_form == strata_form:
        raise BenchError(f"{where}: a claim is either `better` + `than` (arms) or `arm` + `better_stratum` + "
                         "`than_stratum` (strata of one arm)")
    if claim.probe is not None and (strata_form or not claim.probe.endswith("_acc")):
        raise BenchError(f"{where}.probe: an accuracy probe's metric (e.g. probe_mmlu_acc) compared between arms "
                         "(better + than)")
    return claim


def load_study(name: str) -> Study:
    folder = study_folder(name)
    path = folder / STUDY_FILE
    data = read_yaml_file(path)
    if not isinstance(data, dict):
        raise BenchError(f"{path}: a study is a mapping (title, source, run, quick, claims)")
    known = {"title", "source", "run", "quick", "claims", "frontier"}
    extra = sorted(set(data) - known, key=str)
    if extra:
        raise BenchError(f"{path}: unknown key {extra[0]!r}; a study takes {', '.join(sorted(known))}")
    for key in ("title", "source"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise BenchError(f"{path}: {key} is missing; say what the study is and which paper and figure it restates")
    run = data.get("run", "run.yaml")
    if not isinstance(run, str) or not (folder / run).is_file():
        raise BenchError(f"{path}: run: {run!r} is not a file in {folder}; name the study's run config")
    quick = data.get("quick") or {}
    if not isinstance(quick, dict):
        raise BenchError(f"{path}: quick: a mapping of run-config keys (limit, seeds, params, ...)")
    claims = data.get("claims") or []
    if not isinstance(claims, list) or not claims:
        raise BenchError(f"{path}: claims: list at least one claim to check")
    parsed = tuple(_claim(c, f"{path}: claims[{i}]") for i, c in enumerate(claims))
    ids = [c.id for c in parsed]
    if len(set(ids)) != len(ids):
        raise BenchError(f"{path}: claims: ids must be unique, {ids!r}")
    if not isinstance(data.get("frontier", False), bool):
        raise BenchError(f"{path}: frontier: true or false")
    return Study(folder.name, folder, data["title"].strip(), data["source"].strip(), run, quick, parsed,
                 bool(data.get("frontier", False)))


def _merge(base: dict, over: dict) -> dict:
    """`quick` over the run config: params merged per strategy, other keys replaced."""
    out = dict(base)
    for k, v in over.items():
        if k == "params" and isinstance(v, dict) and isinstance(out.get("params"), dict):
            params = dict(out["params"])
            for name, values in v.items():
                params[name] = {**(params.get(name) or {}), **values} if isinstance(values, dict) else values
            out["params"] = params
        else:
            out[k] = v
    return out


def study_config(study: Study, quick: bool = False, out: Optional[str] = None) -> RunConfig:
    """The study's run config: its own run folder `<out>/<name>` (`<name>-quick` with quick), quick merged."""
    path = study.folder / study.run
    data = read_yaml_file(path) or {}
    if not isinstance(data, dict):
        raise BenchError(f"{path}: a run config is a YAML mapping of keys (tasks, strategies, ...)")
    data = _merge(data, study.quick) if quick else data
    data["out"] = out or str(STUDY_RESULTS)
    data["run_id"] = study.name + ("-quick" if quick else "")
    config = RunConfig.from_dict(data, where=str(path))
    strategies = set(config.strategies)
    for c in study.claims:
        for arm in ((c.better, *c.than) if c.kind == "arms" else (c.arm,)):
            if arm not in strategies:
                raise BenchError(f"{study.folder / STUDY_FILE}: claim {c.id} names arm {arm!r}, which {path} does not "
                                 f"run; its strategies are {', '.join(sorted(strategies))}")
    return config
