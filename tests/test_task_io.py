"""Task folders: the DESIGN.md format loads; every kind of bad input is reported as file:line."""

import json

import pytest

from bench.errors import TaskError
from bench.run.plan import resolve_task
from bench.taskio import load_folder, validate_folder
from tests.conftest import write_task


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


def test_bad_json_line_is_reported_with_its_line(task_dir):
    p = task_dir / "test.jsonl"
    lines = p.read_text().splitlines()
    lines[2] = '{"id": "x", "instruction": '
    p.write_text("\n".join(lines) + "\n")
    problems = validate_folder(task_dir)
    assert any(pr.startswith(f"{p}:3: invalid JSON") for pr in problems), problems


@pytest.mark.parametrize("mutate, expected", [
    (lambda rows: rows[1].pop("output"), "test.jsonl:2: missing field 'output'"),
    (lambda rows: rows[3].update(id=rows[0]["id"]), "test.jsonl:4: duplicate id 'te0'"),
    (lambda rows: rows[0].update(answerable="yes"), "test.jsonl:1: field 'answerable' must be a bool"),
    (lambda rows: rows[0].update(doc_ids=["nowhere"]), "doc_ids ['nowhere'] point nowhere"),
])
def test_bad_examples(tmp_path, mutate, expected):
    rows = [{"id": f"te{i}", "instruction": "q", "input": "", "output": "a"} for i in range(4)]
    mutate(rows)
    folder = write_task(tmp_path / "t", test=rows)
    problems = validate_folder(folder)
    assert any(expected in pr for pr in problems), problems
    with pytest.raises(TaskError):
        load_folder(folder)


def test_empty_split_unknown_metric_and_bad_docs(tmp_path):
    folder = write_task(tmp_path / "t", train=[], meta={"metrics": ["rouge", "bleu"], "main_metric": "rougeL"},
                        docs=[{"id": "d1", "title": "a", "text": "x"}, {"id": "d1", "title": "b", "text": "y"},
                              {"id": "d2", "title": "c", "text": "  "}])
    problems = "\n".join(validate_folder(folder))
    assert "train.jsonl: empty split" in problems
    assert "unknown metric 'bleu'" in problems
    assert "docs.jsonl:2: duplicate doc id 'd1'" in problems
    assert "docs.jsonl:3: document 'd2' has no text" in problems


def test_task_yaml_problems(tmp_path):
    folder = write_task(tmp_path / "t", meta={"main_metric": "accuracy", "kind": "chat", "langauge": "en"})
    problems = "\n".join(validate_folder(folder))
    assert "kind must be one of qa, generation" in problems
    assert "main_metric 'accuracy' is not reported" in problems
    assert "unknown key 'langauge'; did you mean language?" in problems


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
