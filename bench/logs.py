"""The terminal is for the user: progress bars, the summary, the report's path, and one-line errors.

Everything else that libraries print while a run works (transformers' and TRL's logs and warnings,
bitsandbytes' kernel notices, llama.cpp's load log, Ray's worker output, Python warnings) goes to the
run's log file, results/<run_id>/run.log. `capture(folder)` points the process's stderr (file
descriptor 2, so C libraries are caught too) at a log file in `folder` and keeps the real terminal for
`terminal()`, which progress bars and bench's own messages write to; `keep(run_dir)` moves the log
into the run folder once its name is known. Outside `capture`, `terminal()` is plain sys.stderr.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional, TextIO

LOG_FILE = "run.log"
_terminal: Optional[TextIO] = None
_log_path: Optional[Path] = None


def terminal() -> TextIO:
    """Where progress bars and bench's own messages go: the real terminal, even while stderr is captured."""
    return _terminal or sys.stderr


@contextlib.contextmanager
def capture(folder: Optional[Path] = None) -> Iterator[Path]:
    """Send stderr (Python and C level), Python warnings and library logs to a log file in `folder` (default: the
    system's temp folder, so a run refused before it starts leaves nothing in the results folder)."""
    global _terminal, _log_path
    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{LOG_FILE}.{os.getpid()}"
    sys.stderr.flush()
    saved = os.dup(2)
    log = open(path, "a", encoding="utf-8", buffering=1)
    os.dup2(log.fileno(), 2)
    _terminal = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0), encoding="utf-8",
                                 errors="replace", line_buffering=True, write_through=True)
    _log_path = path
    logging.captureWarnings(True)
    root = logging.getLogger()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        logging.captureWarnings(False)
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        _terminal.close()
        _terminal = None
        log.close()
        if path.exists() and path.stat().st_size == 0:
            path.unlink()


def keep(run_dir: Path) -> Optional[Path]:
    """Append what was captured so far to <run_dir>/run.log (the run's folder is known only after planning)."""
    global _log_path
    if _log_path is None or not _log_path.exists():
        return None
    target = Path(run_dir) / LOG_FILE
    sys.stderr.flush()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(_log_path, "r", encoding="utf-8", errors="replace") as src, open(target, "a", encoding="utf-8") as dst:
        dst.write(src.read())
    with open(_log_path, "w", encoding="utf-8"):
        pass  # truncate: later output is appended again by the next keep()
    return target
