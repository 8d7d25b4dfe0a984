"""Load and validate task folders (DESIGN.md: task.yaml, train.jsonl, test.jsonl, optional docs.jsonl).

Task folders come from other people and other tools, so every byte is checked before it is trusted:
each file is stat-ed first (a regular file inside the folder, under the size limit) and read line by
line with a cap per record; encodings other than UTF-8, control characters, broken or concatenated
JSON, duplicate keys, deep nesting, values of the wrong type and names that could escape the results
folder are each one problem `file:line[:column]: message` saying what to do. The limits are the
constants below (docs/input-limits.md explains them to users). `read_yaml_file` gives a run config
the same checks.

`validate_folder` collects every problem; `load_folder` refuses a task with any problem, so a bad task
never produces a partial run.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import json
import math
import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional

import yaml

import bench.metrics  # noqa: F401  (fills METRICS: task.yaml names metrics)
from bench.errors import BenchError, TaskError
from bench.hashing import sha256_file
from bench.metrics.base import reported_names
from bench.registry import METRICS
from bench.types import Doc, Example, Task

# -- the limits (docs/input-limits.md) ------------------------------------------------------------
KIB, MIB = 1 << 10, 1 << 20
MAX_YAML_BYTES = 64 * KIB  # task.yaml and a run config: settings, not data (PyYAML parses ~30,000 tokens a second)
MAX_MANIFEST_BYTES = 1 * MIB  # a generator's manifest.json
MAX_JSONL_BYTES = 512 * MIB  # train.jsonl, test.jsonl, docs.jsonl, each
MAX_RECORD_BYTES = 1 * MIB  # one line of a .jsonl file (about 250,000 tokens: beyond any context window)
MAX_DEPTH = 32  # nesting of lists and objects in a JSON record or a YAML file
MAX_YAML_VALUES = 100_000  # values of a YAML file after expanding anchors and aliases
MAX_NAME_CHARS = 100  # a task name or run id (each becomes a folder name)
MAX_PROBLEMS_PER_FILE = 100  # further problems of one file are counted, not listed

# -- the format (DESIGN.md) -------------------------------------------------------------------------
MANIFEST = "manifest.json"  # written by the generators of bench.synth: sha256 of every data file
TASK_YAML, TRAIN, TEST, DOCS = "task.yaml", "train.jsonl", "test.jsonl", "docs.jsonl"
REQUIRED_KEYS = ("name", "version", "description", "language", "kind", "metrics", "main_metric", "source", "license")
OPTIONAL_KEYS = ("abstain_phrase", "instruction", "extra")
TEXT_KEYS = ("name", "version", "description", "source", "license", "abstain_phrase", "instruction")  # numbers allowed
KINDS = ("qa", "generation")
EXAMPLE_FIELDS = ("id", "instruction", "input", "output")
OPTIONAL_EXAMPLE_FIELDS = {"answerable": bool, "doc_ids": list, "stratum": str}
NEEDED = "a task folder needs task.yaml, train.jsonl and test.jsonl"

# A name that becomes one folder name (a task name, a run id): letters of any script, digits, _ . + -, not
# starting with . or - (so never "..", a hidden file or an option), no separator, no NUL.
SAFE_NAME = re.compile(rf"\w[\w.+-]{{0,{MAX_NAME_CHARS - 1}}}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")  # ISO 639 code, optionally with a region
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # C0 controls and DEL; a tab is fine
BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")  # NUL and lone surrogates (from \u0000, \ud800 escapes): never text


def _show(path: Path | str) -> str:
    """A path as printable text (a name that is not valid UTF-8 is shown with escapes, not a crash)."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _where(path: Path | str, line: Optional[int] = None) -> str:
    return _show(path) + (f":{line}" if line else "")


def _short(value: Any, limit: int = 60) -> str:
    """repr of a user's value, cut to `limit` characters (a 1 MB value never becomes a 1 MB message)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _got(value: Any) -> str:
    """`a string 'yes'`, `a number 3`, `null`, `false`: a user's value with its type, for messages."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return f"{_kind(value)} {_short(value)}"


