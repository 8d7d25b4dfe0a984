"""Task folders: the DESIGN.md format loads; every kind of bad input is reported as file:line, never a traceback."""

import json
import os
import re

import pytest

from bench import taskio
from bench.cli import main
from bench.errors import BenchError, TaskError
from bench.run.plan import resolve_task
from bench.taskio import load_folder, validate_folder
from tests.conftest import ROOT, write_task

GOOD = {"id": "x", "instruction": "q", "input": "", "output": "a"}
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(  # a "billion laughs": 9^6 values from six lines
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcde", "bcdef"))


def test_demo_task_loads_and_validates():
    task = resolve_task("demo")
    assert task.kind == "qa" and task.main_metric == "f1"
    assert len(task.test) >= 8 and len(task.docs) >= len(task.test)
    assert any(not ex.answerable for ex in task.test)
    assert validate_folder(task.path) == []


def test_folder_task_by_path(task_dir):
    task = resolve_task(str(task_dir))
    assert task.name == "tiny" and len(task.train) == 6 and len(task.test) == 4
    assert dict(task.files_sha256).keys() == {"task.yaml", "train.jsonl", "test.jsonl"}


def test_file_hashes_are_the_files_sha256(task_dir):
    from bench.hashing import sha256_file

    task = load_folder(task_dir)
    assert dict(task.files_sha256) == {n: sha256_file(task_dir / n) for n in ("task.yaml", "train.jsonl", "test.jsonl")}


def test_bad_json_line_is_reported_with_its_line(task_dir):
    p = task_dir / "test.jsonl"
    lines = p.read_text().splitlines()
    lines[2] = '{"id": "x", "instruction": '
    p.write_text("\n".join(lines) + "\n")
    problems = validate_folder(task_dir)
    assert any(pr.startswith(f"{p}:3: invalid JSON") and "truncated" in pr for pr in problems), problems


@pytest.mark.parametrize("mutate, expected", [
    (lambda rows: rows[1].pop("output"), "test.jsonl:2: missing field 'output'"),
    (lambda rows: rows[3].update(id=rows[0]["id"]), "test.jsonl:4: duplicate id 'te0'"),
    (lambda rows: rows[0].update(answerable="yes"), "test.jsonl:1: field 'answerable' must be a bool"),
    (lambda rows: rows[0].update(answerable=None), "test.jsonl:1: field 'answerable' must be a bool"),
    (lambda rows: rows[0].update(doc_ids=["nowhere"]), "doc_ids ['nowhere'] point nowhere"),
    (lambda rows: rows[0].update(doc_ids="d1"), "test.jsonl:1: field 'doc_ids' must be a list"),
    (lambda rows: rows[2].update(doc_ids=["d1", None]), "test.jsonl:3: doc_ids[1] must be a string"),
    (lambda rows: rows[2].update(doc_ids=[["d1"]]), "test.jsonl:3: doc_ids[0] must be a string"),
    (lambda rows: rows[1].update(stratum=3), "test.jsonl:2: field 'stratum' must be a string"),
    (lambda rows: rows[1].update(stratum={"a": 1}), "test.jsonl:2: field 'stratum' must be a string"),
    (lambda rows: rows[0].update(id=None), "test.jsonl:1: field 'id' must be a string"),
    (lambda rows: rows[0].update(id=1.5), "test.jsonl:1: field 'id' must be a string"),
    (lambda rows: rows[0].update(id="  "), "test.jsonl:1: field 'id' is empty"),
    (lambda rows: rows[0].update(instruction=["q"]), "test.jsonl:1: field 'instruction' must be a string, got a list"),
    (lambda rows: rows[0].update(input={"a": 1}), "test.jsonl:1: field 'input' must be a string, got a mapping"),
    (lambda rows: rows[0].update(output=None), "test.jsonl:1: field 'output' must be a string, got null"),
    (lambda rows: rows[0].update(output=True), "test.jsonl:1: field 'output' must be a string, got a boolean"),
    (lambda rows: rows[0].update(rejected=1), "test.jsonl:1: field 'rejected'"),
    (lambda rows: rows[0].update(output="a\u0000b"), "test.jsonl:1: a string holds NUL"),
    (lambda rows: rows[0].update(extra=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
     "test.jsonl:1: nested deeper than 32 levels"),
])
def test_bad_examples(tmp_path, mutate, expected):
    rows = [{"id": f"te{i}", "instruction": "q", "input": "", "output": "a"} for i in range(4)]
    mutate(rows)
    folder = write_task(tmp_path / "t", test=rows, docs=[{"id": "d1", "title": "", "text": "x"}])
    problems = validate_folder(folder)
    assert any(expected in pr for pr in problems), problems
    with pytest.raises(TaskError):
        load_folder(folder)


def test_numbers_and_extra_fields_are_kept(tmp_path):
    rows = [{"id": 7, "instruction": "2+2?", "input": "", "output": 4, "stratum": None, "options": ["4", "5"]}]
    task = load_folder(write_task(tmp_path / "t", test=rows))
    ex = task.test[0]
    assert (ex.id, ex.output, ex.stratum, list(ex.get("options"))) == ("7", "4", None, ["4", "5"])


def _line(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode()


@pytest.mark.parametrize("name, data, expected", [
    ("latin1", _line(GOOD) + '{"id": "y", "instruction": "café", "input": "", "output": "a"}\n'.encode("latin-1"),
     r"train\.jsonl:2: not UTF-8 \(byte 0xe9 at column 32; looks like Latin-1/CP1252\)"),
    ("cp1251", '{"id": "y", "instruction": "Что это?", "input": "", "output": "Кошка"}\n'.encode("cp1251"),
     r"train\.jsonl:1: not UTF-8 .*looks like CP1251\); save the file as UTF-8, e\.g\. iconv -f CP1251"),
    ("koi8", '{"id": "y", "instruction": "Что это?", "input": "", "output": "Кошка"}\n'.encode("koi8-r"),
     r"train\.jsonl:1: not UTF-8 .*looks like KOI8-R"),
    ("utf16", (json.dumps(GOOD) + "\n").encode("utf-16"), r"train\.jsonl: is UTF-16 \(by its byte-order mark\)"),
    ("utf16be", (json.dumps(GOOD) + "\n").encode("utf-16-be"), r"train\.jsonl: looks like UTF-16 big-endian"),
    ("utf32", (json.dumps(GOOD) + "\n").encode("utf-32"), r"train\.jsonl: is UTF-32"),
    ("gzip", b"\x1f\x8b\x08\x00\x00", r"train\.jsonl: is gzip-compressed"),
    ("nul", b'{"id": "y\x00", "instruction": "q"}\n', r"train\.jsonl:1: NUL byte at column 10"),
    ("control", b'{"id": "y", "instruction": "a\x01b", "input": "", "output": "a"}\n',
     r"train\.jsonl:1: control character U\+0001 at column 30"),
    ("old-mac", _line(GOOD).replace(b"\n", b"\r") * 2, r"train\.jsonl:1: carriage return at column \d+"),
    ("joined", _line(GOOD)[:-1] + _line({**GOOD, "id": "y"}),
     r"train\.jsonl:1: invalid JSON at column \d+: a second value"),
    ("truncated", b'{"id": "x", "instruction": ', r"train\.jsonl:1: invalid JSON at column 28: truncated"),
    ("unterminated", _line(GOOD)[:-10], r"train\.jsonl:1: invalid JSON at column 46: a string never ends"),
    ("surrogate", b'{"id": "a", "instruction": "q", "input": "", "output": "\\ud800"}\n',
     r"train\.jsonl:1: a string holds a lone surrogate U\+D800"),
    ("garbage", b"not json\n", r"train\.jsonl:1: invalid JSON at column 1: expecting value"),
    ("list", b"[1, 2]\n", r"train\.jsonl:1: each line must be a JSON object \{\.\.\.\}, got a list"),
    ("null", b"null\n", r"train\.jsonl:1: each line must be a JSON object \{\.\.\.\}, got null"),
    ("dup-key", b'{"id": "a", "id": "b", "instruction": "q", "input": "", "output": "a"}\n',
     r"train\.jsonl:1: duplicate key 'id' in one object"),
    ("nan", b'{"id": "a", "instruction": "q", "input": "", "output": NaN}\n', r"train\.jsonl:1: NaN is not valid JSON"),
    ("inf", b'{"id": "a", "instruction": "q", "input": "", "output": 1e999}\n',
     r"train\.jsonl:1: number '1e999' is out of range"),
    ("long-int", b'{"id": ' + b"9" * 5000 + b"}\n", r"train\.jsonl:1: invalid JSON: a number of more than 4300 digits"),
    ("deep", b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", r"train\.jsonl:1: nested deeper than 32 levels"),
    ("bom-inside", _line(GOOD) + b"\xef\xbb\xbf" + _line({**GOOD, "id": "y"}), r"train\.jsonl:2: byte-order mark"),
])
def test_bad_bytes_are_named_with_file_and_line(tmp_path, name, data, expected):
    folder = write_task(tmp_path / "t")
    (folder / "train.jsonl").write_bytes(data)
    problems = validate_folder(folder)
    assert any(re.search(expected, p) for p in problems), problems
    assert all(p.startswith(str(folder)) and "\n" not in p for p in problems)


def test_cli_validate_on_a_non_utf8_byte_exits_2_without_traceback(tmp_path, capsys):
    folder = write_task(tmp_path / "t")
    (folder / "train.jsonl").write_bytes(_line(GOOD)[:-3] + b"\xff\"}\n")
    assert main(["validate", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out.splitlines() == [(f"{folder / 'train.jsonl'}:1: not UTF-8 (byte 0xff at column 58; looks like "
                                 "Latin-1/CP1252); save the file as UTF-8, e.g. iconv -f CP1252 -t UTF-8")]
    with pytest.raises(TaskError, match="train.jsonl:1: not UTF-8"):
        resolve_task(str(folder))


def test_utf8_bom_crlf_and_blank_lines_are_accepted(tmp_path):
    clean = load_folder(write_task(tmp_path / "clean"))
    folder = write_task(tmp_path / "clean2")
    for name in ("train.jsonl", "test.jsonl", "task.yaml"):
        p = folder / name
        body = p.read_bytes().replace(b"\n", b"\r\n")
        if name.endswith(".jsonl"):
            body = b"\r\n  \r\n" + body.replace(b"\r\n", b"\r\n\r\n\t\r\n")
        p.write_bytes(b"\xef\xbb\xbf" + body)
    assert validate_folder(folder) == []
    task = load_folder(folder)
    assert task.train == clean.train and task.test == clean.test and task.name == "clean2"


def test_a_raw_tab_and_unicode_line_separators_stay_inside_strings(tmp_path):
    folder = write_task(tmp_path / "t")
    (folder / "test.jsonl").write_text('{"id": "a", "instruction": "x\ty\u2028z\u0085", "input": "", "output": "a"}\n',
                                       encoding="utf-8")
    task = load_folder(folder)
    assert task.test[0].instruction == "x\ty\u2028z\u0085"


def test_record_limit_is_exact(tmp_path):
    folder = write_task(tmp_path / "t")
    pad = taskio.MAX_RECORD_BYTES - len(_line({**GOOD, "input": ""})) + 1  # the line's own bytes, without "\n"
    at_limit = _line({**GOOD, "input": "x" * pad})
    assert len(at_limit) - 1 == taskio.MAX_RECORD_BYTES
    (folder / "train.jsonl").write_bytes(at_limit)
    assert validate_folder(folder) == []
    (folder / "train.jsonl").write_bytes(_line({**GOOD, "id": "y"}) + _line({**GOOD, "input": "x" * (pad + 1)}) * 2)
    problems = validate_folder(folder)
    assert problems == [f"{folder / 'train.jsonl'}:{n}: record is 1.0 MiB, over the limit of 1.0 MiB per record; "
                        "shorten it or split it (see docs/input-limits.md)" for n in (2, 3)]


def test_file_limit_is_checked_before_reading(tmp_path):
    folder = write_task(tmp_path / "t")
    with open(folder / "docs.jsonl", "wb") as f:  # sparse: no disk used, and never read
        f.truncate(taskio.MAX_JSONL_BYTES + 1)
    assert validate_folder(folder) == [(f"{folder / 'docs.jsonl'}: is 512.0 MiB, over the limit of 512.0 MiB per "
                                        "file; make it smaller (see docs/input-limits.md)")]
    (folder / "docs.jsonl").unlink()
    with open(folder / "task.yaml", "ab") as f:
        f.truncate(taskio.MAX_YAML_BYTES + 1)
    assert "task.yaml: is 64.0 KiB, over the limit of 64.0 KiB per file" in validate_folder(folder)[0]


def test_entries_that_are_not_plain_files_inside_the_folder(tmp_path):
    outside = write_task(tmp_path / "other")
    folder = write_task(tmp_path / "t")
    (folder / "train.jsonl").unlink()
    (folder / "train.jsonl").mkdir()
    os.mkfifo(folder / "test.jsonl.fifo")
    (folder / "test.jsonl").unlink()
    (folder / "test.jsonl").symlink_to(folder / "test.jsonl.fifo")
    (folder / "docs.jsonl").symlink_to(outside / "train.jsonl")
    problems = validate_folder(folder)  # a pipe is never opened: this would block forever
    assert f"{folder / 'train.jsonl'}: is a folder, not a file; put the data in a file of this name" in problems
    pipe = "is not a regular file (a pipe, socket or device); put the data in a plain file"
    assert f"{folder / 'test.jsonl'}: {pipe}" in problems
    assert any(p.startswith(f"{folder / 'docs.jsonl'}: is a link to {outside / 'train.jsonl'}, outside the task folder")
               for p in problems)
    (folder / "docs.jsonl").unlink()
    (folder / "docs.jsonl").symlink_to("nowhere")
    assert any("docs.jsonl: is a broken link" in p for p in validate_folder(folder))


def test_a_link_inside_the_folder_is_fine(tmp_path):
    folder = write_task(tmp_path / "t")
    (folder / "test.jsonl").rename(folder / "real_test.jsonl")
    (folder / "test.jsonl").symlink_to("real_test.jsonl")
    assert validate_folder(folder) == []


def test_empty_split_unknown_metric_and_bad_docs(tmp_path):
    folder = write_task(tmp_path / "t", train=[], meta={"metrics": ["rouge", "bleu"], "main_metric": "rougeL"},
                        docs=[{"id": "d1", "title": "a", "text": "x"}, {"id": "d1", "title": "b", "text": "y"},
                              {"id": "d2", "title": "c", "text": "  "}, {"id": "d3", "title": 5, "text": "z"},
                              {"id": ["d4"], "text": "z"}, {"id": "d5", "text": None}])
    problems = "\n".join(validate_folder(folder))
    assert "train.jsonl: empty split" in problems
    assert "unknown metric 'bleu'" in problems
    assert "docs.jsonl:2: duplicate doc id 'd1'" in problems
    assert "docs.jsonl:3: document 'd2' has no text" in problems
    assert "docs.jsonl:4: field 'title' must be a string" in problems
    assert "docs.jsonl:5: field 'id' must be a string" in problems
    assert "docs.jsonl:6: document 'd5' has no text" in problems


def test_task_yaml_problems(tmp_path):
    folder = write_task(tmp_path / "t", meta={"main_metric": "accuracy", "kind": "chat", "langauge": "en"})
    problems = "\n".join(validate_folder(folder))
    assert "kind must be one of qa, generation" in problems
    assert "main_metric 'accuracy' is not reported" in problems
    assert "unknown key 'langauge'; did you mean language?" in problems


@pytest.mark.parametrize("meta, expected", [
    ({"language": False}, "language must be a string, got false; quote it (YAML reads no, yes, on, off as booleans)"),
    ({"language": "english"}, "language 'english' is not an ISO code"),
    ({"kind": ["qa"]}, "kind must be a string, got a list"),
    ({"version": [1]}, "version must be text, got a list [1]"),
    ({"version": None}, "missing required key 'version'"),
    ({"description": {"a": 1}}, "description must be text, got a mapping"),
    ({"metrics": "rouge"}, "metrics must be a list of metric families"),
    ({"metrics": ["f1", None, {"a": 1}]}, "metrics[1] must be a metric name, got null"),
    ({"main_metric": 3}, "main_metric must be a string, got a number 3"),
    ({"extra": [1]}, "extra must be a mapping"),
    ({"name": "../../outside"}, "name '../../outside' must be 1-100 letters, digits or _ . + -"),
    ({"name": "a/b"}, "name 'a/b' must be"),
    ({"name": ".hidden"}, "name '.hidden' must be"),
    ({"name": "a\u0000b"}, "a string holds NUL"),
    ({"name": "x" * 101}, "must be 1-100 letters"),
])
def test_task_yaml_value_types(tmp_path, meta, expected):
    folder = write_task(tmp_path / "t", meta=meta)
    problems = validate_folder(folder)
    assert any(expected in p and p.startswith(str(folder / "task.yaml")) for p in problems), problems


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "task.yaml: must be a YAML mapping with keys name, version"),
    ("just text\n", "task.yaml: must be a YAML mapping"),
    ("", ("task.yaml: must be a YAML mapping with keys name, version, description, language, kind, metrics, "
          "main_metric, source, license, got null")),
    ("{}\n", "task.yaml: missing required key 'name'"),  # was "ok", then an assertion in load_folder (fuzzer)
    ("name: a\nname: b\n", "task.yaml:2: invalid YAML at column 1: duplicate key 'name'; keep one of them"),
    ("name: [unclosed\n", "task.yaml:2: invalid YAML at column 1"),
    ("name: a\n1: b\n", "task.yaml: key 1 is a number"),
    ("name: a\ninstruction: a\x07b\n", "task.yaml:2: control character U+0007 at column 15"),
    ("extra: {when: 2024-01-01}\n", "task.yaml: extra.when is a date"),
    ("extra: {a: !!int abc}\n", "task.yaml: invalid YAML value (ValueError"),
    ("extra: !!int\n", "task.yaml: invalid YAML value (IndexError"),  # an empty tagged value (fuzzer)
    ("extra: !!bool\n", "task.yaml: invalid YAML value (KeyError"),
    ("extra: " + "[" * 5000 + "]" * 5000 + "\n", "task.yaml: nested deeper than 32 levels"),
    ("extra: &a {x: *a}\n", "task.yaml: nested deeper than 32 levels"),
    (BOMB, "task.yaml: holds more than 100,000 values (anchors and aliases expanded)"),
])
def test_task_yaml_shapes(tmp_path, text, expected):
    folder = write_task(tmp_path / "t")
    (folder / "task.yaml").write_text(text, encoding="utf-8")
    problems = validate_folder(folder)
    assert any(p.startswith(str(folder)) and expected in p for p in problems), problems


def test_task_yaml_in_cp1251(tmp_path):
    folder = write_task(tmp_path / "t", meta={"description": "задача"})
    (folder / "task.yaml").write_bytes((folder / "task.yaml").read_text(encoding="utf-8").encode("cp1251"))
    assert any(re.search(r"task\.yaml:\d+: not UTF-8 .*looks like CP1251", p) for p in validate_folder(folder))


def test_manifest_problems_are_listed(tmp_path):
    folder = write_task(tmp_path / "t")
    zeros = "0" * 64
    (folder / "manifest.json").write_text(json.dumps({"files": {"../../etc/passwd": zeros, "train.jsonl": zeros}}))
    problems = validate_folder(folder)
    assert any("manifest.json: entry '../../etc/passwd': must map a file name of this folder" in p for p in problems)
    assert any(p.startswith(f"{folder / 'train.jsonl'}: sha256") and "does not match manifest" in p for p in problems)
    (folder / "manifest.json").write_text('{"files": {"train.jsonl": "')
    problems = validate_folder(folder)
    assert any("manifest.json: unreadable generator manifest: invalid JSON at line 1 column" in p or
               "manifest.json: unreadable generator manifest: invalid JSON at column" in p for p in problems), problems
    with pytest.raises(BenchError, match="manifest.json: unreadable generator manifest"):
        taskio.verify_manifest(folder)


def test_many_problems_in_one_file_are_counted(tmp_path):
    folder = write_task(tmp_path / "t")
    (folder / "train.jsonl").write_text("oops\n" * 150)
    problems = validate_folder(folder)
    train = [p for p in problems if "train.jsonl" in p]
    assert len(train) == taskio.MAX_PROBLEMS_PER_FILE + 1
    assert train[-1] == f"{folder / 'train.jsonl'}: 50 more problem(s) not listed; fix the ones above and rerun"


def test_problems_are_listed_by_line(tmp_path):
    rows = [{"id": "a", "instruction": "q", "input": "", "output": None}, GOOD, "x"]
    folder = write_task(tmp_path / "t", test=rows)
    lines = [int(p.split(":")[1]) for p in validate_folder(folder) if "test.jsonl:" in p]
    assert lines == [1, 3]


def test_missing_folder_and_files(tmp_path):
    assert "no such task folder" in validate_folder(tmp_path / "nope")[0]
    (tmp_path / "empty").mkdir()
    problems = validate_folder(tmp_path / "empty")
    assert any("task.yaml: missing" in p for p in problems)
    assert any("train.jsonl: missing" in p for p in problems)


def test_russian_text_round_trips(tmp_path):
    rows = [{"id": "r1", "instruction": "Что это?", "input": "", "output": "Кошка"}]
    task = load_folder(write_task(tmp_path / "ru", test=rows, train=rows[:0] or
                                  [{"id": "r0", "instruction": "Кто?", "input": "", "output": "Пёс"}], language="ru"))
    assert task.test[0].output == "Кошка" and task.language == "ru"
    assert json.loads(json.dumps(task.test[0].instruction)) == "Что это?"


def test_the_limits_page_states_the_limits():
    page = (ROOT / "docs" / "input-limits.md").read_text(encoding="utf-8")

    def size(n: int) -> str:
        return f"{n // taskio.MIB} MiB" if n >= taskio.MIB else f"{n // taskio.KIB} KiB"

    for fact in (size(taskio.MAX_YAML_BYTES), size(taskio.MAX_JSONL_BYTES), size(taskio.MAX_RECORD_BYTES),
                 size(taskio.MAX_MANIFEST_BYTES), f"{taskio.MAX_DEPTH} levels", f"{taskio.MAX_YAML_VALUES:,} values",
                 f"{taskio.MAX_PROBLEMS_PER_FILE} problems", f"{taskio.MAX_NAME_CHARS} characters"):
        assert fact in page, fact



def test_deep_json_is_refused_before_json_parses_it(monkeypatch):
    """Nesting is counted before json.loads runs (outside strings), so a deep line never reaches Python's
    recursion limit; brackets inside strings do not count."""
    from bench import taskio

    real = taskio.json.loads
    parsed = []
    monkeypatch.setattr(taskio.json, "loads", lambda text, **kw: parsed.append(text) or real(text, **kw))
    deep = '{"x": ' + "[" * 5000 + "]" * 5000 + "}"
    assert taskio.parse_json(deep) == (None, "nested deeper than 32 levels; flatten the data") and not parsed
    inside = '{"x": "' + "[" * 40 + '", "y": [[1]]}'
    assert taskio.parse_json(inside) == ({"x": "[" * 40, "y": [[1]]}, None) and parsed == [inside]
    edge = '{"x": ' + "[" * 31 + "]" * 31 + "}"  # 32 levels with the object: the most accepted
    assert taskio.parse_json(edge)[1] is None
    assert "nested deeper" in taskio.parse_json('{"x": ' + "[" * 32 + "]" * 32 + "}")[1]
