"""Knowledge-injection recipes and strategy variants (the studies' building blocks, docs/findings.md).

Strategy variants (`lora@r64`) are the same strategy under their own name and params; the recipes choose
what a fine-tune trains on, at a matched number of training tokens; the `facts` generator emits seeded
paraphrases of its training questions and verbatim / rephrased / docs-only test questions.
"""

from __future__ import annotations

import json

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.plugins import load_plugins
from bench.run.pipeline import parse_arm
from bench.synth.facts import FactsConfig, generate
from bench.taskio import load_folder
from bench.types import Example

load_plugins()
from strategies.training.data import recipe_problem, recipe_records, recipe_split, token_budget  # noqa: E402


# -- variants ------------------------------------------------------------------------------------------
def test_a_variant_is_its_strategy_under_its_own_name_and_params():
    cfg = RunConfig(strategies=("lora", "lora@r64", "lora@r64+rag")).with_params(
        {"lora@r64": {"r": 64}, "lora": {"r": 8}}, "run.yaml")
    plain, big, stacked = (parse_arm(s, cfg) for s in cfg.strategies)
    assert plain.finetune.params.r == 8 and big.finetune.params.r == 64
    assert big.name == "lora@r64" and stacked.name == "lora@r64+rag" and big.family == "fine-tuning"
    assert big.finetune.method.name == "lora" and big.key != plain.key  # its own cache key
    assert stacked.base_name == "rag"


@pytest.mark.parametrize("spec,words", [("lora@", "after @"), ("lora@a b", "after @"), ("lroa@x", "did you mean lora")])
def test_bad_variant_names_fail_in_one_line(spec, words):
    with pytest.raises(BenchError) as e:
        parse_arm(spec, RunConfig())
    assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(BenchError) as e:
        RunConfig().with_params({spec: {}}, "run.yaml")
    assert "run.yaml" in str(e.value) and "\n" not in str(e.value)


# -- recipes -------------------------------------------------------------------------------------------
def _examples(n: int, k: int) -> list[Example]:
    out = []
    for i in range(n):
        out.append(Example(f"q{i}", f"question {i}?", "", f"answer {i}"))
        out += [Example(f"q{i}-p{j}", f"rephrased {j} of {i}?", "", f"answer {i}", extra=(("paraphrase_of", f"q{i}"),))
                for j in range(k)]
    return out


def test_recipes_share_one_validation_slice_and_paraphrases_never_leak_it():
    ex = _examples(10, 3)
    qa_train, qa_val = recipe_split("qa", ex, 0.2, seed=4)
    para_train, para_val = recipe_split("qa+paraphrases", ex, 0.2, seed=4)
    assert [e.id for e in qa_val] == [e.id for e in para_val] and len(qa_val) == 2
    assert not any(e.get("paraphrase_of") for e in qa_train + qa_val)
    val_ids = {e.id for e in qa_val}
    paras = [e for e in para_train if e.get("paraphrase_of")]
    assert len(paras) == 3 * len(qa_train) and not any(e.get("paraphrase_of") in val_ids for e in paras)


def test_token_budget_is_exact_seeded_and_covers_every_row():
    rows = [{"input_ids": list(range(10 + i)), "completion_mask": [0] * 5 + [1] * (5 + i)} for i in range(7)]
    total = sum(len(r["input_ids"]) for r in rows)
    out = token_budget(rows, 2 * total + 13, seed=1)
    assert sum(len(r["input_ids"]) for r in out) == 2 * total + 13
    assert out == token_budget(rows, 2 * total + 13, seed=1) and out != token_budget(rows, 2 * total + 13, seed=2)
    first = out[: len(rows)]  # the first pass holds every row once, in a seeded order
    assert sorted(len(r["input_ids"]) for r in first) == sorted(len(r["input_ids"]) for r in rows)
    assert token_budget(rows, 0, seed=1) == rows


def test_recipe_records_and_problems(tmp_path):
    from tests.conftest import write_task

    folder = write_task(tmp_path / "t", train=[{"id": "a", "instruction": "q?", "input": "", "output": "x"},
                                                {"id": "b", "instruction": "r?", "input": "", "output": "y"}],
                        test=[{"id": "t", "instruction": "q?", "input": "", "output": "x"}],
                        docs=[{"id": "d", "title": "T", "text": "The answer is x."}])
    task = load_folder(folder)

    class Plain:
        is_chat, eos_token = False, ""

        def render(self, messages):
            return " ".join(m["content"] for m in messages)

    train = list(task.train)
    docs = recipe_records("docs", task, train, Plain())
    both = recipe_records("docs+qa", task, train, Plain())
    qa = recipe_records("qa", task, train, Plain())
    assert [r.id for r in docs] == ["doc:d"] and docs[0].prompt == "" and "answer is x" in docs[0].completion
    assert [r.id for r in both] == ["doc:d", "a", "b"] and [r.id for r in qa] == ["a", "b"]
    assert "paraphrase" in recipe_problem("qa+paraphrases", task)
    no_docs = task.__class__(**{**task.__dict__, "docs": ()})
    assert "docs.jsonl" in recipe_problem("docs", no_docs) and recipe_problem("qa", no_docs) is None