def _kind(value: Any) -> str:
    """The YAML/JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / KIB:.1f} KiB" if n >= KIB else f"{n:,} bytes"


class Problems:
    """The problems of a task folder as `file:line: message` lines, at most MAX_PROBLEMS_PER_FILE per file."""

    def __init__(self) -> None:
        self._lines: list[tuple[int, int, str]] = []  # (file's order, line, text)
        self._per_file: Counter[str] = Counter()
        self._order: dict[str, int] = {}

    def add(self, path: Path | str, message: str, line: Optional[int] = None) -> None:
        key = _show(path)
        self._order.setdefault(key, len(self._order))
        self._per_file[key] += 1
        if self._per_file[key] <= MAX_PROBLEMS_PER_FILE:
            self._lines.append((self._order[key], line or 0, f"{_where(path, line)}: {message}"))

    def of(self, path: Path | str) -> int:
        """How many problems `path` has."""
        return self._per_file[_show(path)]

    def listing(self) -> list[str]:
        """The problems, file by file in the order files were read, by line within a file."""
        out = [text for _, _, text in sorted(self._lines, key=lambda t: (t[0], t[1]))]
        for key, n in self._per_file.items():
            if n > MAX_PROBLEMS_PER_FILE:
                out.append(f"{key}: {n - MAX_PROBLEMS_PER_FILE} more problem(s) not listed; "
                           "fix the ones above and rerun")
        return out

    def __bool__(self) -> bool:
        return bool(self._lines)


# -- files: kind, place, size ------------------------------------------------------------------------
def _entry_size(path: Path, problems: Problems, *, root: Optional[Path], limit: int, required: bool,
                missing: str = NEEDED) -> Optional[int]:
    """The size of `path` when it may be read: a regular file (inside `root` when given) within `limit`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            problems.add(path, f"is a broken link (to {_show(os.readlink(path))}); copy the file itself here")
        elif required:
            problems.add(path, f"missing; {missing}")
        return None
    except (OSError, ValueError) as e:
        problems.add(path, f"cannot be read ({getattr(e, 'strerror', None) or e}); check the name and permissions")
        return None
    if root is not None:
        real, inside = Path(os.path.realpath(path)), Path(os.path.realpath(root))
        if inside not in real.parents:
            problems.add(path, f"is a link to {_show(real)}, outside the task folder; copy the file into the folder")
            return None
    if stat.S_ISDIR(st.st_mode):
        problems.add(path, "is a folder, not a file; put the data in a file of this name")
        return None
    if not stat.S_ISREG(st.st_mode):
        problems.add(path, "is not a regular file (a pipe, socket or device); put the data in a plain file")
        return None
    if st.st_size > limit:
        problems.add(path, f"is {_size(st.st_size)}, over the limit of {_size(limit)} per file; "
                           "make it smaller (see docs/input-limits.md)")
        return None
    return st.st_size


# -- bytes and encodings -----------------------------------------------------------------------------
_FOREIGN = (  # (leading bytes, what the file is)
    (codecs.BOM_UTF32_LE, "UTF-32 (by its byte-order mark)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (by its byte-order mark)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (by its byte-order mark)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (by its byte-order mark)"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"SQLite format 3", "an SQLite database"),
)


def _foreign_format(head: bytes) -> Optional[str]:
    """What a file is when its first bytes say it is not UTF-8 text (None when they do not)."""
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            hint = "convert it to UTF-8 text" if "UTF" in what else "unpack it, or use `bench import` for tables"
            return f"is {what}, not UTF-8 text; {hint}"
    if len(head) >= 4 and head[1:4:2] == b"\x00\x00" and head[0] and head[2]:
        return ("looks like UTF-16 little-endian without a byte-order mark (every other byte is NUL); "
                "convert it to UTF-8")
    if len(head) >= 4 and head[0:4:2] == b"\x00\x00" and head[1] and head[3]:
        return ("looks like UTF-16 big-endian without a byte-order mark (every other byte is NUL); "
                "convert it to UTF-8")
    return None


def _guess_encoding(data: bytes) -> str:
    """A likely single-byte encoding of text that is not UTF-8: Cyrillic letters come in runs of high bytes,
    Western accents alone between ASCII letters."""
    runs = re.findall(rb"[\x80-\xff]+", data)
    high = b"".join(runs)
    if high and sum(len(r) >= 2 for r in runs) * 2 >= len(runs):
        lower_cp1251 = sum(0xE0 <= b <= 0xFF for b in high)  # CP1251 puts lower-case letters at E0-FF, KOI8-R at C0-DF
        return "CP1251" if lower_cp1251 * 2 >= len(high) else "KOI8-R"
    return "Latin-1/CP1252"


