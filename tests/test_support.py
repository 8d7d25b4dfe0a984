"""Source-support checks (bench.metrics.support): numbers with units, flips, invented terms, foreign sentences.

The detectors are asserted on perturbed real references of the built-in tasks in both languages (the cases
of benchmarks/support_detection.py), and on hand-written cases that name the span each check must flag.
"""

from __future__ import annotations

import pytest

from benchmarks.support_detection import KINDS, build_cases, evaluate
from bench.metrics import support as S
from bench.metrics.scoring import score_prediction, scorers_for
from bench.taskio import load_folder
from bench.types import Prediction
from tests.conftest import ROOT, write_task


def _task(name):
    return load_folder(ROOT / "tasks" / name)


# -- numbers ------------------------------------------------------------------------------------------
def test_numbers_are_read_with_units_ranges_and_decimal_commas():
    (n,) = S.numbers_in("узел 19×13 мм", "ru")
    assert n.values == (19.0, 13.0) and n.dimension == "length"
    (n,) = S.numbers_in("очаг 1,2 см", "ru")
    assert n.values == (12.0,) and n.raw == (1.2,)
    (n,) = S.numbers_in("a 2.5 cm lesion", "en")
    assert n.values == (25.0,)
    (n,) = S.numbers_in("sizes 5-7 mm", "en")
    assert n.values == (5.0, 7.0)
    (n,) = S.numbers_in("10,000 users", "en")
    assert n.raw == (10000.0,)
    assert [n.dimension for n in S.numbers_in("80 % in 2021", "en")] == ["percent", ""]
    assert S.numbers_in("T1-ВИ, x86_64, i386, 3d", "ru") == []  # digits inside words are not numbers
    assert S.numbers_in("kernel 2.6.32", "en")[0].versions == ("2.6.32",)


def test_number_support_survives_huge_numbers():
    support = S.NumberSupport()
    support.add_text("9" * 400 + " and 1e5", "en")
    assert support.unsupported(S.numbers_in("7", "en")[0]) == ["7"]


@pytest.mark.parametrize("source, answer, unsupported", [
    ("размер: до 12 мм", "очаг 1,2 см", []),  # the same length in other units
    ("размер: до 12 мм", "очаг 12 см", ["12"]),  # the same digits in the wrong unit
    ("узел 19×13 мм", "узел 19×18 мм", ["18"]),  # one value of a dimension pair
    ("40 (80%) responded", "80 percent answered", []),
    ("Debian 11.1 is stable", "Debian 11 is stable", []),  # a release's major number
    ("three packages", "3 packages", []),  # a number word in the source supports the digits
    ("released in 1998", "released in 1999", ["1999"]),
])
def test_number_support(source, answer, unsupported):
    lang = "ru" if any("а" <= ch <= "я" for ch in source) else "en"
    support = S.NumberSupport()
    support.add_text(source, lang)
    assert [v for n in S.numbers_in(answer, lang) for v in support.unsupported(n)] == unsupported


# -- the detectors on perturbed real references, both languages ---------------------------------------
@pytest.mark.parametrize("name", ["mri_reports_ru", "debian_faq", "debian_faq_ru"])
def test_detectors_find_planted_errors_in_real_references(name):
    """A fixed sample (the first 12 test items): every changed number and flipped side is flagged where it
    was planted, most negations, foreign sentences and invented terms too (at least 65 %), and nothing is
    flagged on the clean references of the sample or off target on the perturbed ones."""
    task = _task(name)
    cases = build_cases(task, "test", seed=0, limit=12)
    counts = evaluate(cases, task)
    assert {c.kind for c in cases} >= {"none", "number", "negation", "foreign", "novel"}
    for kind in KINDS:
        k = counts.get(kind)
        if not k:
            continue
        assert k["fp"] == 0 and k["off_target"] == 0, (kind, dict(k))
        need = 1.0 if kind in ("number", "side") else 0.65  # docs/hallucination.md: negation misses double negatives
        assert k["tp"] >= need * k["n"], (kind, dict(k))
    if name == "mri_reports_ru":
        assert counts["side"]["n"] >= 5


def test_clean_references_are_not_flagged_mri():
    task = _task("mri_reports_ru")
    for ex in task.test[:20]:
        r = S.check(ex.output, ex, task, refs=())
        assert not (r.unsupported_numbers or r.contradictions or r.novel_terms or r.foreign_sentences), (ex.id, r)


