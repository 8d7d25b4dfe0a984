"""`bench import`: a task folder (DESIGN.md format) from the files users already keep their data in.

(Being written: see issue 14, point 3.)
"""

from __future__ import annotations

import argparse

from bench.errors import BenchError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `bench import` (DESIGN.md)."""
    p.add_argument("src", help="a .csv, .jsonl or .parquet file, or a folder saved by datasets' save_to_disk")
    p.add_argument("--out", required=True, help="the task folder to write")


def cmd_import(args: argparse.Namespace) -> int:
    raise BenchError("bench import: not implemented yet")