def _decode(raw: bytes, first_bad: bool) -> tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, message) for one line of bytes; the first bad line of a file names a likely encoding."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        where = f"byte 0x{raw[e.start]:02x} at column {e.start + 1}"
        if not first_bad:
            return None, f"not UTF-8 ({where})"
        enc = _guess_encoding(raw)
        return None, (f"not UTF-8 ({where}; looks like {enc}); save the file as UTF-8, "
                      f"e.g. iconv -f {enc.split('/')[-1]} -t UTF-8")


def _control_problem(text: str) -> Optional[str]:
    """A message about the first control character of a line of text (None when it has none)."""
    m = _CONTROL.search(text)
    if not m:
        return None
    ch, col = m.group(), m.start() + 1
    if ch == "\x00":
        return f"NUL byte at column {col} (binary data, or UTF-16 text?); save the file as UTF-8 text"
    if ch == "\r":
        return f"carriage return at column {col}, inside the line (old Mac line ends?); use LF or CRLF line ends"
    return f"control character U+{ord(ch):04X} at column {col}; remove it (inside a string, write \\u{ord(ch):04x})"


# -- JSON --------------------------------------------------------------------------------------------
class _Invalid(ValueError):
    """A JSON value that parses but is not acceptable (duplicate key, NaN, an infinite number)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Invalid(f"duplicate key {_short(dup)} in one object; keep one of them")
    return d


def _constant(name: str) -> Any:
    raise _Invalid(f"{name} is not valid JSON; write null or a number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Invalid(f"number {_short(text, 30)} is out of range; write a smaller number")
    return value


def _shape_problem(value: Any, max_values: Optional[int] = None) -> Optional[str]:
    """Why a parsed JSON/YAML value is unacceptable: nested deeper than MAX_DEPTH, more than `max_values`
    values, or a string holding NUL or a lone surrogate. None when it is fine."""
    stack, count = [(value, 1)], 0
    while stack:
        v, depth = stack.pop()
        count += 1
        if max_values is not None and count > max_values:
            return f"holds more than {max_values:,} values (anchors and aliases expanded); write it out smaller"
        if isinstance(v, str):
            m = BAD_TEXT.search(v)
            if m:
                ch = m.group()
                what = "NUL (U+0000)" if ch == "\x00" else f"a lone surrogate U+{ord(ch):04X} (not Unicode text)"
                return f"a string holds {what}; remove it"
        elif isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels; flatten the data"
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(k, str):
                    stack.append((k, depth))
                stack.append((x, depth + 1))
    return None


def parse_json(text: str) -> tuple[Any, Optional[str]]:
    """(value, None) or (None, message) for one JSON text; the message starts with "invalid JSON" or says
    what is refused, and gives the column (and the line, for a text of several lines).

    Stricter than json.loads: duplicate keys, NaN/Infinity, numbers out of range, nesting deeper than
    MAX_DEPTH, NUL and lone surrogates in strings are refused; a raw tab inside a string is accepted.
    """
    brackets = text.count("[") + text.count("{")
    if brackets > MAX_DEPTH and _flow_depth(text, _JSON_STRING) > MAX_DEPTH:
        return None, f"nested deeper than {MAX_DEPTH} levels; flatten the data"
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float, strict=False)
    except _Invalid as e:
        return None, str(e)
    except json.JSONDecodeError as e:
        at = f"line {e.lineno} column {e.colno}" if "\n" in text.strip() else f"column {e.colno}"
        what = e.msg.removesuffix(" starting at")
        what = what[:1].lower() + what[1:]
        if e.msg == "Extra data":
            return None, f"invalid JSON at {at}: a second value starts there (records joined?); put one object per line"
        if e.msg.startswith("Unterminated string"):
            return None, f"invalid JSON at {at}: a string never ends (a truncated record, or a missing quote)"
        if e.pos >= len(text.rstrip()):
            return None, f"invalid JSON at {at}: truncated ({what} at the end); complete the record"
        return None, f"invalid JSON at {at}: {what}"
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels; flatten the data"
    except ValueError:  # an integer of more than 4300 digits
        return None, "invalid JSON: a number of more than 4300 digits"
    if brackets > MAX_DEPTH or "\\u" in text:
        problem = _shape_problem(value)
        if problem:
            return None, problem
    return value, None


def _lines(f: BinaryIO, digest: Any) -> Iterator[tuple[int, Optional[bytes], int]]:
    """(line number, bytes without the line end or None when over MAX_RECORD_BYTES, size) for each line."""
    n = 0
    while True:
        raw = f.readline(MAX_RECORD_BYTES + 2)
        if not raw:
            return
        digest.update(raw)
        n += 1
        body = raw[:-1] if raw.endswith(b"\n") else raw
        body = body[:-1] if body.endswith(b"\r") else body
        if len(body) > MAX_RECORD_BYTES:
            size = len(raw)
            while not raw.endswith(b"\n"):
                raw = f.readline(MIB)
                if not raw:
                    break
                digest.update(raw)
                size += len(raw)
            yield n, None, size
        else:
            yield n, body, len(raw)


def _read_jsonl(path: Path, problems: Problems, required: bool, root: Optional[Path],
                hashes: Optional[dict[str, str]] = None) -> list[tuple[int, dict]]:
    """The objects of a .jsonl file with their line numbers; every bad line is a problem."""
    if _entry_size(path, problems, root=root, limit=MAX_JSONL_BYTES, required=required) is None:
        return []
    rows: list[tuple[int, dict]] = []
    digest, bad_encoding = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            foreign = _foreign_format(f.read(16))
            if foreign:
                problems.add(path, foreign)
                return []
            f.seek(0)
            for n, raw, size in _lines(f, digest):
                if raw is None:
                    problems.add(path, f"record is {_size(size)}, over the limit of {_size(MAX_RECORD_BYTES)} per "
                                       "record; shorten it or split it (see docs/input-limits.md)", n)
                    continue
                if n == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                if not raw.strip():
                    continue  # blank lines are skipped
                text, message = _decode(raw, bad_encoding == 0)
                if message:
                    bad_encoding += 1
                    problems.add(path, message, n)
                    continue
                assert text is not None
                if text.startswith("\ufeff"):
                    problems.add(path, "byte-order mark at the start of the line (files joined?); remove it", n)
                    continue
                message = _control_problem(text)
                if message:
                    problems.add(path, message, n)
                    continue
                obj, message = parse_json(text)
                if message:
                    problems.add(path, message, n)
                    continue
                if not isinstance(obj, dict):
                    problems.add(path, f"each line must be a JSON object {{...}}, got {_kind(obj)}", n)
                    continue
                rows.append((n, obj))
    except OSError as e:
        problems.add(path, f"cannot be read ({e.strerror or e}); check the file and its permissions")
        return []
    if hashes is not None:
        hashes[path.name] = digest.hexdigest()
    if required and not rows and not problems.of(path):
        problems.add(path, "empty split; add at least one example")
    return rows


# -- YAML --------------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also refuses duplicate keys in a mapping."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # an unhashable key: the base class says so
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_short(key)}; keep one of them", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path, problems: Problems, *, root: Optional[Path], limit: int, required: bool,
               missing: str = NEEDED, hashes: Optional[dict[str, str]] = None) -> Optional[str]:
    """The whole text of a small UTF-8 file (a BOM and CRLF accepted), or None with a problem."""
    if _entry_size(path, problems, root=root, limit=limit, required=required, missing=missing) is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        problems.add(path, f"cannot be read ({e.strerror or e}); check the file and its permissions")
        return None
    if hashes is not None:
        hashes[path.name] = hashlib.sha256(data).hexdigest()
    foreign = _foreign_format(data[:16])
    if foreign:
        problems.add(path, foreign)
        return None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for n, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        text, message = _decode(raw, True)
        if not message:
            assert text is not None
            message = _control_problem(text)
        if message:
            problems.add(path, message, n)
            return None
    return data.decode("utf-8").replace("\r\n", "\n")


_YAML_QUOTED_OR_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|#[^\n]*')


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _flow_depth(text: str, skip: re.Pattern = _YAML_QUOTED_OR_COMMENT) -> int:
    """How deep [ ] and { } nest in a YAML (or, with skip=_JSON_STRING, JSON) text outside quotes and
    comments: checked before parsing, since PyYAML takes seconds to reach its recursion limit on a line of
    brackets, and json.loads reaches Python's own (under the fuzzer it once printed a stray "Exception ignored
    ... RecursionError" line besides the one-line answer)."""
    depth = deepest = 0
    for m in re.finditer(r"[\[\]{}]", skip.sub("", text)):
        depth = depth + 1 if m.group() in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _parse_yaml(path: Path, text: str, problems: Problems) -> Any:
    """The YAML document of `text`, checked for depth, size and strings; None with a problem."""
    if _flow_depth(text) > MAX_DEPTH:
        problems.add(path, f"nested deeper than {MAX_DEPTH} levels; flatten the data")
        return None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        at = f" at column {mark.column + 1}" if mark else ""
        problems.add(path, f"invalid YAML{at}: {problem}", mark.line + 1 if mark else None)
        return None
    except RecursionError:
        problems.add(path, f"nested deeper than {MAX_DEPTH} levels; flatten the data")
        return None
    except (ValueError, TypeError, AttributeError, OverflowError, LookupError) as e:
        # e.g. `!!int abc`, `!!timestamp 2024-13-45`; an empty `!!int` (IndexError) or `!!bool` (KeyError)
        problems.add(path, f"invalid YAML value ({type(e).__name__}: {_short(str(e), 80)}); check explicit !!tags")
        return None
    shape = _shape_problem(data, MAX_YAML_VALUES)
    if shape:
        problems.add(path, shape)
        return None
    return data