# -- hand-written cases: each check names its span ----------------------------------------------------
def _mri_item():
    task = _task("mri_reports_ru")
    ex = next(e for e in task.test if "сторона: левая" in e.input and "контрастное усиление: нет" in e.input
              and e.input.count("\n") == 0)
    return task, ex


def test_side_and_negation_flips_are_named_in_russian():
    task, ex = _mri_item()
    region = ex.input.split("область: ")[1].split(";")[0]
    size = ex.input.split("размер: до ")[1].split(" ")[0]
    good = f"В области «{region}» слева выявлен очаг размером до {size} мм, не накапливающий контрастное вещество."
    assert S.check(good, ex, task).contradictions == []
    r = S.check(good.replace("слева", "справа"), ex, task)
    assert [k for k, _, _ in r.contradictions] == ["side"] and "справа" in r.contradictions[0][1]
    r = S.check(good.replace("не накапливающий", "накапливающий"), ex, task)
    assert [k for k, _, _ in r.contradictions] == ["negation"] and "контрастное усиление: нет" in r.contradictions[0][2]


def test_english_negation_and_opposites_against_a_passage(tmp_path):
    task = load_folder(write_task(tmp_path / "notes", test=[
        {"id": "q1", "instruction": "Is the service enabled by default?", "input": "", "output": "No."}]))
    ex = task.test[0]
    passage = "The telnet service is not enabled by default. Signal intensity was increased in the frontal lobe."
    assert S.check("The telnet service is not enabled by default.", ex, task, [passage]).contradictions == []
    r = S.check("The telnet service is enabled by default.", ex, task, [passage])
    assert [k for k, _, _ in r.contradictions] == ["negation"]
    r = S.check("Signal intensity was decreased in the frontal lobe.", ex, task, [passage])
    assert [k for k, _, _ in r.contradictions] == ["opposite"]


def test_foreign_sentence_names_the_item_it_came_from(tmp_path):
    train = [{"id": f"tr{i}", "instruction": "Describe the ultrasound findings.", "input": f"Organ: {organ}; finding: {f}.",
              "output": out} for i, (organ, f, out) in enumerate([
                  ("thyroid", "nodule in the isthmus", "A hypoechoic nodule is seen in the thyroid isthmus."),
                  ("pelvis", "free fluid behind the uterus", "Free fluid is seen in the pouch behind the uterus."),
                  ("liver", "cyst in segment four", "A simple cyst is seen in hepatic segment four."),
                  ("kidney", "stone in the lower pole", "An echogenic stone is seen in the lower renal pole.")])]
    test = [{"id": "te0", "instruction": "Describe the ultrasound findings.", "input": "Organ: thyroid; finding: nodule in the left lobe.",
             "output": "A hypoechoic nodule is seen in the left thyroid lobe."}]
    task = load_folder(write_task(tmp_path / "us", train=train, test=test))
    ex = task.test[0]
    assert S.check(ex.output, ex, task).foreign_sentences == []
    leaked = ex.output + " Free fluid is seen behind the uterus."
    r = S.check(leaked, ex, task)
    assert r.foreign_sentences == [("Free fluid is seen behind the uterus.", "tr1")]


def test_novel_terms_are_those_of_no_source_train_item_or_reference(tmp_path):
    task = load_folder(write_task(tmp_path / "t"))
    ex = task.test[0]
    r = S.check("The sum is computed with a quantum abacus.", ex, task)
    assert set(r.novel_terms) == {"sum", "computed", "quantum", "abacus"}
    assert S.check("What is the sum?", ex, task, refs=["the sum"]).novel_terms == []  # question words and reference
    assert "abacus" not in S.check("The quantum abacus.", ex, task, ["An abacus adds numbers."]).novel_terms


