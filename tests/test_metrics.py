"""Metrics: Unicode ROUGE (Russian must score), SQuAD EM/F1, failures counted not averaged."""

import pytest

from bench.metrics.scoring import aggregate, score_prediction
from bench.metrics.text import rouge_f, token_f1
from bench.taskio import load_folder
from bench.types import Prediction
from tests.conftest import write_task


def test_rouge_scores_cyrillic():
    ref = "В левой лобной доле определяется очаг размером 5 мм."
    assert rouge_f(ref, ref, "ru")["rouge1"] == pytest.approx(1.0)
    partial = rouge_f("В правой лобной доле очагов нет.", ref, "ru")
    assert 0.2 < partial["rouge1"] < 0.8
    assert rouge_f("Совсем другой текст про погоду.", ref, "ru")["rouge1"] == 0.0
    # rouge-score's own tokenizer drops Cyrillic: the reason bench has its own
    from rouge_score import rouge_scorer

    words_only = "Очаговых изменений не выявлено"
    assert rouge_scorer.RougeScorer(["rouge1"]).score(words_only, words_only)["rouge1"].fmeasure == 0.0
    assert rouge_f(words_only, words_only, "ru")["rouge1"] == pytest.approx(1.0)


def test_russian_stemming_matches_inflections():
    assert rouge_f("очаги в лобных долях", "очаг в лобной доле", "ru")["rouge1"] > rouge_f(
        "очаги в лобных долях", "очаг в лобной доле", "xx")["rouge1"]


def test_rouge_lsum_uses_sentences():
    ref = "The cat sat. The dog ran."
    pred = "The dog ran. The cat sat."
    s = rouge_f(pred, ref)
    assert s["rougeLsum"] == pytest.approx(1.0) and s["rougeL"] < 1.0


def test_squad_normalisation():
    assert token_f1("The Eiffel Tower!", "eiffel tower") == 1.0
    assert token_f1("Paris, France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("", "Paris") == 0.0


def test_failures_are_counted_not_averaged(tmp_path):
    task = load_folder(write_task(tmp_path / "t"))
    exs = list(task.test)
    preds = [Prediction(exs[0].id, exs[0].output), Prediction(exs[1].id, "wrong"),
             Prediction(exs[2].id, None, error="boom"), Prediction(exs[3].id, exs[3].output)]
    per = [score_prediction(p, e, task) for p, e in zip(preds, exs)]
    assert per[2]["f1"]["value"] is None and "boom" in per[2]["f1"]["reason"]
    rows = {m.metric: m for m in aggregate(task, exs, per)}
    assert rows["exact_match"].value == pytest.approx(2 / 3)
    assert rows["exact_match"].n == 3 and rows["exact_match"].n_failed == 1
    assert rows["f1"].main and not rows["rouge1"].main and rows["rouge1"].scorer == "rouge"
    assert rows["f1"].ci_low <= rows["f1"].value <= rows["f1"].ci_high


@pytest.mark.parametrize("task_name", ["demo", "mri_reports_ru"])
def test_evaluate_modules_match_benchs_scorer_offline(task_name, monkeypatch):
    """`evaluate.load(<bench's module folder>)` works offline and gives the scorer's numbers."""
    import evaluate

    from bench.metrics.hf_evaluate import module_path
    from bench.run.plan import resolve_task

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = resolve_task(task_name)
    exs = list(task.test[:8])
    # predictions of every quality: exact, a neighbour's answer, a truncated answer, empty
    preds = [e.output if i % 4 == 0 else exs[(i + 1) % len(exs)].output if i % 4 == 1 else e.output[: len(e.output) // 2]
             if i % 4 == 2 else "" for i, e in enumerate(exs)]
    mini = task.__class__(**{**task.__dict__, "metrics": ("rouge", "exact_match", "f1")})
    per = [score_prediction(Prediction(e.id, p), e, mini) for p, e in zip(preds, exs)]
    ours = {m.metric: m.value for m in aggregate(mini, exs, per)}
    refs = [e.output for e in exs]
    rouge = evaluate.load(module_path("bench_rouge")).compute(predictions=preds, references=refs, language=task.language)
    squad = evaluate.load(module_path("bench_squad")).compute(predictions=preds, references=refs, language=task.language)
    for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert rouge[k] == pytest.approx(ours[k], abs=1e-12), k
    assert squad["exact_match"] == pytest.approx(ours["exact_match"]) and squad["f1"] == pytest.approx(ours["f1"])
    assert 0 < ours["rouge1"] < 1


def test_gold_in_output_sees_the_whole_output_and_every_qa_task_gets_it(tmp_path):
    from bench.metrics.scoring import scorers_for

    task = load_folder(write_task(tmp_path / "t"))
    ex = task.test[0]  # "What is 0 plus 1?" -> "1"
    pred = Prediction(ex.id, "The sum is 1", raw="The sum is 1\nbecause 0 + 1 = 1.")
    s = score_prediction(pred, ex, task)
    assert s["gold_in_output"]["value"] == 1.0 and s["exact_match"]["value"] == 0.0  # the answer, not its form
    assert score_prediction(Prediction(ex.id, "10", raw="10"), ex, task)["gold_in_output"]["value"] == 0.0  # whole words
    assert "gold_in_output" in scorers_for(task)
    gen = load_folder(write_task(tmp_path / "g", meta={"kind": "generation", "metrics": ["rouge"], "main_metric": "rougeL"}))
    assert "gold_in_output" not in scorers_for(gen)


def test_a_missing_nltk_is_one_line_not_a_traceback(monkeypatch):
    import sys

    from bench.errors import BenchError
    from bench.metrics import text

    monkeypatch.setitem(sys.modules, "nltk", None)
    monkeypatch.setitem(sys.modules, "nltk.stem.porter", None)
    monkeypatch.setitem(sys.modules, "nltk.stem.snowball", None)
    text.stemmer.cache_clear()
    text._rouge_scorer.cache_clear()
    try:
        with pytest.raises(BenchError, match="NLTK"):
            text.rouge_f("a cat", "the cat", "ru")
    finally:
        text.stemmer.cache_clear()
        text._rouge_scorer.cache_clear()