def read_yaml_file(path: str | Path) -> Any:
    """One YAML document from a user's file (a run config), checked like task.yaml: size, encoding, control
    characters, duplicate keys, nesting and alias expansion. BenchError naming the file on the first problem."""
    p, problems = Path(path), Problems()
    text = _read_text(p, problems, root=None, limit=MAX_YAML_BYTES, required=True, missing="pass a YAML run config")
    data = _parse_yaml(p, text, problems) if text is not None else None
    if problems:
        raise BenchError(problems.listing()[0])
    return data


def _read_meta(path: Path, problems: Problems, root: Path, hashes: dict[str, str]) -> dict:
    text = _read_text(path, problems, root=root, limit=MAX_YAML_BYTES, required=True, hashes=hashes)
    if text is None:
        return {}
    data = _parse_yaml(path, text, problems)
    if problems.of(path):
        return {}
    if not isinstance(data, dict):
        problems.add(path, f"must be a YAML mapping with keys {', '.join(REQUIRED_KEYS)}, got {_kind(data)}")
        return {}
    return data


def _check_meta(meta: dict, path: Path, problems: Problems) -> bool:
    """Check task.yaml's keys and the type of each value; True when the Task can be built from it."""
    ok = True
    for key in meta:
        if not isinstance(key, str):
            problems.add(path, f"key {_short(key)} is {_kind(key)}; keys are names such as {REQUIRED_KEYS[0]}")
            ok = False
        elif key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            close = difflib.get_close_matches(key, REQUIRED_KEYS + OPTIONAL_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}"
            problems.add(path, f"unknown key {_short(key)}{hint}")
            ok = False
    for key in REQUIRED_KEYS:
        if meta.get(key) in (None, "", []):
            problems.add(path, f"missing required key {key!r}")
            ok = False
    for key in TEXT_KEYS:
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            problems.add(path, f"{key} must be text, got {_got(value)}; quote it")
            ok = False
    for key in ("language", "kind", "main_metric"):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            quote = "; quote it (YAML reads no, yes, on, off as booleans)" if isinstance(value, bool) else ""
            problems.add(path, f"{key} must be a string, got {_got(value)}{quote}")
            ok = False
    name = meta.get("name")
    if isinstance(name, (str, int, float)) and not isinstance(name, bool) and not SAFE_NAME.fullmatch(str(name)):
        problems.add(path, f"name {_short(name)} must be 1-{MAX_NAME_CHARS} letters, digits or _ . + - (it names "
                           "folders of the results), not starting with . or -")
        ok = False
    language = meta.get("language")
    if isinstance(language, str) and language and not _LANGUAGE.fullmatch(language):
        problems.add(path, f"language {_short(language)} is not an ISO code; write e.g. en or ru")
        ok = False
    kind = meta.get("kind")
    if isinstance(kind, str) and kind not in KINDS:
        problems.add(path, f"kind must be one of {', '.join(KINDS)}, got {_short(kind)}")
        ok = False
    metrics = meta.get("metrics") or []
    if not isinstance(metrics, list):
        problems.add(path, f"metrics must be a list of metric families, e.g. [rouge, f1], got {_kind(metrics)}")
        metrics, ok = [], False
    known = METRICS.names()
    for i, m in enumerate(metrics):
        if not isinstance(m, str):
            problems.add(path, f"metrics[{i}] must be a metric name, got {_got(m)}")
            ok = False
        elif m not in known:
            close = difflib.get_close_matches(m, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(known)}"
            problems.add(path, f"unknown metric {_short(m)}{hint}")
            ok = False
    main = meta.get("main_metric")
    valid = [m for m in metrics if isinstance(m, str) and m in known]
    reported = reported_names(valid)
    if isinstance(main, str) and main and valid and main not in reported:
        problems.add(path, f"main_metric {_short(main)} is not reported by metrics {valid}; "
                           f"choose one of {', '.join(reported)}")
        ok = False
    extra = meta.get("extra")
    if extra is not None and not isinstance(extra, dict):
        problems.add(path, f"extra must be a mapping of settings for task-specific scorers, got {_kind(extra)}")
        ok = False
    elif extra is not None:
        problem = _json_types_problem(extra, "extra")
        if problem:
            problems.add(path, problem)
            ok = False
    return ok


