"""Convert a results folder written by bench 0.1 to the current layout, so `bench report` reads it.

0.1 rows named the metric that reported them `family` and knew no strategy family; cells kept their
rows in `rows.json`; the manifest described neither arms nor task languages. This rewrites, in place
and atomically: every row (`family` -> `scorer`, plus the arm's strategy family), each cell's
rows.jsonl, and the manifest's `strategies` and `tasks` entries (from the registered strategies and
the task folders). No model is called and no number changes.

    python scripts/migrate_results.py results/<run_id>
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench import atomic
from bench.config import RunConfig
from bench.results import CELL_ROWS, CELLS, MANIFEST, ROWS, read_json
from bench.run.pipeline import parse_arm
from bench.run.plan import resolve_task
from bench.types import Row


def migrate_rows(rows: list[dict], families: dict[str, str]) -> list[dict]:
    out = []
    for r in rows:
        if "scorer" in r:  # already current
            out.append(r)
            continue
        r = dict(r)
        old = r.pop("family", None)
        r["scorer"] = old if r.get("kind") in ("quality", "stratum") else (
            "probe_delta" if old == "probe_delta" else "probe" if r.get("kind") == "probe" else None)
        r["family"] = families[r["strategy"]]
        out.append(Row.from_dict(r).to_dict())
    return out


def migrate(run_dir: Path) -> None:
    manifest = read_json(run_dir / MANIFEST)
    names = list(dict.fromkeys(r["strategy"] for r in atomic.read_jsonl(run_dir / ROWS)))
    cfg = RunConfig()
    arms = {n: parse_arm(n, cfg).describe() for n in names}
    families = {n: a["family"] for n, a in arms.items()}
    manifest["strategies"] = arms
    for name, info in (manifest.get("tasks") or {}).items():
        task = resolve_task(name)
        info.update(language=task.language, kind=task.kind, abstain_phrase=task.abstain_phrase)
        info.pop("path", None)
    atomic.write_jsonl(run_dir / ROWS, migrate_rows(atomic.read_jsonl(run_dir / ROWS), families))
    for cell in sorted((run_dir / CELLS).iterdir()):
        old = cell / "rows.json"
        if old.is_file():
            atomic.write_jsonl(cell / CELL_ROWS, migrate_rows(atomic.read_jsonl(old), families))
            old.unlink()
    atomic.write_json(run_dir / MANIFEST, manifest)


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["results/example"]:
        migrate(Path(arg))
        print(f"migrated {arg}")
