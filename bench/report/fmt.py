"""How the report writes numbers: fixed decimals, signed differences, money, p-values, sizes, parameter counts."""

from __future__ import annotations

from typing import Optional


def num(v: Optional[float], d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def money(v: Optional[float]) -> str:
    if v is None:
        return "–"
    if v == 0:
        return "$0"
    return f"${v:.3g}" if abs(v) < 1000 else f"${v:,.0f}"


def pval(p: Optional[float]) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def size(b: Optional[float]) -> str:
    if b is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return "–"


def params(p: Optional[float], share: Optional[float]) -> str:
    if p is None:
        return "–"
    s = f"{p:,.0f}"
    return s + (f" ({100 * share:.2f} %)" if share is not None else "")


def signed(v: float) -> str:
    """Signed, with -0.000 shown as 0.000."""
    return "0.000" if abs(v) < 5e-4 else f"{v:+.3f}"