def _json_types_problem(value: Any, where: str) -> Optional[str]:
    """Why a YAML value cannot be stored as JSON (a date, a set, bytes, a non-string key), or None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} is {value}; write a finite number"
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            problem = _json_types_problem(v, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where}: key {_short(k)} is {_kind(k)}; use text keys"
            problem = _json_types_problem(v, f"{where}.{k}")
            if problem:
                return problem
        return None
    return f"{where} is {_got(value)}; quote it or write plain text, numbers, lists or mappings"


# -- records -----------------------------------------------------------------------------------------
def _text_field_problem(obj: dict, field: str) -> Optional[str]:
    value = obj[field]
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return None
    return f"field {field!r} must be a string, got {_kind(value)}"


def _id_problem(value: Any, what: str) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"{what} must be a string (or a whole number), got {_got(value)}"
    if isinstance(value, str) and not value.strip():
        return f"{what} is empty; give every record an id"
    return None


def _optional_field_problem(field: str, value: Any) -> Optional[str]:
    if field == "answerable" and not isinstance(value, bool):
        return f"field 'answerable' must be a bool (true or false, no quotes), got {_got(value)}"
    if field == "doc_ids":
        if not isinstance(value, list):
            return f"field 'doc_ids' must be a list of ids in docs.jsonl, got {_got(value)}"
        for i, d in enumerate(value):
            problem = _id_problem(d, f"doc_ids[{i}]")
            if problem:
                return problem
    if field == "stratum" and value is not None and not isinstance(value, str):
        return f"field 'stratum' must be a string label (or null), got {_got(value)}"
    return None


def _examples(path: Path, rows: list[tuple[int, dict]], problems: Problems, seen: dict[str, str]) -> list[Example]:
    out = []
    for n, obj in rows:
        bad = False
        for f in EXAMPLE_FIELDS:
            if f not in obj:
                problems.add(path, f"missing field {f!r} (each line needs {', '.join(EXAMPLE_FIELDS)})", n)
                bad = True
                continue
            problem = _id_problem(obj[f], "field 'id'") if f == "id" else _text_field_problem(obj, f)
            if problem:
                problems.add(path, problem, n)
                bad = True
        for f in OPTIONAL_EXAMPLE_FIELDS:
            if f in obj:
                problem = _optional_field_problem(f, obj[f])
                if problem:
                    problems.add(path, problem, n)
                    bad = True
        if "rejected" in obj and not isinstance(obj["rejected"], str):
            problems.add(path, f"field 'rejected' (a worse answer, for preference tuning) must be a string, got "
                               f"{_kind(obj['rejected'])}", n)
            bad = True
        if bad:
            continue
        ex_id = str(obj["id"])
        if ex_id in seen:
            problems.add(path, f"duplicate id {_short(ex_id)} (first at {seen[ex_id]})", n)
            continue
        seen[ex_id] = f"{path.name}:{n}"
        if obj.get("answerable", True) and not str(obj["output"]).strip():
            problems.add(path, "empty output for an answerable item", n)
        known = set(EXAMPLE_FIELDS) | set(OPTIONAL_EXAMPLE_FIELDS)
        extra = tuple(sorted((k, v) for k, v in obj.items() if k not in known))
        out.append(
            Example(
                id=ex_id,
                instruction=str(obj["instruction"]),
                input=str(obj["input"]),
                output=str(obj["output"]),
                answerable=bool(obj.get("answerable", True)),
                doc_ids=tuple(str(d) for d in obj.get("doc_ids", [])),
                stratum=obj.get("stratum"),
                extra=_freeze(extra),
            )
        )
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _docs(path: Path, rows: list[tuple[int, dict]], problems: Problems) -> list[Doc]:
    out, seen = [], {}
    for n, obj in rows:
        if "id" not in obj or "text" not in obj:
            problems.add(path, "a document needs 'id' and 'text' (and optionally 'title')", n)
            continue
        problem = _id_problem(obj["id"], "field 'id'")
        title = obj.get("title")
        if not problem and title is not None and not isinstance(title, str):
            problem = f"field 'title' must be a string, got {_kind(title)}"
        if problem:
            problems.add(path, problem, n)
            continue
        doc_id = str(obj["id"])
        if doc_id in seen:
            problems.add(path, f"duplicate doc id {_short(doc_id)} (first at line {seen[doc_id]})", n)
            continue
        seen[doc_id] = n
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            problems.add(path, f"document {_short(doc_id)} has no text (a non-empty string)", n)
            continue
        out.append(Doc(id=doc_id, title=title or "", text=obj["text"]))
    return out


# -- the generator manifest ------------------------------------------------------------------------
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _manifest_problems(folder: Path, problems: Problems) -> Optional[dict]:
    """Check manifest.json (when present) and every listed file's sha256; the manifest, or None."""
    mpath = folder / MANIFEST
    if not os.path.lexists(mpath):
        return None
    regen = "regenerate with scripts/generate_tasks.py"
    text = _read_text(mpath, problems, root=folder, limit=MAX_MANIFEST_BYTES, required=True)
    if text is None:
        return None
    manifest, message = parse_json(text)
    if message:
        problems.add(mpath, f"unreadable generator manifest: {message}; {regen}")
        return None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        problems.add(mpath, f"unreadable generator manifest (no 'files' mapping of name to sha256); {regen}")
        return None
    for name, want in sorted(files.items()):
        if not SAFE_NAME.fullmatch(name) or not isinstance(want, str) or not _HEX64.fullmatch(want):
            problems.add(mpath, f"entry {_short(name)}: must map a file name of this folder to a sha256; {regen}")
            continue
        p = folder / name
        if _entry_size(p, problems, root=folder, limit=MAX_JSONL_BYTES, required=True,
                       missing=f"the manifest lists it; restore it from git or {regen}") is None:
            continue
        try:
            got = sha256_file(p)
        except OSError as e:
            problems.add(p, f"cannot be read ({e.strerror or e}); check the file and its permissions")
            continue
        if got != want:
            problems.add(p, f"sha256 {got[:12]}… does not match manifest {want[:12]}… (corrupted or edited); "
                            f"restore it from git or {regen}")
    return manifest


