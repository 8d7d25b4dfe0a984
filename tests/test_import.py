"""`bench import`: real CSV, TSV, JSONL, Parquet files and saved `datasets` folders become task folders that
validate; documents become docs.jsonl; bad input is one line with exit code 2 and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main as cli_main
from bench.errors import BenchError
from bench.importer import Columns, TaskMeta, html_to_text, import_task, markdown_title, read_docs
from bench.taskio import load_folder, validate_folder

QUESTIONS = [(f"What is {i} plus {i}?", str(2 * i)) for i in range(10)]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = cli_main(["import", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip()


def _frame():
    import pandas as pd

    rows = [{"question": q, "answer": a, "topic": "sums"} for q, a in QUESTIONS]
    rows[3]["question"] = 'Multi-line, "quoted", with a comma:\nwhat is 3 plus 3?'
    rows[4]["answer"] = "ответ: 8"
    return pd.DataFrame(rows)


def test_csv_with_guessed_columns_writes_a_valid_seeded_split(tmp_path, capsys):
    src = tmp_path / "data.csv"
    _frame().to_csv(src, index=False)
    code, out, err = _cli(capsys, src, "--out", tmp_path / "task", "--instruction", "Answer with a number.")
    assert code == 0 and not err and "8 train and 2 test" in out
    folder = tmp_path / "task"
    assert validate_folder(folder) == []
    task = load_folder(folder)
    assert task.name == "task" and task.kind == "qa" and task.main_metric == "f1"
    assert task.instruction == "Answer with a number." and all(e.instruction == task.instruction for e in task.test)
    items = {e.input: e.output for e in task.train + task.test}
    assert items == {q: a for q, a in [(q if i != 3 else 'Multi-line, "quoted", with a comma:\nwhat is 3 plus 3?',
                                        a if i != 4 else "ответ: 8") for i, (q, a) in enumerate(QUESTIONS)]}
    ids = [e.id for e in task.train + task.test]
    assert len(set(ids)) == 10
    # the split is seeded: the same seed gives the same test items, another seed other ones
    again = import_task(src, tmp_path / "again", columns=Columns(input="question", output="answer"), seed=0)
    other = import_task(src, tmp_path / "other", columns=Columns(input="question", output="answer"), seed=1)
    test_ids = lambda f: [r["id"] for r in _lines(f / "test.jsonl")]  # noqa: E731
    assert test_ids(again.folder) == test_ids(folder) != test_ids(other.folder)
    assert not list(tmp_path.glob(".*import*"))  # no temporary folder left


def test_jsonl_ids_made_unique_nested_columns_and_kept_fields(tmp_path):
    src = tmp_path / "data.jsonl"
    rows = [{"id": "q1" if i < 3 else f"q{i}", "context": f"Text {i}.", "answers": {"text": [f"ans {i}", "alt"]},
             "answerable": i != 5, "stratum": "a" if i % 2 else "b"} for i in range(8)]
    rows[5]["answers"]["text"] = [""]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = import_task(src, tmp_path / "t", columns=Columns(input="context", output="answers.text.0"),
                      meta=TaskMeta(name="nested", kind="generation"), test_share=0.25, seed=3)
    assert (res.train, res.test) == (6, 2) and validate_folder(res.folder) == []
    recs = _lines(res.folder / "train.jsonl") + _lines(res.folder / "test.jsonl")
    assert sorted(r["id"] for r in recs) == sorted(["q1", "q1-2", "q1-3", "q3", "q4", "q5", "q6", "q7"])
    by_input = {r["input"]: r for r in recs}
    assert by_input["Text 2."]["output"] == "ans 2" and by_input["Text 5."]["answerable"] is False
    assert by_input["Text 1."]["stratum"] == "a"
    task = load_folder(res.folder)
    assert task.kind == "generation" and task.main_metric == "rougeL" and task.name == "nested"


def test_parquet_and_tsv(tmp_path):
    frame = _frame()
    frame.to_parquet(tmp_path / "data.parquet")
    res = import_task(tmp_path / "data.parquet", tmp_path / "p", columns=Columns(input="question", output="answer"))
    assert (res.train, res.test) == (8, 2) and validate_folder(res.folder) == []
    frame.to_csv(tmp_path / "data.tsv", sep="\t", index=False)
    res = import_task(tmp_path / "data.tsv", tmp_path / "t")
    assert (res.train, res.test) == (8, 2) and validate_folder(res.folder) == []
    assert sorted(r["output"] for r in _lines(res.folder / "test.jsonl") + _lines(res.folder / "train.jsonl")) == \
        sorted(frame["answer"])


def test_saved_datasets_keep_their_splits(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"question": [q for q, _ in QUESTIONS], "answer": [a for _, a in QUESTIONS]})
    ds.save_to_disk(str(tmp_path / "one"))
    res = import_task(tmp_path / "one", tmp_path / "from_one", test_share=0.3)
    assert (res.train, res.test, res.own_splits) == (7, 3, False) and validate_folder(res.folder) == []

    dd = datasets.DatasetDict({"train": ds.select(range(6)), "validation": ds.select(range(6, 10))})
    dd.save_to_disk(str(tmp_path / "dict"))
    res = import_task(tmp_path / "dict", tmp_path / "from_dict")
    assert (res.train, res.test, res.own_splits) == (6, 4, True)
    assert [r["input"] for r in _lines(res.folder / "test.jsonl")] == [q for q, _ in QUESTIONS[6:]]


def test_docs_folder_becomes_docs_jsonl(tmp_path):
    docs = tmp_path / "handbook"
    (docs / "guides").mkdir(parents=True)
    (docs / "alarm.md").write_text("Intro line\n\n# Freezer alarm\n\nThe alarm sounds at minus 22.\n", encoding="utf-8")
    (docs / "forklift_rules.txt").write_text("Forklifts drive at most 6 km/h.\n", encoding="utf-8")
    (docs / "guides" / "doors.html").write_text(
        "<html><head><title>Doors page</title><style>p {color: red}</style></head><body><nav>Menu</nav>"
        "<h1>Loading &amp; doors</h1><script>var x = 1;</script><p>Doors close after <b>90</b> seconds.</p>"
        "<ul><li>Dock A</li><li>Dock B</li></ul></body></html>", encoding="utf-8")
    (docs / "empty.txt").write_text("  \n", encoding="utf-8")
    (docs / "notes.pdf").write_bytes(b"%PDF-1.4")
    records, skipped = read_docs(docs)
    by_id = {d["id"]: d for d in records}
    assert set(by_id) == {"alarm", "forklift_rules", "guides/doors"} and skipped == [str(docs / "empty.txt")]
    assert by_id["alarm"]["title"] == "Freezer alarm" and "minus 22" in by_id["alarm"]["text"]
    assert by_id["forklift_rules"]["title"] == "forklift rules"
    doors = by_id["guides/doors"]
    assert doors["title"] == "Loading & doors"
    assert "var x" not in doors["text"] and "color" not in doors["text"] and "<" not in doors["text"]
    assert "Doors close after 90 seconds." in doors["text"] and "Dock A\nDock B" in doors["text"]

    src = tmp_path / "data.csv"
    _frame().to_csv(src, index=False)
    res = import_task(src, tmp_path / "with_docs", docs=docs)
    assert res.docs == 3 and validate_folder(res.folder) == [] and len(load_folder(res.folder).docs) == 3


def test_titles_from_headings():
    assert markdown_title("text\n\n## Second level ##\n") == "Second level"
    assert markdown_title("Setext title\n=====\nbody") == "Setext title"
    assert markdown_title("no heading here") == ""
    assert html_to_text("<title> Page </title><p>Body</p>") == ("Page", "Body")


# -- bad input: one line, exit 2, nothing written -----------------------------------------------------
def test_missing_column_names_the_columns_that_exist(tmp_path, capsys):
    src = tmp_path / "data.csv"
    _frame().to_csv(src, index=False)
    code, _, err = _cli(capsys, src, "--out", tmp_path / "t", "--output", "reply")
    assert code == 2 and len(err.splitlines()) == 1
    assert "--output reply" in err and "question, answer, topic" in err
    src2 = tmp_path / "odd.csv"
    src2.write_text("a,b\n1,2\n", encoding="utf-8")
    code, _, err = _cli(capsys, src2, "--out", tmp_path / "t")
    assert code == 2 and "with --output COL" in err and "its columns are a, b" in err
    assert not (tmp_path / "t").exists()


def test_empty_files_and_wrong_encoding(tmp_path, capsys):
    for name, data in (("empty.csv", b""), ("header.csv", b"question,answer\n"), ("empty.jsonl", b"\n\n")):
        (tmp_path / name).write_bytes(data)
        code, _, err = _cli(capsys, tmp_path / name, "--out", tmp_path / "t")
        assert code == 2 and len(err.splitlines()) == 1 and str(tmp_path / name) in err, (name, err)
        assert "empty" in err or "no rows" in err
    cp = tmp_path / "cp1251.csv"
    cp.write_bytes("question,answer\nСколько будет два плюс два?,четыре\n".encode("cp1251"))
    code, _, err = _cli(capsys, cp, "--out", tmp_path / "t")
    assert code == 2 and f"{cp}:2: not UTF-8" in err and "CP1251" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": \n', encoding="utf-8")
    code, _, err = _cli(capsys, bad, "--out", tmp_path / "t")
    assert code == 2 and f"{bad}:2: invalid JSON" in err
    utf16 = tmp_path / "excel.tsv"
    utf16.write_bytes("question\tanswer\nq1\ta1\nq2\ta2\n".encode("utf-16"))
    assert import_task(utf16, tmp_path / "u16").train == 1  # a BOM says what the text is: read, not refused
    assert not (tmp_path / "t").exists()


def test_empty_cells_are_errors_unless_dropped(tmp_path, capsys):
    src = tmp_path / "data.csv"
    src.write_text("question,answer\nq1,a1\nq2,\nq3,a3\n,a4\nq5,a5\n", encoding="utf-8")
    code, _, err = _cli(capsys, src, "--out", tmp_path / "t")
    assert code == 2 and f"{src}:3: empty output column 'answer'" in err and "--drop-empty" in err
    code, out, _ = _cli(capsys, src, "--out", tmp_path / "t", "--drop-empty")
    assert code == 0 and "2 empty rows left out" in out and validate_folder(tmp_path / "t") == []


def test_out_is_never_clobbered_and_failed_validation_leaves_nothing(tmp_path, capsys):
    src = tmp_path / "data.csv"
    _frame().to_csv(src, index=False)
    out = tmp_path / "task"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = _cli(capsys, src, "--out", out)
    assert code == 2 and "--force" in err and (out / "keep.txt").is_file()
    code, _, err = _cli(capsys, src, "--out", out, "--force", "--metrics", "f1,bleurt")
    assert code == 2 and "task.yaml" in err and "bleurt" in err and str(out) in err
    assert (out / "keep.txt").is_file() and not list(tmp_path.glob(".task.*"))
    code, _, _ = _cli(capsys, src, "--out", out, "--force")
    assert code == 0 and not (out / "keep.txt").exists() and validate_folder(out) == []
    with pytest.raises(BenchError, match="--test-share"):
        import_task(src, tmp_path / "x", test_share=1.0)
    with pytest.raises(BenchError, match="no such file"):
        import_task(tmp_path / "missing.csv", tmp_path / "x")
    folder = tmp_path / "plain_folder"
    folder.mkdir()
    with pytest.raises(BenchError, match="save_to_disk"):
        import_task(folder, tmp_path / "x")
