"""`bench import`: a task folder (DESIGN.md format) from the files users already keep their data in.

    bench import data.csv --out my_task --input question --output answer
    bench import train.parquet --out my_task --input text --output summary --kind generation
    bench import ./saved_dataset --out my_task --output answers.text.0 --docs ./handbook

A source is a CSV/TSV, JSONL or Parquet file, or a folder written by `datasets`' `save_to_disk` (a
Dataset, or a DatasetDict whose train/test or train/validation splits are kept as they are). Columns
map to the Alpaca fields: `--input` and `--output` name columns (a dotted path reaches into nested
values: `answers.text.0`), the instruction is one `--instruction TEXT` for every item or an
`instruction` column, ids come from `--id` (or an `id` column, else the row number) and are made
unique. A source without splits is split with a seeded shuffle (`--test-share`, `--seed`).
`--docs DIR` turns every .txt, .md and .html file below DIR into one document of docs.jsonl, titled by
its first heading (or its file name), HTML stripped to text.

Bad input is one line naming the file, line or option and what to do, with bench validate's messages
where the problem is the same (encodings, JSON, limits). The folder is written into a temporary folder
beside --out, validated with `bench.taskio.validate_folder`, and only then renamed into place: a
written folder always validates, and a failed import leaves nothing behind.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import html
import io
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from bench.atomic import json_line
from bench.errors import BenchError
from bench.metrics.base import reported_names
from bench.registry import METRICS
from bench.taskio import (
    KINDS,
    MAX_JSONL_BYTES,
    MAX_RECORD_BYTES,
    SAFE_NAME,
    Problems,
    _decode,
    _foreign_format,
    _read_jsonl,
    _read_text,
    validate_folder,
)

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
DOC_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
INPUT_GUESSES = ("input", "question", "prompt", "query", "text", "context")
OUTPUT_GUESSES = ("output", "answer", "response", "target", "completion", "label", "summary")
KEPT_FIELDS = ("answerable", "doc_ids", "stratum", "rejected")  # optional DESIGN.md fields carried when present
DEFAULT_METRICS = {"qa": (["exact_match", "f1", "rouge"], "f1"), "generation": (["rouge"], "rougeL")}
TEST_SPLITS = ("test", "validation", "valid", "dev")


# -- reading a source --------------------------------------------------------------------------------
@dataclass
class Source:
    """The rows of a source: one list per split it came with ({"all": rows} when it has none)."""

    path: Path
    splits: dict[str, list[tuple[str, dict]]]  # split -> [(where: "file:line" or "split row N", record)]
    columns: list[str] = field(default_factory=list)

    @property
    def has_splits(self) -> bool:
        return "train" in self.splits and len(self.splits) == 2


def read_source(src: str | Path) -> Source:
    """Every row of a CSV/TSV, JSONL or Parquet file, or of a saved `datasets` folder (module docstring)."""
    path = Path(src)
    if not path.exists():
        raise BenchError(f"{src}: no such file or folder; pass a .csv, .tsv, .jsonl or .parquet file, "
                         "or a folder saved by datasets' save_to_disk")
    if path.is_dir():
        return _read_dataset_folder(path)
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise BenchError(f"{path}: empty file; export the data again")
    if suffix in TABLE_SUFFIXES:
        rows = _read_table(path, TABLE_SUFFIXES[suffix])
    elif suffix in JSONL_SUFFIXES or suffix == ".json":
        rows = _read_jsonl_rows(path)
    elif suffix in PARQUET_SUFFIXES:
        rows = _read_parquet(path)
    else:
        raise BenchError(f"{path}: unknown kind of file {suffix or '(no suffix)'!r}; bench import reads .csv, .tsv, "
                         ".jsonl, .parquet files and folders saved by datasets' save_to_disk")
    if not rows:
        raise BenchError(f"{path}: no rows; export the data again")
    return Source(path, {"all": rows}, _columns(r for _, r in rows))


def _columns(records) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(str(k), None)
    return list(seen)


def _decoded(path: Path, data: bytes) -> str:
    """The text of a table file: UTF-8 (a BOM accepted) or UTF-16/32 with a BOM; else bench validate's message."""
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(enc)
            except UnicodeDecodeError:
                raise BenchError(f"{path}: broken {enc.upper()} text after its byte-order mark; export it again as UTF-8") from None
    foreign = _foreign_format(data[:16])
    if foreign:
        raise BenchError(f"{path}: {foreign}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        _, message = _decode(data[start:end if end >= 0 else len(data)], True)
        raise BenchError(f"{path}:{line}: {message}") from None


def _read_table(path: Path, delimiter: str) -> list[tuple[str, dict]]:
    if path.stat().st_size > MAX_JSONL_BYTES:
        raise BenchError(f"{path}: over the limit of {MAX_JSONL_BYTES // 2**20} MiB; split the file")
    text = _decoded(path, path.read_bytes())
    if not text.strip():
        raise BenchError(f"{path}: empty file; export the data again")
    header = text.lstrip().split("\n", 1)[0]
    if delimiter == "," and header.count(";") > header.count(",") and header.count(";") > header.count("\t"):
        delimiter = ";"  # a spreadsheet in a locale with decimal commas
    elif delimiter == "," and header.count("\t") > header.count(","):
        delimiter = "\t"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        head = next(reader)
        names = [h.strip() for h in head]
        if not any(names):
            raise BenchError(f"{path}:1: no column names in the first line; the first line must name the columns")
        dupes = sorted({n for n in names if names.count(n) > 1 and n})
        if dupes:
            raise BenchError(f"{path}:1: column {dupes[0]!r} appears twice; rename one of them")
        rows, line = [], reader.line_num
        for cells in reader:
            where = f"{path}:{line + 1}"
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(names):
                raise BenchError(f"{where}: {len(cells)} cells under {len(names)} column names; quote cells that "
                                 f"contain {delimiter!r} or fix the row")
            rows.append((where, {n: (cells[i] if i < len(cells) else "") for i, n in enumerate(names) if n}))
    except csv.Error as e:
        raise BenchError(f"{path}:{reader.line_num}: unreadable CSV ({e}); check the quoting of that row") from None
    if not rows:
        raise BenchError(f"{path}: no rows under the header line; export the data again")
    return rows


def _read_jsonl_rows(path: Path) -> list[tuple[str, dict]]:
    problems = Problems()
    rows = _read_jsonl(path, problems, False, None)
    if problems:
        listing = problems.listing()
        more = f" (+{len(listing) - 1} more)" if len(listing) > 1 else ""
        raise BenchError(listing[0] + more)
    return [(f"{path}:{n}", obj) for n, obj in rows]


def _read_parquet(path: Path) -> list[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise BenchError(f"{path}: not a readable Parquet file ({_first_line(e)}); export it again") from None
    return [(f"{path} row {i + 1}", r) for i, r in enumerate(table.to_pylist())]


def _read_dataset_folder(path: Path) -> Source:
    if not ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
            or (path / "state.json").is_file()):
        raise BenchError(f"{path}: a folder, but not one saved by datasets' save_to_disk (no dataset_dict.json or "
                         "state.json); pass a .csv, .jsonl or .parquet file, or such a folder")
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds for a damaged folder
        raise BenchError(f"{path}: datasets cannot load it ({_first_line(e)}); save it again with save_to_disk") from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"all": loaded}
    splits = {name: [(f"{path} split {name} row {i + 1}", r) for i, r in enumerate(ds.to_list())]
              for name, ds in parts.items()}
    splits = {k: v for k, v in splits.items() if v}
    if not splits:
        raise BenchError(f"{path}: the dataset has no rows")
    test = next((s for s in TEST_SPLITS if s in splits), None)
    if "train" in splits and test is not None:
        splits = {"train": splits["train"], "test": splits[test]}
    elif len(splits) > 1:
        joined = [row for rows in splits.values() for row in rows]
        splits = {"all": joined}
    return Source(path, splits, _columns(r for rows in splits.values() for _, r in rows))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