def verify_manifest(folder: Path) -> dict:
    """The manifest, after checking every listed file's sha256; BenchError on the first problem."""
    problems = Problems()
    manifest = _manifest_problems(Path(folder), problems)
    if problems:
        raise BenchError(problems.listing()[0])
    if manifest is None:
        raise BenchError(f"{_show(Path(folder) / MANIFEST)}: missing; regenerate with scripts/generate_tasks.py")
    return manifest


# -- the folder --------------------------------------------------------------------------------------
def _parse(folder: Path) -> tuple[Task | None, list[str]]:
    problems = Problems()
    folder = Path(folder)
    try:
        is_dir = folder.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        return None, [f"{_show(folder)}: no such task folder; pass a folder with task.yaml, train.jsonl, test.jsonl"]
    hashes: dict[str, str] = {}
    meta_path = folder / TASK_YAML
    meta = _read_meta(meta_path, problems, folder, hashes)
    meta_ok = not problems.of(meta_path) and _check_meta(meta, meta_path, problems)  # `{}` is checked too
    seen: dict[str, str] = {}
    train_rows = _read_jsonl(folder / TRAIN, problems, True, folder, hashes)
    test_rows = _read_jsonl(folder / TEST, problems, True, folder, hashes)
    train = _examples(folder / TRAIN, train_rows, problems, seen)
    test = _examples(folder / TEST, test_rows, problems, seen)
    docs_path = folder / DOCS
    docs_rows = _read_jsonl(docs_path, problems, False, folder, hashes)
    if DOCS in hashes and not docs_rows and not problems.of(docs_path):
        problems.add(docs_path, "empty corpus; remove the file or add documents")
    docs = _docs(docs_path, docs_rows, problems)
    doc_ids = {d.id for d in docs}
    test_lines = {str(o.get("id")): n for n, o in test_rows}
    for ex in test:
        missing = [d for d in ex.doc_ids if d not in doc_ids]
        if missing and not problems.of(docs_path):
            what = "docs.jsonl has no such id" if docs else "the task has no docs.jsonl"
            problems.add(folder / TEST, f"doc_ids {_short(missing)} point nowhere ({what})", test_lines.get(ex.id))
    _manifest_problems(folder, problems)
    if problems or not meta_ok:
        return None, problems.listing()
    task = Task(
        name=str(meta["name"]),
        version=str(meta["version"]),
        description=str(meta["description"]),
        language=str(meta["language"]),
        kind=str(meta["kind"]),
        metrics=tuple(meta["metrics"]),
        main_metric=str(meta["main_metric"]),
        source=str(meta["source"]),
        license=str(meta["license"]),
        train=tuple(train),
        test=tuple(test),
        docs=tuple(docs),
        abstain_phrase=str(meta.get("abstain_phrase") or "I don't know"),
        instruction=str(meta.get("instruction") or ""),
        path=folder.resolve(),
        files_sha256=tuple(sorted(hashes.items())),
        extra=_freeze(meta.get("extra") or {}),
    )
    return task, []


