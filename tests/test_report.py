"""The decision report from a synthetic run with known numbers (tests/fixtures/synthetic_run.py)."""

from __future__ import annotations

import json
import shutil

import pytest
from fixtures.synthetic_run import BREAK_EVEN_LORA_RAG, make_run

from bench.cli import main
from bench.errors import BenchError
from bench.report.costs import Ledger, Money, break_even, ledger_from_cost, price
from bench.report.writer import summary_rows, write_report
from bench.results import load_rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = make_run(tmp_path_factory.mktemp("runs") / "synthetic")
    write_report(root)
    return root


def _rec(root):
    return json.loads((root / "recommendation.json").read_text())


def test_an_undecided_task_says_so_and_how_many_items_would_settle_it(run):
    rec = _rec(run)["facts"]
    # lora 0.725 and rag 0.700 on 40 items, one item apart: neither is shown within 0.05 of the other, and
    # rag is cheaper below 40k queries: the rule must not pick either from noise
    assert rec["decided"] is False and rec["strategy"] is None and rec["leader"] == "lora"
    assert "rag" in rec["unresolved"] and rec["margin"] == 0.05
    assert rec["needed_items"] > 40 and rec["n_items"] == 40
    assert rec["comparisons"]["zero_shot"]["status"] == "worse"  # 0.2 vs 0.725 is shown at 40 items
    assert rec["comparisons"]["rag_oracle"]["status"] == "diagnostic"  # scores highest, never a candidate
    assert rec["basis"] == "estimated" and "inconclusive" in rec["reason"]
    assert any("items would settle it" in f for f in rec["flips"])
    assert rec["forgetting"]["deltas"]["arc_easy_acc"]["delta"] == pytest.approx(-0.04)  # the probe's paired delta
    assert rec["forgetting"]["deltas"]["arc_easy_acc"]["resolves"] is False  # [-0.12, +0.04] cannot resolve 5 points


def test_a_clear_winner_is_decided_against_its_runner_up(tmp_path):
    root = make_run(tmp_path / "r", tasks=("facts",), strategies=("zero_shot", "rag"))
    write_report(root, plots=False)
    rec = _rec(root)["facts"]
    # rag 0.700 vs zero_shot 0.200: zero_shot is cheaper but shown worse, so rag is decided
    assert rec["decided"] is True and rec["strategy"] == "rag" and rec["family"] == "retrieval"
    assert rec["runner_up"]["strategy"] == "zero_shot" and rec["runner_up"]["status"] == "worse"
    assert rec["cost_per_1k_queries"] == pytest.approx(1000 * (0.002 / 100_000 + 1e-4))
    assert any(f.startswith("cost weight: zero_shot saves") for f in rec["flips"])
    md = (root / "report.md").read_text()
    assert "**facts: use `rag`** (retrieval)" in md and "runner-up `zero_shot` (shown worse)" in md


def test_the_break_even_of_the_leader_is_one_table(run):
    md = (run / "report.md").read_text()
    section = md[md.index("### Break-even of `lora`"):]
    section = section[: section.index("###", 5)]
    assert "| rag | $2 / $0.002 | $0.05 / $0.1 | 40.0k queries |" in section  # (2 - 0.002) / (1e-4 - 5e-5)
    assert "zero_shot" not in section  # shown worse: not a contender
    assert BREAK_EVEN_LORA_RAG == pytest.approx(39_960)


def test_floor_task_is_not_informative(run):
    rec = _rec(run)["ru_floor"]
    assert rec["strategy"] is None and rec["informative"] is False and rec["decided"] is False
    assert "not informative" in rec["reason"]
    assert rec["flips"] == []  # not "no practical number of items would separate ...": items are not what is missing


def test_report_markdown_sections_and_plots(run):
    md = (run / "report.md").read_text()
    assert md.index("## Decisions") < md.index("## facts")
    assert "**facts: not decided yet — need ~" in md and "Leader `lora`" in md and "not yet separated from: `rag`" in md
    assert "| rag | retrieval | llama | 0.700 |" in md and "| not separated |" in md and "| worse |" in md
    assert "| diagnostic |" in md  # rag_oracle
    assert "167,772,160 (2.09 %)" in md  # trainable parameters and share, as seed 003's table II
    assert "Retrieval is losing answers" in md  # rag_oracle beats rag
    assert "Target model" in md and "llama-3-8b" in md
    assert "on this run's 1,400,000 training tokens" in md  # the fixture's lora processed 1.4M tokens
    assert "pd.read_json(run_dir / 'rows.jsonl', lines=True)" in md
    assert "/tmp" not in md and "/root" not in md
    for name in ("quality_vs_cost", "loss", "learning_vs_forgetting", "strata", "retrieval"):
        png = run / "plots" / f"facts_{name}.png"
        assert png.is_file() and png.stat().st_size > 1000
        assert f"(plots/facts_{name}.png)" in md


