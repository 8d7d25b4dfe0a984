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


def test_recommendation_and_break_even(run):
    rec = _rec(run)["facts"]
    # lora and rag tie (0.725 vs 0.700, one item apart); at 100k queries lora's $2 of training is paid back
    assert rec["strategy"] == "lora" and rec["informative"]
    assert set(rec["contenders"]) == {"lora", "rag"}
    assert rec["flips"]["volume"][0]["other"] == "rag"
    assert rec["flips"]["volume"][0]["volume"] == pytest.approx(BREAK_EVEN_LORA_RAG)  # 39,960 queries
    assert rec["flips"]["volume"][0]["volume"] == pytest.approx(39_960)
    assert rec["setup_cost"] == pytest.approx(2.0) and rec["per_query_cost"] == pytest.approx(5e-5)
    assert rec["cost_per_1k_queries"] == pytest.approx(1000 * (2.0 / 100_000 + 5e-5))
    # the weight on cost at which zero_shot (0.2, $0.04/1k) overtakes lora (0.725, $0.07/1k)
    assert rec["flips"]["cost_weight"]["other"] == "zero_shot"
    assert rec["flips"]["cost_weight"]["weight"] == pytest.approx(0.525 / 0.03)
    assert rec["forgetting"]["mean_delta"] == pytest.approx(-0.04)  # the probes' own paired delta row
    assert rec["forgetting"]["ci"]["arc_easy_acc"] == pytest.approx([-0.12, 0.04])
    assert "hallucination_rate 0.300" in rec["reason"]
    assert rec["basis"] == "estimated"


def test_below_the_break_even_volume_rag_is_recommended(tmp_path):
    root = make_run(tmp_path / "r")
    write_report(root, volume=10_000, plots=False)
    rec = _rec(root)["facts"]
    assert rec["strategy"] == "rag"
    assert "within the noise of the best, lora" in rec["reason"]
    assert rec["flips"]["volume"][0]["volume"] == pytest.approx(39_960)
    assert rec["flips"]["quality_margin"]["other"] == "lora"
    assert rec["flips"]["quality_margin"]["margin"] == pytest.approx(0.025)


def test_forgetting_from_plain_probe_rows_when_no_delta_rows(tmp_path):
    root = make_run(tmp_path / "r", tasks=("facts",), delta_rows=False)
    write_report(root, plots=False)
    fg = _rec(root)["facts"]["forgetting"]
    assert fg["base"] == "zero_shot" and fg["mean_delta"] == pytest.approx(-0.05)


def test_floor_task_is_not_informative(run):
    rec = _rec(run)["ru_floor"]
    assert rec["strategy"] is None and rec["informative"] is False
    assert "not informative" in rec["reason"]


def test_report_markdown_sections_and_plots(run):
    md = (run / "report.md").read_text()
    assert md.index("## Recommendation") < md.index("## facts")
    assert "**facts: use `lora`.**" in md and "What would flip it" in md
    assert "| rag | retrieval | 0.700 |" in md and "| tie |" in md and "| worse |" in md
    assert "167,772,160 (2.09 %)" in md  # trainable parameters and share, as seed 003's table II
    assert "after 40.0k queries" in md
    assert "Retrieval is losing answers" in md  # rag_oracle beats rag
    assert "Target model" in md and "llama-3-8b" in md
    assert "on this run's 1,400,000 training tokens" in md  # the fixture's lora processed 1.4M tokens
    assert "pd.read_json(run_dir / 'rows.jsonl', lines=True)" in md
    for name in ("quality_vs_cost", "loss", "learning_vs_forgetting", "strata", "retrieval"):
        png = run / "plots" / f"facts_{name}.png"
        assert png.is_file() and png.stat().st_size > 1000
        assert f"(plots/facts_{name}.png)" in md


def test_intervals_and_ties_in_the_analysis(run):
    from bench.report.writer import build

    _, analyses, _, _ = build(run, plots=False)
    a = {x.task: x for x in analyses}["facts"]
    assert a.best == "lora"  # rag_oracle scores higher but is a diagnostic, never the best
    assert a.vs_best["rag"].tie and a.vs_best["zero_shot"].significant
    assert a.vs_best["zero_shot"].diff == pytest.approx(0.525)
    r = a.results["lora"]
    assert r.ci_low < r.value < r.ci_high and r.seeds == 3
    assert a.retrieval["rag"]["recall_at_k"] == pytest.approx(0.75)
    assert sum(a.retrieval["rag"]["classes"].values()) == 120


def test_formats_and_pandas(run):
    html = write_report(run, "html")
    assert html.name == "report.html" and "<table>" in html.read_text() and 'src="plots/facts_loss.png"' in html.read_text()
    csv = write_report(run, "csv", plots=False)
    import pandas as pd

    df = pd.read_csv(csv)
    assert bool(df.loc[(df.task == "facts") & (df.strategy == "lora"), "recommended"].iloc[0])
    rows = pd.read_json(run / "rows.jsonl", lines=True)
    assert {"task", "strategy", "seed", "metric", "value", "ci_low", "ci_high"} <= set(rows.columns)
    assert main(["report", str(run), "--format", "csv"]) == 0


def test_missing_data_degrades_to_notes(tmp_path):
    root = make_run(tmp_path / "bare", target_model=None, tasks=("facts",), strategies=("zero_shot", "rag"))
    shutil.rmtree(root / "cells")  # rows only: no per-item scores, no costs, no logs
    write_report(root)
    md = (root / "report.md").read_text()
    assert "no loss curves" in md and "no learning-vs-forgetting plot" in md and "no per-stratum plot" in md
    assert "no retrieval-outcome plot" in md and "No `target_model`" in md
    assert not (root / "plots" / "facts_loss.png").exists()
    assert _rec(root)["facts"]["strategy"] in ("zero_shot", "rag")


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