# -- the metric: every task, reasons, abstentions, failures ---------------------------------------------
def test_score_prediction_adds_support_to_every_task_and_uses_the_sources(tmp_path):
    task = load_folder(write_task(tmp_path / "t", test=[
        {"id": "te0", "instruction": "When was the clinic founded?", "input": "", "output": "in 1990"}]))
    assert "support" not in task.metrics and "support" in scorers_for(task)
    ex = task.test[0]
    closed = score_prediction(Prediction(ex.id, "It is 1987."), ex, task)
    assert set(S.NAMES) <= set(closed) and closed["unsupported_number_rate"]["value"] == 1.0
    assert "1987" in closed["unsupported_number_rate"]["reason"]
    rag = score_prediction(Prediction(ex.id, "It is 1987.", sources=("Founded in 1987.",)), ex, task)
    assert rag["unsupported_number_rate"]["value"] == 0.0
    # the reference's own numbers are never unsupported: a recalled correct fact is not a hallucination
    assert score_prediction(Prediction(ex.id, ex.output), ex, task)["unsupported_number_rate"]["value"] == 0.0


def test_abstentions_score_zero_and_failures_are_none(task_dir):
    task = load_folder(task_dir)
    ex = task.test[0]
    s = score_prediction(Prediction(ex.id, "I don't know"), ex, task)
    assert all(s[n]["value"] == 0.0 and "asserts nothing" in s[n]["reason"] for n in S.NAMES)
    s = score_prediction(Prediction(ex.id, "I don't know. But it was 1987."), ex, task)
    assert s["unsupported_number_rate"]["value"] == 1.0  # abstaining does not excuse what else is asserted
    s = score_prediction(Prediction(ex.id, None, error="boom"), ex, task)
    assert all(s[n]["value"] is None for n in S.NAMES)


# -- the optional NLI check: plumbing only, with a tiny randomly initialised model ----------------------
def _tiny_nli(path, bias):
    """A 1-layer BERT with 3 labels and random weights; the classifier bias decides every prediction."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "is", "a", "report"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=64, num_labels=3,
                        id2label={0: "contradiction", 1: "entailment", 2: "neutral"},
                        label2id={"contradiction": 0, "entailment": 1, "neutral": 2})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor(bias, dtype=torch.float))
    fast.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_nli_check_plumbing_with_a_tiny_random_model(tmp_path, task_dir):
    task = load_folder(task_dir)
    ex = task.test[0]
    pred = Prediction(ex.id, "The report is a report. The report is.", sources=("the report is a report",))
    try:
        S.configure(nli_model=_tiny_nli(tmp_path / "entails", [0.0, 50.0, 0.0]))
        assert scorers_for(task)[-1] == "support_nli"
        s = score_prediction(pred, ex, task)[S.NLI_NAME]
        assert s["value"] == 0.0 and "all 2 sentence(s) entailed" in s["reason"]
        S.configure(nli_model=_tiny_nli(tmp_path / "contradicts", [50.0, 0.0, 0.0]))
        s = score_prediction(pred, ex, task)[S.NLI_NAME]
        assert s["value"] == 1.0 and "2 of 2" in s["reason"]
    finally:
        S.configure(nli_model=None)
    assert "support_nli" not in scorers_for(task)


def test_phrase_lookup_by_first_word_equals_scanning_every_phrase():
    """WordSet.phrase_at looks phrases up by their first word; it must find what a scan of every phrase
    in lexicon order finds, on texts made of lexicon phrases, their parts and their prefixes."""
    import random

    def scan(ws, tokens, i):
        for ph in ws.phrases:
            n = len(ph)
            if tuple(tokens[i:i + n - 1]) == ph[:-1] and i + n <= len(tokens) and S._entry_match(tokens[i + n - 1], ph[-1]):
                return n
        return 0

    lex = S.lexicon()
    sets = [ws for _, ws in lex.sides] + [lex.stopwords, lex.negators]
    phrases = [ph for ws in sets for ph in ws.phrases]
    assert len(phrases) >= 6
    pool = [w.rstrip("*") + suffix for ph in phrases for w in ph for suffix in ("", "s")] + ["the", "left", "x"]
    rng = random.Random(0)
    found = 0
    for _ in range(300):
        tokens: list[str] = []
        while len(tokens) < 12:
            tokens += list(w.rstrip("*") for w in rng.choice(phrases)) if rng.random() < 0.5 else [rng.choice(pool)]
        for ws in sets:
            for i in range(len(tokens)):
                got = ws.phrase_at(tokens, i)
                assert got == scan(ws, tokens, i), (tokens, i)
                found += got > 0
    assert found > 50