def test_intervals_in_the_analysis(run):
    from bench.report.writer import build

    _, analyses, _, _ = build(run, plots=False)
    a = {x.task: x for x in analyses}["facts"]
    assert a.leader == "lora"  # rag_oracle scores higher but is a diagnostic, never the leader
    assert a.verdict.comparisons["zero_shot"].diff == pytest.approx(-0.525)
    r = a.results["lora"]
    assert r.ci_low < r.value < r.ci_high and r.seeds == 3 and r.n == 40
    assert r.value == pytest.approx(0.725)
    assert a.retrieval["rag"]["recall_at_k"] == pytest.approx(0.75)
    assert sum(a.retrieval["rag"]["classes"].values()) == 120


def test_formats_and_pandas(run):
    html = write_report(run, "html")
    assert html.name == "report.html" and "<table>" in html.read_text() and 'src="plots/facts_loss.png"' in html.read_text()
    csv = write_report(run, "csv", plots=False)
    import pandas as pd

    df = pd.read_csv(csv)
    row = df.loc[(df.task == "facts") & (df.strategy == "rag")].iloc[0]
    assert row["status"] == "not separated" and not bool(row["recommended"]) and row["served_backend"] == "llama"
    rows = pd.read_json(run / "rows.jsonl", lines=True)
    assert {"task", "strategy", "family", "seed", "metric", "value", "ci_low", "ci_high"} <= set(rows.columns)
    assert main(["report", str(run), "--format", "csv"]) == 0


def test_missing_data_degrades_to_notes(tmp_path):
    root = make_run(tmp_path / "bare", target_model=None, tasks=("facts",), strategies=("zero_shot", "rag"))
    shutil.rmtree(root / "cells")  # rows only: no per-item scores, no costs, no logs
    write_report(root)
    md = (root / "report.md").read_text()
    assert "no loss curves" in md and "no learning-vs-forgetting plot" in md and "no per-stratum plot" in md
    assert "no retrieval-outcome plot" in md and "No `target_model`" in md
    assert not (root / "plots" / "facts_loss.png").exists()
    rec = _rec(root)["facts"]
    assert rec["decided"] is False and rec["strategy"] is None  # no per-item scores: nothing to decide on


def test_bad_input(tmp_path):
    with pytest.raises(BenchError):
        write_report(tmp_path)  # no rows.jsonl
    with pytest.raises(BenchError):
        load_rows(tmp_path / "missing")
    root = make_run(tmp_path / "r", tasks=("facts",), strategies=("zero_shot",))
    with pytest.raises(BenchError):
        write_report(root, "pdf")
    assert main(["report", str(tmp_path)]) == 2
    assert summary_rows(load_rows(root)[1])["facts"][0]["value"] == pytest.approx(0.2)


def test_break_even_statements():
    a, b = Money(setup=10.0, per_query=0.001), Money(setup=0.0, per_query=0.002)
    be = break_even("ft", a, "rag", b)
    assert be.kind == "crossover" and be.volume == pytest.approx(10_000)
    never = break_even("ft", Money(10.0, 0.003), "rag", b)  # dearer up front and per query (NehaBharti's case)
    assert never.volume is None and never.kind == "b_dominates" and "no volume" in never.statement
    assert break_even("a", b, "b", b).kind == "equal"
    assert break_even("a", Money(0.0, None), "b", b).kind == "unknown"


def test_ledger_schema_and_money():
    cost = {"train": {"wall_seconds": 4744.8, "peak_cuda_mb": 9052, "trainable_params": 167772160,
                      "total_params": 8e9, "adapter_bytes": 1e6, "device": "cuda"},
            "index": {"seconds": 12.0, "bytes": 4096, "vectors": 10},
            "per_query": {"latency_p50_s": 2.0, "latency_p95_s": 3.0, "prompt_tokens_mean": 500,
                          "completion_tokens_mean": 50, "samples_per_query": 5, "queries": 10, "failed": 0},
            "memory": {"peak_rss_mb": 1234.0}}
    led = ledger_from_cost(cost)
    assert led.train_device == "gpu" and led.trainable_share == pytest.approx(0.02097152)
    assert led.setup_seconds == pytest.approx(4756.8) and led.tokens_per_query == 550
    m = price(led, {"gpu_hour": 2.0, "cpu_hour": 0.36, "per_1k_tokens": 0.01})
    assert m.setup == pytest.approx(4744.8 / 3600 * 2.0 + 12 * 0.0001)
    assert m.per_query == pytest.approx(2.0 * 0.0001 + 0.55 * 0.01)
    assert m.basis == "estimated"
    assert Ledger().query_seconds is None


