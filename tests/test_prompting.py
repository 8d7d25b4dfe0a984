"""Prompting strategies on a scripted model: exemplar choice, answer extraction, voting, medoid."""


from bench.config import RunConfig
from bench.plugins import load_plugins
from bench.prompts import PromptForm, build_messages, final_answer
from bench.registry import STRATEGIES
from bench.run.cache import GenerationCache
from bench.run.context import CellContext
from bench.taskio import load_folder
from tests.conftest import write_task
from tests.fakes import FakeBackend

load_plugins()


def _ctx(task, backend, seed=0, **cfg):
    return CellContext(task=task, config=RunConfig().replace(**cfg) if cfg else RunConfig(), seed=seed, model=None,
                       backend=backend, cache=GenerationCache(None), strategy_key="t#0")


def _strategy(name, **params):
    cls = STRATEGIES.get(name)
    return cls(cls.Params(**params))


def test_few_shot_random_is_seeded_and_never_uses_the_question(tmp_path):
    task = load_folder(write_task(tmp_path / "t"))
    fs = _strategy("few_shot", k=3)
    ctx = _ctx(task, FakeBackend())
    fs.prepare(ctx)
    ex = task.test[0]
    a, b = fs.exemplars(ex, ctx), fs.exemplars(ex, ctx)
    assert a == b and len(a) == 3
    others = {tuple(e.id for e in fs.exemplars(ex, _ctx(task, FakeBackend(), seed=s))) for s in range(6)}
    assert len(others) > 1  # the seed changes the draw
    train_as_test = load_folder(write_task(tmp_path / "u", test=[{"id": "tr0", "instruction": "x", "input": "", "output": "y"}],
                                           train=[{"id": f"o{i}", "instruction": "q", "input": "", "output": "a"} for i in range(3)]))
    fs.prepare(_ctx(train_as_test, FakeBackend()))
    assert all(e.id != "tr0" for e in fs.exemplars(train_as_test.test[0], ctx))


def test_few_shot_similar_picks_the_related_exemplar(tmp_path):
    train = [{"id": "cook", "instruction": "How long should pasta boil?", "input": "", "output": "10 minutes"},
             {"id": "space", "instruction": "How far is the Moon from Earth?", "input": "", "output": "384,400 km"},
             {"id": "law", "instruction": "What is a tort?", "input": "", "output": "a civil wrong"}]
    test = [{"id": "q", "instruction": "What is the distance between the Earth and the Moon?", "input": "", "output": "x"}]
    task = load_folder(write_task(tmp_path / "t", train=train, test=test))
    fs = _strategy("few_shot", k=1, selection="similar")
    ctx = _ctx(task, FakeBackend())
    fs.prepare(ctx)
    assert [e.id for e in fs.exemplars(task.test[0], ctx)] == ["space"]


def test_final_answer_is_one_extraction_for_every_arm(tmp_path):
    qa = load_folder(write_task(tmp_path / "qa"))
    gen = load_folder(write_task(tmp_path / "gen", meta={"kind": "generation", "metrics": ["rouge"], "main_metric": "rougeL"}))
    assert final_answer("First, 2+2.\nThen add one.\nAnswer: 5", qa, cot=True) == ("5", True)
    assert final_answer("Рассуждаю...\nОтвет: Кошка", qa, cot=True) == ("Кошка", True)
    assert final_answer("no marker here\nlast line", qa, cot=True) == ("last line", False)
    assert final_answer("The answer is: honey.", qa, cot=True) == ("honey", True)
    assert final_answer("Answering takes care.\nAnswer:\nhoney", qa, cot=True) == ("honey", True)
    assert final_answer("**Answer:** \"honey\"\nBecause bees.", qa) == ("honey", True)
    assert final_answer("honey", qa) == ("honey", False)
    # generation tasks keep the whole final answer, not one line
    assert final_answer("Reasoning.\nAnswer: Line one.\nLine two.", gen, cot=True) == ("Line one.\nLine two.", True)
    assert final_answer("Line one.\nLine two.", gen) == ("Line one.\nLine two.", False)