def validate_folder(folder: str | Path) -> list[str]:
    """Every problem of a task folder, as `file:line[:column]: message`; empty when the task is valid."""
    return _parse(Path(folder))[1]


def load_folder(folder: str | Path) -> Task:
    """A validated Task; a generated folder (with manifest.json) must also match its recorded hashes."""
    task, problems = _parse(Path(folder))
    if problems:
        raise TaskError(problems)
    assert task is not None
    return task


class FolderTask:
    """A registered task backed by a folder (the built-in tasks, and anything a package adds)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def load(self) -> Task:
        return load_folder(self.folder)

    def describe(self) -> dict:
        problems = Problems()
        meta = _read_meta(self.folder / TASK_YAML, problems, self.folder, {})

        def text(key: str, default: str = "?") -> str:
            value = meta.get(key)
            return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else default

        def count(name: str) -> int:
            p = self.folder / name
            if _entry_size(p, Problems(), root=self.folder, limit=MAX_JSONL_BYTES, required=False) is None:
                return 0
            with open(p, "rb") as f:
                return sum(1 for _, raw, _ in _lines(f, hashlib.sha256()) if raw is None or raw.strip())

        return {
            "name": text("name", self.folder.name),
            "language": text("language"),
            "kind": text("kind"),
            "train": count(TRAIN),
            "test": count(TEST),
            "docs": count(DOCS),
            "license": text("license"),
            "source": text("source"),
            **self._generator(),
        }

    def _generator(self) -> dict:
        path = self.folder / MANIFEST
        if not os.path.lexists(path):
            return {}
        text = _read_text(path, Problems(), root=self.folder, limit=MAX_MANIFEST_BYTES, required=True)
        m = parse_json(text)[0] if text is not None else None
        if not isinstance(m, dict):
            return {"generator": "manifest unreadable"}
        return {"generator": f"{m.get('generator')} v{m.get('generator_version')} seed {m.get('seed')}"}