def _add_support(root, rates: dict[str, float]) -> None:
    """Give every cell of task facts per-item unsupported_number_rate scores (the first rate x 40 items get 1)
    and the matching quality row, as the support metric writes them."""
    from bench.types import CellKey, Measure, Row

    rows = [json.loads(line) for line in (root / "rows.jsonl").read_text().splitlines()]
    for strategy, rate in rates.items():
        for cdir in sorted((root / "cells").glob(f"facts__{strategy}__*")):
            path = cdir / "scores.jsonl"
            scores = [json.loads(line) for line in path.read_text().splitlines()]
            for i, s in enumerate(scores):
                s["scores"]["unsupported_number_rate"] = 1.0 if i < round(rate * len(scores)) else 0.0
            path.write_text("".join(json.dumps(s) + "\n" for s in scores))
            seed = int(cdir.name.rsplit("__s", 1)[1])
            key = CellKey(task="facts", task_version="1", strategy=strategy, family="x", model="synthetic",
                          model_sha256="0" * 12, seed=seed)
            rows.append(Row(key, Measure("unsupported_number_rate", rate, len(scores), scorer="support",
                                         higher_is_better=False)).to_dict())
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_verdict_names_a_hallucination_cost_only_when_it_is_significant(tmp_path):
    root = make_run(tmp_path / "r", tasks=("facts",), strategies=("zero_shot", "rag"))
    _add_support(root, {"rag": 0.5, "zero_shot": 0.0})  # rag: a number no source states in 20 of 40 answers
    write_report(root, plots=False)
    rec = _rec(root)["facts"]
    assert rec["strategy"] == "rag"
    (cost,) = rec["hallucination_cost"]
    assert cost["metric"] == "unsupported_number_rate" and cost["versus"] == "zero_shot"
    assert cost["value"] == pytest.approx(0.5) and cost["versus_value"] == 0.0 and cost["ci_low"] > 0
    md = (root / "report.md").read_text()
    assert "Hallucination cost: `rag`: exact_match +0.500 against `zero_shot`, but unsupported_number_rate 50% vs 0% (+50 points" in md

    root2 = make_run(tmp_path / "r2", tasks=("facts",), strategies=("zero_shot", "rag"))
    _add_support(root2, {"rag": 0.05, "zero_shot": 0.0})  # 2 items of 40: not shown different
    write_report(root2, plots=False)
    assert _rec(root2)["facts"]["hallucination_cost"] == []
    assert "Hallucination cost" not in (root2 / "report.md").read_text()


def test_the_hallucination_line_counts_each_unanswerable_item_once_across_seeds(tmp_path):
    """3 seeds x 10 unanswerable items are 10 items, not 30 (the report said "of 60" for 20 items before)."""
    from bench.report.analysis import hallucination
    from bench.report.data import load

    root = make_run(tmp_path / "r", tasks=("facts",), strategies=("zero_shot", "rag"))
    for path in (root / "cells").glob("facts__rag__*/scores.jsonl"):
        scores = [json.loads(line) for line in path.read_text().splitlines()]
        for s in scores[:10]:
            s["answerable"] = False
        path.write_text("".join(json.dumps(s) + "\n" for s in scores))
    run = load(root)
    assert len(run.cells_of("facts", "rag")) == 3
    assert hallucination(run, "facts", "rag")["unanswerable"] == 10


def test_retrieval_without_gold_documents_says_so_instead_of_zero_counts():
    """A task whose items name no gold documents (codes: rag searches the train split) gets '–' and a note,
    not a row of zero outcome counts that reads as 'retrieval never mattered'."""
    from types import SimpleNamespace

    from bench.metrics.retrieval import retrieval_outcomes
    from bench.report.render import _retrieval

    recs = [{"example_id": f"q{i}", "doc_ids": [], "retrieved": ["d1", "d2"], "correct": i % 2 == 0} for i in range(6)]
    some = recs[:4] + [{"example_id": "g", "doc_ids": ["d1"], "retrieved": ["d1", "d3"], "correct": True}]
    a = SimpleNamespace(retrieval={"rag": retrieval_outcomes(recs, 2), "rag_bm25": retrieval_outcomes(some, 2)},
                        metric="exact_match", oracle=[])
    md = "\n".join(_retrieval(a))
    assert "| rag | 2 | – | – | – | – | – | – |" in md
    assert "`rag`: none of its 6 retrievals" in md and "`doc_ids`" in md
    assert "| rag_bm25 | 2 | 1.000 | 1.000 | 1 | 0 | 0 | 0 |" in md
    assert "count the items that name gold documents (1; 4 without them are left out)" in md