def test_cot_and_messages(tmp_path):
    task = load_folder(write_task(tmp_path / "t", meta={"instruction": "Be brief."}))
    fake = FakeBackend(answer=lambda p: "Let me think.\nAnswer: 1")
    pred = _strategy("cot").predict(task.test[0], _ctx(task, fake))
    assert pred.answer == "1" and pred.info["answer_marker"]
    assert "step by step" in fake.prompts[0]
    msgs = build_messages(task, task.test[0], exemplars=task.train[:2])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_self_consistency_majority_vote(tmp_path):
    task = load_folder(write_task(tmp_path / "t"))
    outputs = iter(["Answer: 7", "Answer: seven", "Answer: 7.", "Answer: 8", "Answer: 8"])
    fake = FakeBackend(answer=lambda p: next(outputs))
    fake.generate = (lambda orig: (lambda prompt, params, seed: orig(prompt, params.__class__(**{**params.as_dict(), "temperature": 0.0}), seed)))(fake.generate)
    pred = _strategy("self_consistency", n=5).predict(task.test[0], _ctx(task, fake))
    assert pred.answer in ("7", "7.") and pred.info["votes"] == 2 and len(pred.generations) == 5


def test_self_consistency_samples_are_distinct_calls(tmp_path):
    task = load_folder(write_task(tmp_path / "t"))
    fake = FakeBackend(answer=lambda p: "Answer: 3")
    ctx = _ctx(task, fake)
    _strategy("self_consistency", n=4).predict(task.test[0], ctx)
    assert fake.calls == 4  # four sample indices, four cache keys, four model calls
    _strategy("self_consistency", n=4).predict(task.test[0], ctx)
    assert fake.calls == 4  # all four cached


def test_medoid_for_long_form():
    from strategies.prompting import medoid

    texts = ["the lesion is in the left frontal lobe", "a lesion in the left frontal lobe",
             "completely unrelated words here", "lesion left frontal lobe small"]
    assert medoid(texts, "en") in (0, 1, 3)
    assert medoid(texts, "en") != 2


def test_the_instruction_is_never_shown_twice(tmp_path):
    train = [{"id": f"tr{i}", "instruction": "What is the capital?", "input": f"Country {i}", "output": f"C{i}"}
             for i in range(3)]
    test = [{"id": "te0", "instruction": "What is the capital?", "input": "France", "output": "Paris"}]
    task = load_folder(write_task(tmp_path / "t", train=train, test=test, meta={"instruction": "What is the capital?"}))
    for form in (PromptForm(instruction="system"), PromptForm(instruction="user")):
        msgs = build_messages(task, task.test[0], exemplars=task.train[:2], form=form)
        text = "\n".join(m["content"] for m in msgs)
        assert text.count("What is the capital?") == 1, (form, text)
        assert ("system" in [m["role"] for m in msgs]) == (form.instruction == "system")


def test_rag_few_shot_exemplars_carry_their_own_passages(tmp_path):
    docs = [{"id": f"d{i}", "title": f"Town {i}", "text": f"The main export of Town {i} is product{i}."} for i in range(6)]
    train = [{"id": f"tr{i}", "instruction": f"What is the main export of Town {i}?", "input": "", "output": f"product{i}",
              "doc_ids": [f"d{i}"]} for i in range(3, 6)]
    test = [{"id": "te0", "instruction": "What is the main export of Town 0?", "input": "", "output": "product0",
             "doc_ids": ["d0"]}]
    task = load_folder(write_task(tmp_path / "t", train=train, test=test, docs=docs))
    fake = FakeBackend(chat=True)
    ctx = _ctx(task, fake)
    oracle, fs = _strategy("rag_oracle"), _strategy("few_shot", k=2)
    oracle.prepare(ctx)
    fs.prepare(ctx)
    ctx.retrieval = oracle
    passages = oracle.retrieve(task.test[0], ctx)
    (call,) = fs.calls(task.test[0], ctx, passages)
    users = [m["content"] for m in call.messages if m["role"] == "user"]
    assert len(users) == 3 and all("[1] Town" in u for u in users)  # every exemplar turn has its passage
    shots = fs.exemplars(task.test[0], ctx)
    for u, ex in zip(users, shots):
        assert ex.output in u  # the exemplar's own gold passage
    # without a retriever, exemplars are plain question/answer turns
    ctx.retrieval = None
    (plain,) = fs.calls(task.test[0], ctx, None)
    assert not any("[1]" in m["content"] for m in plain.messages)


def test_completion_form_on_a_chat_model_renders_the_plain_prompt(tmp_path):
    task = load_folder(write_task(tmp_path / "t"))
    fake = FakeBackend(chat=True)
    ctx = _ctx(task, fake)
    _strategy("zero_shot", form="completion").predict(task.test[0], ctx)
    _strategy("zero_shot", form="chat").predict(task.test[0], ctx)
    assert fake.prompts[0].startswith("### Instruction") and fake.prompts[1].startswith("<user>")