# -- columns to records ------------------------------------------------------------------------------
def _lookup(record: dict, path: str) -> tuple[bool, Any]:
    """(found, value) of a column or a dotted path into nested values ("answers.text.0")."""
    if path in record:
        return True, record[path]
    value: Any = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and re.fullmatch(r"\d+", part) and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _text(value: Any, where: str, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    shape = "a list" if isinstance(value, (list, tuple)) else "an object" if isinstance(value, dict) else type(value).__name__
    raise BenchError(f"{where}: column {column!r} holds {shape}, not text; name a text inside it with a dotted path "
                     f"(e.g. {column}.0 or {column}.text)")


def _pick_column(columns: list[str], given: Optional[str], guesses: Sequence[str], option: str, src: Path,
                 sample: dict) -> str:
    if given:
        if not _lookup(sample, given)[0] and given not in columns:
            raise BenchError(f"{option} {given}: {src} has no such column; its columns are {', '.join(columns)}")
        return given
    for g in guesses:
        if g in columns:
            return g
    raise BenchError(f"{src}: say which column holds the {option[2:]} with {option} COL; "
                     f"its columns are {', '.join(columns)}")


@dataclass(frozen=True)
class Columns:
    """Which columns become which fields (None = guessed from the column names)."""

    input: Optional[str] = None
    output: Optional[str] = None
    id: Optional[str] = None
    instruction: Optional[str] = None  # one instruction for every item (else an `instruction` column, else empty)


def to_records(source: Source, columns: Columns, drop_empty: bool = False) -> tuple[dict[str, list[dict]], int]:
    """{split: records in the DESIGN.md fields} (ids unique across splits) and how many rows were dropped."""
    rows_all = [r for rows in source.splits.values() for _, r in rows]
    sample = rows_all[0]
    cols = source.columns
    out_col = _pick_column(cols, columns.output, OUTPUT_GUESSES, "--output", source.path, sample)
    in_col = _pick_column(cols, columns.input, [g for g in INPUT_GUESSES if g != out_col], "--input", source.path, sample)
    if in_col == out_col:
        raise BenchError(f"--input and --output both name column {in_col!r}; name two different columns")
    id_col = columns.id or ("id" if "id" in cols else None)
    if columns.id and columns.id not in cols:
        raise BenchError(f"--id {columns.id}: {source.path} has no such column; its columns are {', '.join(cols)}")
    instr_col = "instruction" if columns.instruction is None and "instruction" in cols and in_col != "instruction" else None
    records: dict[str, list[dict]] = {}
    taken: set[str] = set()
    dropped, number = 0, 0
    width = len(str(len(rows_all)))
    for split, rows in source.splits.items():
        out = records.setdefault(split, [])
        for where, row in rows:
            number += 1
            found_in, raw_in = _lookup(row, in_col)
            found_out, raw_out = _lookup(row, out_col)
            text_in = _text(raw_in, where, in_col) if found_in else ""
            text_out = _text(raw_out, where, out_col) if found_out else ""
            instruction = columns.instruction if columns.instruction is not None else (
                _text(row.get(instr_col), where, instr_col) if instr_col else "")
            answerable = _kept("answerable", row["answerable"], where) if row.get("answerable") not in (None, "") else True
            if (answerable and not text_out.strip()) or not (text_in.strip() or instruction.strip()):
                if drop_empty:
                    dropped += 1
                    continue
                what = f"output column {out_col!r}" if not text_out.strip() else f"input column {in_col!r}"
                raise BenchError(f"{where}: empty {what}; fill it, or pass --drop-empty to leave such rows out")
            raw_id = _text(row.get(id_col), where, id_col).strip() if id_col else ""
            rec = {"id": _unique(raw_id or str(number).zfill(width), taken), "instruction": instruction,
                   "input": text_in, "output": text_out}
            for key in KEPT_FIELDS:
                if row.get(key) not in (None, "") and key not in (in_col, out_col):
                    rec[key] = _kept(key, row[key], where)
            out.append(rec)
    if not any(records.values()):
        raise BenchError(f"{source.path}: every row was empty and dropped; check --input and --output")
    return records, dropped


def _unique(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`, ... : the first not taken (ids are unique across train and test)."""
    ident, k = base, 1
    while ident in taken:
        k += 1
        ident = f"{base}-{k}"
    taken.add(ident)
    return ident


_TRUE, _FALSE = ("true", "yes", "1", "y", "t"), ("false", "no", "0", "n", "f")


def _kept(key: str, value: Any, where: str) -> Any:
    """An optional DESIGN.md field from a source cell, in its JSON type (tables hold text: "false", "a;b")."""
    if key == "answerable":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE + _FALSE:
            return word in _TRUE
        raise BenchError(f"{where}: column 'answerable' holds {value!r}; use true or false")
    if key == "doc_ids":
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        text = str(value).strip()
        if text.startswith("["):
            try:
                return [str(v) for v in json.loads(text)]
            except ValueError:
                raise BenchError(f"{where}: column 'doc_ids' holds {text[:40]!r}, not a JSON list of ids") from None
        return [d.strip() for d in re.split(r"[;,]", text) if d.strip()]
    return _text(value, where, key)


def split_records(records: dict[str, list[dict]], test_share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, test): the source's own splits, or a seeded shuffle of all rows (each split keeps source order)."""
    if set(records) == {"train", "test"} and records["train"] and records["test"]:
        return records["train"], records["test"]
    rows = [r for rs in records.values() for r in rs]
    if len(rows) < 2:
        raise BenchError(f"only {len(rows)} usable row; a task needs at least one train and one test item")
    n_test = min(len(rows) - 1, max(1, round(len(rows) * test_share)))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    test_idx = set(order[:n_test])
    return ([r for i, r in enumerate(rows) if i not in test_idx], [r for i, r in enumerate(rows) if i in test_idx])


# -- documents ---------------------------------------------------------------------------------------
class _HTMLText(HTMLParser):
    """Visible text of an HTML page, block elements on their own lines; its <title> and first <h1>."""

    BLOCKS = {"p", "div", "ul", "ol", "table", "section", "article", "header", "footer", "pre", "blockquote",
              "h1", "h2", "h3", "h4", "h5", "h6", "hr", "main", "aside", "figure"}  # paragraphs: a blank line around
    LINES = {"br", "li", "tr", "dt", "dd"}  # a line of their own
    HIDDEN = {"script", "style", "noscript", "template", "svg", "nav"}  # code, styling, navigation

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.title = ""
        self.h1: Optional[str] = None
        self._in: list[str] = []
        self._h1_parts: Optional[list[str]] = None

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        self._in.append(tag)
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag in self.LINES:
            self.parts.append("\n")
        if tag == "h1" and self.h1 is None:
            self._h1_parts = []

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1
        if tag in self._in:
            while self._in and self._in.pop() != tag:
                pass
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        if tag == "h1" and self._h1_parts is not None:
            self.h1 = " ".join("".join(self._h1_parts).split())
            self._h1_parts = None

    def handle_data(self, data):
        if "title" in self._in:
            self.title += data
            return
        if self.hidden:
            return
        self.parts.append(data)
        if self._h1_parts is not None:
            self._h1_parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).split("\n"))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(source: str) -> tuple[str, str]:
    """(title, text) of an HTML page: the first <h1> (else <title>), and the visible text without markup."""
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    return (parser.h1 or " ".join(html.unescape(parser.title).split())), parser.text()


_ATX = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


def markdown_title(text: str) -> str:
    """The first heading of a Markdown text (# Title, or a line underlined with === or ---), else ""."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _ATX.match(line)
        if m:
            return m.group(1).strip()
        if line.strip() and i + 1 < len(lines) and re.fullmatch(r"\s*(=+|-+)\s*", lines[i + 1]):
            return line.strip()
    return ""


def _title_from_name(path: Path) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", path.stem).split()) or path.stem


def read_docs(folder: str | Path) -> tuple[list[dict], list[str]]:
    """(docs.jsonl records, files skipped because they hold no text) for every document file below `folder`."""
    root = Path(folder)
    if not root.is_dir():
        raise BenchError(f"--docs {folder}: no such folder; pass a folder of .txt, .md or .html files")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise BenchError(f"--docs {folder}: no .txt, .md or .html files in it")
    docs, skipped, ids = [], [], set()
    for path in files:
        problems = Problems()
        text = _read_text(path, problems, root=None, limit=MAX_JSONL_BYTES, required=True)
        if text is None:
            raise BenchError(problems.listing()[0])
        suffix = path.suffix.lower()
        if suffix in (".html", ".htm"):
            title, body = html_to_text(text)
        elif suffix in (".md", ".markdown"):
            title, body = markdown_title(text), text.strip()
        else:
            title, body = "", text.strip()
        if not body:
            skipped.append(str(path))
            continue
        rel = path.relative_to(root).as_posix()
        doc_id = rel.rsplit(".", 1)[0]
        if doc_id in ids:
            doc_id = rel
        ids.add(doc_id)
        doc = {"id": doc_id, "title": title or _title_from_name(path), "text": body}
        if len(json.dumps(doc, ensure_ascii=False).encode("utf-8")) > MAX_RECORD_BYTES:
            raise BenchError(f"{path}: its text is over {MAX_RECORD_BYTES // 2**20} MiB, the limit of one document; "
                             "split it into several files")
        docs.append(doc)
    if not docs:
        raise BenchError(f"--docs {folder}: every file is empty")
    return docs, skipped


# -- writing the folder ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskMeta:
    """What task.yaml says besides the data (DESIGN.md); None = a default from the kind or the source."""

    name: Optional[str] = None
    description: Optional[str] = None
    language: str = "en"
    kind: str = "qa"
    metrics: Optional[tuple[str, ...]] = None
    main_metric: Optional[str] = None
    source: Optional[str] = None
    license: str = "unspecified"
    abstain_phrase: Optional[str] = None


@dataclass
class Imported:
    """What `import_task` wrote."""

    folder: Path
    train: int
    test: int
    docs: int
    dropped: int
    own_splits: bool
    skipped_docs: list[str]


def task_yaml(meta: TaskMeta, name: str, src: Path, instruction: Optional[str]) -> dict:
    """task.yaml of the imported task: the given fields, defaults from the kind for the rest."""
    if meta.kind not in KINDS:
        raise BenchError(f"--kind {meta.kind}: must be one of {', '.join(KINDS)}")
    metrics, main = DEFAULT_METRICS[meta.kind]
    if meta.metrics:
        metrics = list(meta.metrics)
        known = [m for m in metrics if m in METRICS.names()]
        reported = reported_names(known)
        main = main if main in reported else (reported[0] if reported else main)  # unknown names: validate says so
    out: dict[str, Any] = {
        "name": name, "version": "1",
        "description": meta.description or f"Imported from {src.name} with bench import",
        "language": meta.language, "kind": meta.kind, "metrics": metrics, "main_metric": meta.main_metric or main,
        "source": meta.source or src.name, "license": meta.license,
    }
    if meta.abstain_phrase:
        out["abstain_phrase"] = meta.abstain_phrase
    if instruction:
        out["instruction"] = instruction
    return out


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.write_text("".join(json_line(r) for r in rows), encoding="utf-8")


def import_task(src: str | Path, out: str | Path, *, columns: Columns = Columns(), meta: TaskMeta = TaskMeta(),
                test_share: float = 0.2, seed: int = 0, docs: Optional[str | Path] = None, drop_empty: bool = False,
                force: bool = False) -> Imported:
    """Write the task folder `out` from `src` (module docstring); BenchError on bad input, nothing written then."""
    if not 0 < test_share < 1:
        raise BenchError(f"--test-share {test_share}: must be between 0 and 1 (the share of rows held out for testing)")
    out = Path(out)
    name = meta.name or re.sub(r"[^\w.+-]", "_", out.resolve().name).lstrip(".-") or "task"
    if not SAFE_NAME.fullmatch(name):
        raise BenchError(f"--name {name!r}: use letters, digits, _ . + - (it becomes a folder name)")
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"--out {out}: exists and is not empty; choose a new folder, or pass --force to replace it")
    source = read_source(src)
    records, dropped = to_records(source, columns, drop_empty)
    train, test = split_records(records, test_share, seed)
    doc_rows, skipped = read_docs(docs) if docs else ([], [])
    instruction = columns.instruction.strip() if columns.instruction else None
    meta_yaml = task_yaml(meta, name, source.path, instruction)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        (tmp / "task.yaml").write_text(yaml.safe_dump(meta_yaml, allow_unicode=True, sort_keys=False, width=110),
                                       encoding="utf-8")
        _write_jsonl(tmp / "train.jsonl", train)
        _write_jsonl(tmp / "test.jsonl", test)
        if doc_rows:
            _write_jsonl(tmp / "docs.jsonl", doc_rows)
        problems = [p.replace(str(tmp), str(out)) for p in validate_folder(tmp)]
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BenchError(f"{problems[0]}{more}")
        _put_in_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Imported(out, len(train), len(test), len(doc_rows), dropped, set(records) == {"train", "test"}, skipped)


def _put_in_place(tmp: Path, out: Path) -> None:
    """Rename the written folder to `out`; an existing `out` (allowed by --force) goes only once the new one is there."""
    old = None
    if out.exists() or out.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- the command -------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `bench import` (DESIGN.md)."""
    p.add_argument("src", help="a .csv, .tsv, .jsonl or .parquet file, or a folder saved by datasets' save_to_disk")
    p.add_argument("--out", required=True, help="the task folder to write")
    p.add_argument("--input", help=f"column of the item's input (default: the first of {', '.join(INPUT_GUESSES)}); "
                                   "a dotted path reaches into nested values")
    p.add_argument("--output", help=f"column of the reference answer (default: the first of {', '.join(OUTPUT_GUESSES)})")
    p.add_argument("--instruction", help="one instruction for every item (default: an 'instruction' column, if any)")
    p.add_argument("--id", help="column of the item ids (default: an 'id' column, else the row number); made unique")
    p.add_argument("--test-share", type=float, default=0.2, help="share of rows held out for testing (default 0.2) "
                                                                 "when the source has no train/test splits")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test shuffle (default 0)")
    p.add_argument("--docs", help="a folder of .txt, .md or .html files: one document each in docs.jsonl")
    p.add_argument("--name", help="task name (default: the --out folder's name)")
    p.add_argument("--description", help="one line on what the task is")
    p.add_argument("--language", default="en", help="ISO code of the task's language (default en)")
    p.add_argument("--kind", default="qa", choices=KINDS, help="qa (short answers) or generation (default qa)")
    p.add_argument("--metrics", help="metric families, comma-separated (default: exact_match,f1,rouge for qa; rouge)")
    p.add_argument("--main-metric", help="the reported metric that decides (default: f1 for qa, rougeL)")
    p.add_argument("--license", default="unspecified", help="the data's licence (default: unspecified)")
    p.add_argument("--source", help="where the data comes from (default: the source file's name)")
    p.add_argument("--abstain-phrase", help="what the model should say when it cannot answer (default: I don't know)")
    p.add_argument("--drop-empty", action="store_true", help="leave out rows whose input or output is empty")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def cmd_import(args: argparse.Namespace) -> int:
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else None
    result = import_task(
        args.src, args.out,
        columns=Columns(input=args.input, output=args.output, id=args.id, instruction=args.instruction),
        meta=TaskMeta(name=args.name, description=args.description, language=args.language, kind=args.kind,
                      metrics=metrics, main_metric=args.main_metric, source=args.source, license=args.license,
                      abstain_phrase=args.abstain_phrase),
        test_share=args.test_share, seed=args.seed, docs=args.docs, drop_empty=args.drop_empty, force=args.force)
    how = "the source's own splits" if result.own_splits else f"a seeded split (test share {args.test_share}, seed {args.seed})"
    print(f"{result.folder}: {result.train} train and {result.test} test items from {how}"
          + (f", {result.docs} documents" if result.docs else "")
          + (f"; {result.dropped} empty rows left out" if result.dropped else ""))
    if result.skipped_docs:
        print(f"skipped {len(result.skipped_docs)} empty document(s), e.g. {result.skipped_docs[0]}")
    print(f"run it: bench run --task {result.folder}")
    return 0