def test_recipe_params_are_checked_and_only_for_the_sft_loop(tmp_path):
    from bench.registry import STRATEGIES
    from bench.synth.facts import TINY

    with pytest.raises(BenchError, match="recipe must be one of"):
        RunConfig().with_params({"lora": {"recipe": "everything"}}, "run.yaml")
    with pytest.raises(BenchError, match="train_tokens"):
        RunConfig().with_params({"lora": {"train_tokens": -1}}, "run.yaml")
    generate(TINY, tmp_path / "facts")
    task = load_folder(tmp_path / "facts")
    dpo = STRATEGIES.get("dpo")(STRATEGIES.get("dpo").Params(recipe="docs"))
    assert "SFT methods" in dpo.check(task)
    cpt = STRATEGIES.get("cpt_lora")()
    assert cpt.params.recipe == "docs+qa" and cpt.reads(task) == ("train", "docs")
    assert STRATEGIES.get("lora")().reads(task) == ("train",)


# -- the facts generator's injection options -----------------------------------------------------------
def _rows(folder, split):
    return [json.loads(x) for x in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_facts_paraphrases_and_question_kinds(tmp_path, lang):
    cfg = FactsConfig(seed=3, groups=6, lookalikes=1, multiplicity=2, paraphrases=4, seen_per_group=2,
                      unanswerable_per_kind=2)
    manifest = generate(cfg, tmp_path / "f", lang=lang)
    assert manifest["config"]["paraphrases"] == 4 and manifest["config"]["seen_per_group"] == 2
    train, test = _rows(tmp_path / "f", "train"), _rows(tmp_path / "f", "test")
    originals = {r["id"]: r for r in train if not r.get("paraphrase_of")}
    paras: dict[str, list] = {}
    for r in train:
        if r.get("paraphrase_of"):
            paras.setdefault(r["paraphrase_of"], []).append(r)
    answerable = [i for i, r in originals.items() if r.get("answerable", True)]
    assert answerable and set(paras) == set(answerable)
    for i, ps in paras.items():  # k distinct restatements with the original's answer
        texts = {p["instruction"] for p in ps}
        assert len(ps) == 4 and len(texts) == 4 and originals[i]["instruction"] not in texts
        assert all(p["output"] == originals[i]["output"] for p in ps)
    kinds: dict[str, int] = {}
    for r in test:
        kinds[r["stratum"]] = kinds.get(r["stratum"], 0) + 1
        if r["stratum"] in ("verbatim", "rephrased"):
            fact = originals[r["fact"]]
            assert r["output"] == fact["output"]
            seen = {fact["instruction"]} | {p["instruction"] for p in paras[r["fact"]]}
            assert (r["instruction"] == fact["instruction"]) == (r["stratum"] == "verbatim")
            assert r["stratum"] == "verbatim" or r["instruction"] not in seen  # never a training wording
        elif r["stratum"] == "docs_only":
            assert r["entity_group"] not in {o.get("entity_group") for o in originals.values()}
    assert kinds["verbatim"] == kinds["rephrased"] > 0 and kinds["docs_only"] > 0 and kinds["unanswerable"] > 0
    again = generate(cfg, tmp_path / "g", lang=lang)
    assert again["files"] == manifest["files"]  # seeded


def test_facts_defaults_add_no_paraphrases_or_strata(tmp_path):
    from bench.synth.facts import TINY

    generate(TINY, tmp_path / "f")
    assert not any(r.get("paraphrase_of") for r in _rows(tmp_path / "f", "train"))
    assert not any("stratum" in r for r in _rows(tmp_path / "f", "test"))


# -- Gekhman mixes: SliCK labels of the training pairs choose the mix -------------------------------------
def test_known_unknown_mix_has_the_asked_share_of_pairs_the_base_model_does_not_know(tmp_path):
    from bench.models.resolve import ModelSpec
    from bench.run.cache import GenerationCache
    from bench.run.context import CellContext
    from strategies.finetune import known_unknown_mix
    from tests.conftest import write_task
    from tests.fakes import FakeBackend

    train = [{"id": f"q{i}", "instruction": f"What is code {i}?", "input": "", "output": f"answer{i}"} for i in range(20)]
    folder = write_task(tmp_path / "t", train=train, test=[{**train[0], "id": "t0"}])
    task = load_folder(folder)
    knows = {f"What is code {i}?": f"answer{i}" for i in range(0, 20, 2)}  # the base model knows the even ones

    def answer(prompt):
        last = [ln for ln in prompt.strip().splitlines() if ln.strip() and not ln.startswith("###")][-1]
        return knows.get(last.strip(), "no idea")

    def ctx(seed):
        return CellContext(task=task, config=RunConfig(), seed=seed, model=ModelSpec("fake", "gguf"),
                           backend=FakeBackend(answer=answer), cache=GenerationCache(None), strategy_key="lora#x")

    for share, n_unknown in ((0.0, 0), (0.5, 4), (1.0, 8)):
        c = ctx(1)
        picked = known_unknown_mix(c, list(task.train), share, 8, option="params.lora")
        odd = [e for e in picked if int(e.id[1:]) % 2]
        assert len(picked) == 8 and len(odd) == n_unknown and len({e.id for e in picked}) == 8
        assert c.costs["train"]["mix"] == {"size": 8, "unknown": n_unknown, "known": 8 - n_unknown,
                                           "pool_known": 10, "pool_unknown": 10}
    assert [e.id for e in known_unknown_mix(ctx(1), list(task.train), 0.5, 8, "p")] != \
        [e.id for e in known_unknown_mix(ctx(2), list(task.train), 0.5, 8, "p")]  # the training seed picks
    with pytest.raises(BenchError, match="lower mix_size"):
        known_unknown_mix(ctx(1), list(task.train), 1.0, 12, option="params.lora")
