"""The architecture holds: the import contracts of pyproject.toml, no module-level import cycle, and the
facts that live in one place (a strategy's family, the method table) reach the report intact."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "strategies", "tasks")


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "broken" not in out.stdout.split("Contracts:")[-1].replace("0 broken", "")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _module_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules imported at module level (not inside functions, not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(getattr(node, "body", []))
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(getattr(node, "finalbody", []))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for a in node.names:
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)

    visit(tree.body)
    return {m for m in found if m in known and m != name}


def test_no_module_level_import_cycle():
    mods = _modules()
    known = set(mods)
    graph = {m: _module_level_imports(p, m, known) for m, p in mods.items()}
    # a package's __init__ importing its own submodules (registration) is how Python packages work:
    # a submodule importing a sibling loads the package first, which is not an arrow back to it
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, f"module-level import cycles: {cycles}"


def test_every_strategy_family_comes_from_its_class_into_rows_and_manifest(tmp_path):
    from bench.config import RunConfig
    from bench.plugins import load_plugins
    from bench.registry import STRATEGIES
    from bench.run.pipeline import parse_arm
    from strategies.base import FinetuneStrategy, PromptingStrategy, RetrievalStrategy
    from strategies.training.methods import METHODS

    load_plugins()
    expected = {PromptingStrategy: "prompting", RetrievalStrategy: "retrieval", FinetuneStrategy: "fine-tuning"}
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        fam = next(f for base, f in expected.items() if issubclass(cls, base))
        assert cls.family == fam, name
    # every row of the method table is a registered fine-tuning strategy, and nothing else is
    assert {n for n in STRATEGIES.names() if STRATEGIES.get(n).family == "fine-tuning"} == set(METHODS)
    cfg = RunConfig()
    arm = parse_arm("rag+cpt_lora", cfg)
    assert arm.name == "cpt_lora+rag" and arm.family == "fine-tuning" and arm.base_name == "rag"
    assert arm.describe()["parts"] == {"cpt_lora": "fine-tuning", "rag": "retrieval", "zero_shot": "prompting"}


def test_cpt_lora_is_reported_as_fine_tuning_with_its_forgetting_delta(tmp_path):
    from bench.report.analysis import analyse
    from bench.report.data import load
    from tests.fixtures.synthetic_run import make_run

    run = load(make_run(tmp_path / "run", tasks=("facts",), strategies=("zero_shot", "rag", "cpt_lora")))
    (a,) = analyse(run, 100_000)
    assert a.results["cpt_lora"].family == "fine-tuning"
    fg = a.forgetting["cpt_lora"]
    assert fg["base"] == "zero_shot" and fg["deltas"]["arc_easy_acc"]["delta"] == pytest.approx(-0.04)


def test_rows_load_into_pandas_in_one_call(tmp_path):
    import pandas as pd

    from tests.fixtures.synthetic_run import make_run

    run = make_run(tmp_path / "run", tasks=("facts",))
    df = pd.read_json(run / "rows.jsonl", lines=True)
    assert {"task", "strategy", "family", "model", "seed", "metric", "value", "n", "n_failed", "ci_low",
            "ci_high"} <= set(df.columns)
    assert set(df.loc[df.strategy == "lora", "family"]) == {"fine-tuning"}