def test_a_cheaper_volume_for_an_arm_shown_worse_is_not_sold_as_a_flip(tmp_path, monkeypatch):
    """lora (0.725) against zero_shot (0.200, shown worse) made dearer per query than lora: below the break-even
    zero_shot is cheaper, but the rule picks on quality first, so the volume line must say it is shown worse."""
    from fixtures import synthetic_run

    monkeypatch.setitem(synthetic_run.COST, "zero_shot", (0.6, 60, {}))  # $0.00006 a query against lora's $0.00005
    root = make_run(tmp_path / "r", tasks=("facts",), strategies=("zero_shot", "lora"))
    write_report(root, plots=False)
    rec = _rec(root)["facts"]
    assert rec["decided"] is True and rec["strategy"] == "lora"
    volume = [f for f in rec["flips"] if f.startswith("query volume")]
    assert len(volume) == 1 and volume[0].startswith("query volume, only if exact_match may be traded for money:")
    assert "200.0k queries" in volume[0] and "zero_shot is shown worse (-0.525 exact_match)" in volume[0]


@pytest.mark.parametrize("damage", ["garbage", "torn_last_line", "empty", "missing"])
def test_a_cell_whose_scores_cannot_be_read_blocks_the_decision(tmp_path, damage):
    """rag beats zero_shot, but with one of rag's cells unreadable the rule would compare only what it sees
    (it used to: a damaged scores.jsonl silently dropped the arm, or its last item): no recommendation,
    naming the cell and how to recompute it."""
    from bench.results import cell_id

    root = make_run(tmp_path / "r", tasks=("facts",), strategies=("zero_shot", "rag"))
    scores = root / "cells" / cell_id("facts", "rag", "synthetic", 1) / "scores.jsonl"
    lines = scores.read_text().splitlines()
    if damage == "garbage":
        scores.write_text("xx\n")
    elif damage == "torn_last_line":
        scores.write_text("\n".join(lines[:-1] + [lines[-1][:20]]) + "\n")
    elif damage == "empty":
        scores.write_text("")
    else:
        scores.unlink()
    write_report(root, plots=False)
    rec = _rec(root)["facts"]
    assert rec["decided"] is False and rec["strategy"] is None and rec["informative"] is False
    assert "facts__rag__synthetic__s1/scores.jsonl" in rec["reason"] and "rerun the same `bench run`" in rec["reason"]
    assert "**facts: no recommendation.** Per-item scores of 1 cell(s) cannot be read" in (root / "report.md").read_text()


def test_a_train_log_torn_by_a_kill_loses_only_its_last_line(tmp_path):
    from bench.atomic import read_jsonl

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl(log, appended=True) == [{"step": 1}, {"step": 2}]
    with pytest.raises(BenchError, match=r"train_log\.jsonl:3: not valid JSON"):
        read_jsonl(log)  # a file bench writes atomically is never torn: damage is an error


def test_a_run_killed_before_an_arm_was_computed_recommends_nothing(tmp_path):
    """rag (0.700) would beat zero_shot (0.200), but lora, planned and not computed yet, may be better still:
    an unfinished run names the missing arm and says how to finish, and the report says it is partial."""
    root = make_run(tmp_path / "r", tasks=("facts",), strategies=("zero_shot", "rag", "lora"))
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["finished"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    rows = [r for r in map(json.loads, (root / "rows.jsonl").read_text().splitlines()) if r["strategy"] != "lora"]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(root, plots=False)
    rec = _rec(root)["facts"]
    assert rec["decided"] is False and rec["informative"] is False and rec["strategy"] is None
    assert rec["reason"].startswith("No results yet for `lora`: the run has not finished") and rec["flips"] == []
    md = (root / "report.md").read_text()
    assert "**This run has not finished**" in md and "**facts: no recommendation.** No results yet for `lora`" in md
    manifest["finished"] = "2026-01-01T00:00:00+0000"  # finished with zero_shot and rag only: rag is decided
    manifest["strategies"].pop("lora")
    (root / "manifest.json").write_text(json.dumps(manifest))
    write_report(root, plots=False)
    assert _rec(root)["facts"]["strategy"] == "rag" and "has not finished" not in (root / "report.md").read_text()
