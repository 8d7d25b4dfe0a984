"""Peak memory of one cell, not of the process's lifetime: each arm is charged its own footprint.

`ru_maxrss` is the process's all-time peak: after a fine-tune it shows gigabytes for a zero-shot arm
that needs a few hundred megabytes. Before a cell, freed memory is handed back to the system
(`gc.collect`, glibc's `malloc_trim`) and the kernel's high-water mark is reset (`/proc/self/clear_refs`
with 5, Linux 4.0+); after it, VmHWM is the cell's own peak, which includes the models it used. Where
the reset is not possible, a sampling thread measures the peak instead.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from typing import Optional


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _release() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """with PeakMemory() as peak: ...; peak.mb is the resident-memory peak of the block, in MB (None if unknown);
    peak.current_mb() reads it while the block runs."""

    def __init__(self, every: float = 0.2):
        self.every = every
        self.mb: Optional[float] = None
        self._reset = False
        self._peak_kb = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "PeakMemory":
        _release()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._reset = True
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak_kb = max(self._peak_kb, _status_kb("VmRSS") or 0)
            self._stop.wait(self.every)

    def current_mb(self) -> Optional[float]:
        """The peak since the block began, in MB (None if unknown)."""
        kb = _status_kb("VmHWM") if self._reset else (max(self._peak_kb, _status_kb("VmRSS") or 0) or None)
        return round(kb / 1024.0, 1) if kb else None

    def __exit__(self, *exc) -> None:
        self.mb = self.current_mb()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
