"""Property-based fuzzing of everything a user hands bench: a valid task folder and a valid run config are
mutated (bytes, encodings, truncation, value types, nesting, sizes, file kinds) and every mutant must be
answered: `bench validate` exits 0 or 2 within seconds with no traceback and every line naming a file;
`RunConfig.from_yaml` returns a usable config or raises a BenchError naming the file. A few accepted
mutants also go through a real `bench run` (slow: the packaged SmolLM2 on llama.cpp).

Hypothesis finds the smallest failing mutant and prints it; the example database is off, so the test
leaves nothing in the checkout. Every CI run draws new mutants; for a longer hunt set BENCH_FUZZ_SCALE
(e.g. 20: twenty times the mutants of every test here, and as many real runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from bench import taskio
from bench.cli import main
from bench.config import RunConfig
from bench.errors import BenchError
from bench.hashing import sha256_json

SCALE = max(1, int(os.environ.get("BENCH_FUZZ_SCALE", "1")))
FOLDER_MUTANTS = 500 * SCALE  # each one a `bench validate` in this process
CONFIG_MUTANTS = 300 * SCALE
RUN_MUTANTS = 3 * SCALE  # each one a real `bench run`
SECONDS_PER_MUTANT = 10.0  # "within seconds", with room for a loaded CI machine
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)

META = {"name": "fuzz", "version": "1", "description": "Задача для проверки", "language": "ru", "kind": "qa",
        "metrics": ["exact_match", "f1", "rouge"], "main_metric": "f1", "source": "tests",
        "license": "CC0-1.0", "abstain_phrase": "Не знаю", "instruction": "Ответь коротко."}
TRAIN = [{"id": f"tr{i}", "instruction": f"Сколько будет {i} плюс {i}?", "input": "", "output": str(2 * i)}
         for i in range(4)]
TEST = [{"id": "te0", "instruction": "Столица Франции?", "input": "", "output": "Париж", "doc_ids": ["d0"]},
        {"id": "te1", "instruction": "Кто написал «Войну и мир»?", "input": "", "output": "Толстой",
         "stratum": "a"},
        {"id": "te2", "instruction": "Как зовут кота соседа?", "input": "", "output": "Не знаю",
         "answerable": False}]
DOCS = [{"id": "d0", "title": "Франция", "text": "Париж — столица Франции."},
        {"id": "d1", "title": "Книги", "text": "«Война и мир» — роман Льва Толстого."}]
CONFIG = {"tasks": ["demo"], "strategies": ["zero_shot", "few_shot"], "model": "smollm2-135m", "seeds": [0, 1],
          "limit": 5, "generation": {"max_new_tokens": 16, "stop": ["\n\n"]}, "decision": {"margin": 0.05},
          "params": {"few_shot": {"k": 2, "selection": "random"}}, "probes": "none", "run_id": "fuzz-run"}

JSONL = ("train.jsonl", "test.jsonl", "docs.jsonl")
FILES = ("task.yaml", *JSONL, "manifest.json")
FIELDS = ("id", "instruction", "input", "output", "answerable", "doc_ids", "stratum", "rejected", "title", "text", "x")
NASTY = (b"\x00", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\r", b"\x1b", b"\x7f", b"\\ud800", b"\\u0000", b"NaN",
         b"-Infinity", b"1e999", b"9" * 5000, b"[" * 3000, b"{", b"}", b'"', b",", b"\n", b"\n\n", b"\xef\xbb\xbf",
         b"\xe2\x80\xa8", "Привет".encode("cp1251"), "café".encode("latin-1"), b"&a [*a]", b"*a", b"<<: *a",
         b"!!python/object/apply:os.system ['true']", b"!!binary x", b"!!int abc", b"? [a]\n: b", b"---\n", b"- a\n",
         b"\t", b"  ", b"#", b"'", b": ", b"key: value\n", b'"id": "te0", ', b'{"id": "dup"}', b"{}")
ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp1251", "koi8-r", "latin-1", "utf-8-sig", "gb18030")
BOMB = ("a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n")


def _jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def valid_files() -> dict[str, bytes]:
    return {"task.yaml": yaml.safe_dump(META, allow_unicode=True).encode("utf-8"), "train.jsonl": _jsonl(TRAIN),
            "test.jsonl": _jsonl(TEST), "docs.jsonl": _jsonl(DOCS)}


# -- values ------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12)
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.dates() | st.binary(max_size=8)
    | st.sampled_from(["no", "yes", "on", "1.10", "0x1F", "~", ""]),
    lambda children: (st.lists(children, max_size=3) | st.sets(st.integers(), max_size=3)
                      | st.dictionaries(st.text(max_size=6) | st.integers(), children, max_size=3)),
    max_leaves=12)


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# -- mutations of a folder: (kind, arguments), applied in order to {file name: bytes or a file kind} --------
folder_mutation = st.one_of(
    st.tuples(st.just("bytes"), st.sampled_from(FILES), st.integers(0, 10**6), st.sampled_from(NASTY)),
    st.tuples(st.just("random_bytes"), st.sampled_from(FILES), st.integers(0, 10**6),
              st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("truncate"), st.sampled_from(FILES), st.integers(0, 10**6)),
    st.tuples(st.just("encode"), st.sampled_from(FILES), st.sampled_from(ENCODINGS)),
    st.tuples(st.just("crlf_bom_blank"), st.sampled_from(FILES), st.booleans(), st.booleans(), st.booleans()),
    st.tuples(st.just("join_lines"), st.sampled_from(JSONL), st.integers(0, 10)),
    st.tuples(st.just("twice"), st.sampled_from(FILES)),
    st.tuples(st.just("field"), st.sampled_from(JSONL), st.integers(0, 10), st.sampled_from(FIELDS), json_values),
    st.tuples(st.just("drop_field"), st.sampled_from(JSONL), st.integers(0, 10), st.sampled_from(FIELDS)),
    st.tuples(st.just("line_value"), st.sampled_from(JSONL), st.integers(0, 10), json_values),
    st.tuples(st.just("deep"), st.sampled_from(JSONL), st.integers(0, 10), st.sampled_from([31, 33, 200, 5000])),
    st.tuples(st.just("big_record"), st.sampled_from(JSONL), st.integers(-2, 2)),
    st.tuples(st.just("meta"), st.sampled_from([*taskio.REQUIRED_KEYS, *taskio.OPTIONAL_KEYS, "langauge"]),
              yaml_values),
    st.tuples(st.just("meta_drop"), st.sampled_from(taskio.REQUIRED_KEYS)),
    st.tuples(st.just("yaml_text"), st.sampled_from([BOMB, "extra: " + "[" * 4000 + "]" * 4000, "extra: &a {x: *a}",
                                                     "- a\n- b", "plain", "", "name: a\nname: b", "{" * 50,
                                                     "extra: !!int abc", "extra: !!timestamp 2024-13-45",
                                                     "extra: !!python/name:os.system", "1: x", "? [a, b]\n: c"])),
    st.tuples(st.just("kind"), st.sampled_from(FILES), st.sampled_from(
        ["missing", "folder", "link_outside", "link_inside", "broken_link", "fifo", "huge", "empty"])),
    st.tuples(st.just("manifest"), st.booleans(), json_values),
)


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _edit_record(files: dict, name: str, index: int, edit) -> None:
    data = files.get(name)
    if not isinstance(data, bytes):
        return
    lines = _lines(data)
    i = index % max(len(lines), 1)
    try:
        obj = json.loads(lines[i])
    except (ValueError, RecursionError):
        return
    lines[i] = edit(obj)
    files[name] = b"\n".join(lines)


def apply(files: dict, mutation: tuple) -> None:
    kind, *args = mutation
    if kind in ("bytes", "random_bytes", "truncate", "encode", "crlf_bom_blank", "twice"):
        name = args[0]
        data = files.get(name)
        if name == "manifest.json" and data is None:
            data = json.dumps({"files": {}}).encode()
        if not isinstance(data, bytes):
            return
        if kind in ("bytes", "random_bytes"):
            at = args[1] % (len(data) + 1)
            files[name] = data[:at] + args[2] + data[at:]
        elif kind == "truncate":
            files[name] = data[: args[1] % (len(data) + 1)]
        elif kind == "encode":
            files[name] = data.decode("utf-8", "replace").encode(args[1], "replace")
        elif kind == "crlf_bom_blank":
            crlf, bom, blank = args[1:]
            data = data.replace(b"\n", b"\n\n  \n") if blank and name.endswith(".jsonl") else data
            data = data.replace(b"\n", b"\r\n") if crlf else data
            files[name] = (b"\xef\xbb\xbf" + data) if bom else data
        else:
            files[name] = data + data
    elif kind == "join_lines":
        data = files.get(args[0])
        if isinstance(data, bytes) and b"\n" in data:
            at = [i for i, c in enumerate(data) if c == 10][args[1] % data.count(b"\n")]
            files[args[0]] = data[:at] + data[at + 1:]
    elif kind == "field":
        name, index, field, value = args

        def put(obj):
            if isinstance(obj, dict):
                obj[field] = value
            return json.dumps(obj, ensure_ascii=bool(index % 2)).encode("utf-8")

        _edit_record(files, name, index, put)
    elif kind == "drop_field":
        def drop(obj):
            return json.dumps({k: v for k, v in obj.items() if k != args[2]} if isinstance(obj, dict) else obj).encode()

        _edit_record(files, args[0], args[1], drop)
    elif kind == "line_value":
        _edit_record(files, args[0], args[1], lambda obj: json.dumps(args[2]).encode())
    elif kind == "deep":
        def deepen(obj):
            if not isinstance(obj, dict):
                return json.dumps(obj).encode()
            return json.dumps({**obj, "x": "HERE"}).replace('"HERE"', "[" * args[2] + "]" * args[2]).encode()

        _edit_record(files, args[0], args[1], deepen)
    elif kind == "big_record":
        size = taskio.MAX_RECORD_BYTES + args[1] - len(b'{"id": "big", "instruction": "", "input": "", "output": "a"}')
        line = json.dumps({"id": "big", "instruction": "x" * max(size, 0), "input": "", "output": "a"}).encode()
        data = files.get(args[0])
        files[args[0]] = (data if isinstance(data, bytes) else b"") + line + b"\n"
    elif kind in ("meta", "meta_drop"):
        try:
            meta = yaml.safe_load(files["task.yaml"]) if isinstance(files.get("task.yaml"), bytes) else None
        except (yaml.YAMLError, ValueError, RecursionError):
            meta = None
        meta = dict(META) if not isinstance(meta, dict) else meta
        if kind == "meta":
            meta[args[0]] = args[1]
        else:
            meta.pop(args[0], None)
        files["task.yaml"] = yaml.safe_dump(meta, allow_unicode=True).encode("utf-8")
    elif kind == "yaml_text":
        files["task.yaml"] = args[0].encode("utf-8")
    elif kind == "kind":
        files[args[0]] = ("kind", args[1])
    elif kind == "manifest":
        correct, value = args
        if correct:
            listed = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()
                      if isinstance(d, bytes) and n != "manifest.json"}
            files["manifest.json"] = json.dumps({"generator": "fuzz", "files": listed}).encode()
        else:
            files["manifest.json"] = json.dumps(value).encode()


def materialize(files: dict, folder: Path, outside: Path) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        p = folder / name
        if isinstance(data, bytes):
            p.write_bytes(data)
            continue
        kind = data[1]
        if kind == "folder":
            p.mkdir()
        elif kind == "link_outside":
            p.symlink_to(outside)
        elif kind == "link_inside":
            (folder / f"real_{name}").write_bytes(valid_files().get(name, b"{}"))
            p.symlink_to(f"real_{name}")
        elif kind == "broken_link":
            p.symlink_to("nowhere")
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "huge":
            with open(p, "wb") as f:
                f.truncate(taskio.MAX_JSONL_BYTES + 1)  # sparse: stat says 512 MiB, the disk holds nothing
        elif kind == "empty":
            p.write_bytes(b"")


def validate(folder: Path) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["validate", str(folder)])
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - t0


def check_answered(folder: Path) -> int:
    """The property of every mutant: exit 0 or 2, fast, no traceback, each line naming a file."""
    rc, out, err, seconds = validate(folder)
    assert rc in (0, 2), (rc, out, err)
    assert "Traceback" not in out + err
    assert seconds < SECONDS_PER_MUTANT, seconds
    lines = out.splitlines()
    if rc == 0:
        assert lines == [f"{folder}: ok"]
        task = taskio.load_folder(folder)  # accepted means loadable, with values of the declared types
        for ex in (*task.train, *task.test):
            assert all(isinstance(v, str) for v in (ex.id, ex.instruction, ex.input, ex.output))
            assert isinstance(ex.answerable, bool) and all(isinstance(d, str) for d in ex.doc_ids)
            assert ex.stratum is None or isinstance(ex.stratum, str)
            json.dumps(dataclasses.asdict(ex), ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere
        sha256_json([task.name, task.sha256, task.instruction, task.abstain_phrase, [d.text for d in task.docs]])
        assert taskio.SAFE_NAME.fullmatch(task.name)
    else:
        assert lines and all(line.startswith(str(folder)) for line in lines), lines
        assert err.strip().splitlines() == [f"{len(lines)} problem(s) in {folder}"], err
    return rc


@settings(FUZZ, max_examples=FOLDER_MUTANTS)
@given(st.lists(folder_mutation, min_size=1, max_size=4))
def test_every_task_folder_mutant_is_answered(mutations):
    files = valid_files()
    for m in mutations:
        apply(files, m)
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        outside = Path(tmp) / "outside.jsonl"
        outside.write_bytes(_jsonl(TRAIN))
        folder = Path(tmp) / "task"
        materialize(files, folder, outside)
        event(f"bench validate exit {check_answered(folder)}")


def test_the_unmutated_folder_is_valid(tmp_path):
    materialize(valid_files(), tmp_path / "task", tmp_path / "x")
    assert check_answered(tmp_path / "task") == 0


# -- run configs ---------------------------------------------------------------------------------------
CONFIG_KEYS = (*[f.name for f in dataclasses.fields(RunConfig)], "generation.max_new_tokens", "generation.temperature",
               "generation.stop", "decision.margin", "decision.alpha", "endpoint.timeout_s", "params.few_shot",
               "params.few_shot.k", "params.lora.r", "params.nope", "prices", "seed")

config_mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(CONFIG_KEYS), yaml_values),
    st.tuples(st.just("set"), st.sampled_from(CONFIG_KEYS),
              st.sampled_from([_nested(40), 10**30, -1, 2**31, float("nan"), "a\x00b", "../../x", "\ud800", " "])),
    st.tuples(st.just("drop"), st.sampled_from(CONFIG_KEYS)),
    st.tuples(st.just("bytes"), st.integers(0, 10**5), st.sampled_from(NASTY)),
    st.tuples(st.just("random_bytes"), st.integers(0, 10**5), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("truncate"), st.integers(0, 10**5)),
    st.tuples(st.just("encode"), st.sampled_from(ENCODINGS)),
    st.tuples(st.just("text"), st.sampled_from([
        BOMB, "tasks: " + "[" * 4000, "- a", "5", "", "~", "tasks: [a]\ntasks: [b]", "params: &p {few_shot: *p}",
        "seeds: !!set {1, 2}", "model: !!binary eA=="])),
)


def _set(cfg: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = cfg
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value


def _drop(cfg: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = cfg
    for p in parents:
        node = node.get(p) if isinstance(node.get(p), dict) else {}
    node.pop(last, None)


def _config_bytes(mutations) -> bytes:
    cfg = json.loads(json.dumps(CONFIG))
    data = None
    for kind, *args in mutations:
        if kind == "set":
            _set(cfg, args[0], args[1])
        elif kind == "drop":
            _drop(cfg, args[0])
        else:
            if data is None:
                try:
                    data = yaml.safe_dump(cfg, allow_unicode=True).encode("utf-8", "surrogatepass")
                except yaml.YAMLError:
                    data = b""
            if kind in ("bytes", "random_bytes"):
                at = args[0] % (len(data) + 1)
                data = data[:at] + args[1] + data[at:]
            elif kind == "truncate":
                data = data[: args[0] % (len(data) + 1)]
            elif kind == "encode":
                data = data.decode("utf-8", "replace").encode(args[0], "replace")
            else:
                data = args[0].encode("utf-8")
    if data is None:
        try:
            data = yaml.safe_dump(cfg, allow_unicode=True).encode("utf-8", "surrogatepass")
        except yaml.YAMLError:
            data = json.dumps(cfg, default=str).encode("utf-8", "surrogatepass")
    return data


@settings(FUZZ, max_examples=CONFIG_MUTANTS)
@given(st.lists(config_mutation, min_size=1, max_size=4))
def test_every_run_config_mutant_is_answered(mutations):
    data = _config_bytes(mutations)
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_bytes(data)
        t0 = time.perf_counter()
        try:
            cfg = RunConfig.from_yaml(path)
        except BenchError as e:
            event("config refused")
            assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
        else:
            event("config accepted")  # then: valid, hashable into a run id, no name that leaves the results folder
            cfg.validate("fuzz")
            sha256_json(cfg.to_dict())
            assert cfg.run_id is None or taskio.SAFE_NAME.fullmatch(cfg.run_id)
        assert time.perf_counter() - t0 < SECONDS_PER_MUTANT


def test_the_unmutated_config_is_valid(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_bytes(_config_bytes([("drop", "nothing")]))
    cfg = RunConfig.from_yaml(p)
    assert cfg.seeds == (0, 1) and cfg.params_for("few_shot", object).k == 2


# -- accepted mutants through a real run -----------------------------------------------------------------
# DEL (U+007F) is the one control character json.dumps writes raw; bench refuses it raw (docs/input-limits.md)
printable = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x7f"), min_size=1,
                    max_size=40).filter(lambda s: s.strip())
benign_mutation = st.one_of(
    st.tuples(st.just("crlf_bom_blank"), st.sampled_from(FILES[:4]), st.booleans(), st.booleans(), st.booleans()),
    st.tuples(st.just("field"), st.just("test.jsonl"), st.integers(0, 1), st.sampled_from(["instruction", "input"]),
              printable),
    st.tuples(st.just("field"), st.just("test.jsonl"), st.integers(0, 1), st.just("output"), printable | st.integers()),
    st.tuples(st.just("field"), st.sampled_from(JSONL[:2]), st.integers(0, 3), st.just("x"),
              json_values.filter(lambda v: taskio.parse_json(json.dumps(v))[1] is None
                                 and "\x7f" not in json.dumps(v, ensure_ascii=False))),
    st.tuples(st.just("meta"), st.just("instruction"), printable),
)


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> Path:
    """The shipped model file served as is, one cache for the sample: the runs test the task, not the export."""
    folder = tmp_path_factory.mktemp("fuzz-run")
    path = folder / "run.yaml"
    path.write_text(json.dumps({"serve_format": "native", "cache_dir": str(folder / "cache")}), encoding="utf-8")
    return path


@pytest.mark.slow
@settings(FUZZ, max_examples=RUN_MUTANTS, phases=[Phase.generate])  # a real run takes seconds: report the mutant, no shrinking
# one line-ending/BOM mutation per file: a second BOM lands inside the first line, a real error `bench validate`
# names (the folder-mutant test above covers it)
@given(mutations=st.lists(benign_mutation, min_size=2, max_size=5,
                          unique_by=lambda m: (m[0], m[1]) if m[0] == "crlf_bom_blank" else repr(m)))
def test_accepted_mutants_run_zero_shot(run_config, mutations):
    files = valid_files()
    for m in mutations:
        apply(files, m)
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        folder = Path(tmp) / "task"
        materialize(files, folder, Path(tmp) / "x")
        assert check_answered(folder) == 0
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["run", "--config", str(run_config), "--task", str(folder), "--strategy", "zero_shot",
                       "--limit", "2", "--out", str(Path(tmp) / "r"), "--max-new-tokens", "8", "--probes", "none",
                       "--threads", "2", "--no-progress", "--run-id", "fuzz"])
        assert rc == 0 and "Traceback" not in out.getvalue() + err.getvalue(), err.getvalue()[-3000:]
        rows = [json.loads(line) for line in (Path(tmp) / "r" / "fuzz" / "rows.jsonl").read_text().splitlines()]
        quality = [r for r in rows if r["strategy"] == "zero_shot" and r.get("kind", "quality") == "quality"]
        assert quality and all(r["n"] == 2 for r in quality)


# -- study specs (bench study NAME: study.yaml + its run config) ------------------------------------------
STUDY = {"title": "t", "source": "s", "run": "run.yaml", "quick": {"limit": 4, "params": {"lora": {"epochs": 1}}},
         "claims": [{"id": "a", "says": "x", "better": "lora", "than": ["zero_shot"], "stratum": ["k", "m"]},
                    {"id": "b", "says": "y", "arm": "lora", "better_stratum": "v", "than_stratum": "r",
                     "metric": "f1", "lower_is_better": False}]}
STUDY_KEYS = ("title", "source", "run", "quick", "quick.limit", "quick.params", "quick.strategies", "claims",
              "frontier", "nope")
CLAIM_KEYS = ("id", "says", "better", "than", "arm", "better_stratum", "than_stratum", "task", "metric", "stratum",
              "answerable", "probe", "lower_is_better", "nope")
RUN_TEXTS = ("tasks: [demo]\nstrategies: [zero_shot, lora]\n", "strategies: 5\n", "strategies: [{a: 1}]\n", "- a\n",
             "", "strategies: [zero_shot, lora]\nlimit: -3\n", "tasks: [demo]\nstrategies: lora\n")

study_mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(STUDY_KEYS), yaml_values),
    st.tuples(st.just("claim"), st.integers(0, 2), st.sampled_from(CLAIM_KEYS), yaml_values),
    st.tuples(st.just("drop"), st.sampled_from(STUDY_KEYS)),
    st.tuples(st.just("run"), st.sampled_from(RUN_TEXTS)),
    st.tuples(st.just("bytes"), st.integers(0, 10**4), st.sampled_from(NASTY)),
)


@settings(FUZZ, max_examples=CONFIG_MUTANTS)
@given(st.lists(study_mutation, min_size=1, max_size=4))
def test_every_study_spec_mutant_is_answered(mutations):
    """A mutated study.yaml (or its run.yaml) loads into a valid run config or is refused in one line naming a file."""
    from bench.study import load_study, study_config

    spec, run_text, inserts = json.loads(json.dumps(STUDY)), RUN_TEXTS[0], []
    for kind, *args in mutations:
        if kind == "set":
            _set(spec, args[0], args[1])
        elif kind == "claim":
            claims = spec.get("claims") if isinstance(spec.get("claims"), list) else []
            if args[0] < len(claims) and isinstance(claims[args[0]], dict):
                claims[args[0]][args[1]] = args[2]
            else:
                claims.append({args[1]: args[2]})
            spec["claims"] = claims
        elif kind == "drop":
            _drop(spec, args[0])
        elif kind == "run":
            run_text = args[0]
        else:
            inserts.append(args)
    try:
        data = yaml.safe_dump(spec, allow_unicode=True).encode("utf-8", "surrogatepass")
    except yaml.YAMLError:
        data = json.dumps(spec, default=str).encode("utf-8", "surrogatepass")
    for at, raw in inserts:
        at %= len(data) + 1
        data = data[:at] + raw + data[at:]
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        (Path(tmp) / "study.yaml").write_bytes(data)
        (Path(tmp) / "run.yaml").write_text(run_text, encoding="utf-8")
        try:
            cfg = study_config(load_study(tmp), quick=True)
        except BenchError as e:
            event("study refused")
            assert "\n" not in str(e) and ("study.yaml" in str(e) or "run.yaml" in str(e)), str(e)
        else:
            event("study accepted")
            cfg.validate("fuzz")
            assert cfg.run_id == Path(tmp).name + "-quick"


@pytest.mark.parametrize("text", ["claims:\n- {'': null, 0: null}\n", "1: x\nzz: y\n"])
def test_study_keys_of_mixed_types_are_refused_in_one_line(tmp_path, text):
    """A YAML mapping whose keys mix numbers and text (found by the fuzzer above) is refused, not a TypeError."""
    from bench.study import load_study

    base = "title: t\nsource: s\nrun: run.yaml\n"
    (tmp_path / "study.yaml").write_text(base + text, encoding="utf-8")
    (tmp_path / "run.yaml").write_text(RUN_TEXTS[0], encoding="utf-8")
    with pytest.raises(BenchError, match=r"study\.yaml.*unknown key"):
        load_study(str(tmp_path))
