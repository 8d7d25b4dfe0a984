"""Prompting strategies on a scripted model: exemplar choice, answer extraction, voting, medoid."""


from bench.config import RunConfig
from bench.plugins import load_plugins
from bench.prompts import build_messages, extract_answer
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


def test_cot_extracts_the_answer_line():
    assert extract_answer("First, 2+2.\nThen add one.\nAnswer: 5") == ("5", True)
    assert extract_answer("Рассуждаю...\nОтвет: Кошка") == ("Кошка", True)
    assert extract_answer("no marker here\nlast line") == ("last line", False)


def test_cot_and_messages(tmp_path):
    task = load_folder(write_task(tmp_path / "t", meta={"instruction": "Be brief."}))
    fake = FakeBackend(answer=lambda p: "Let me think.\nAnswer: 1")
    pred = _strategy("cot").predict(task.test[0], _ctx(task, fake))
    assert pred.answer == "1" and pred.info["answer_line"]
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
