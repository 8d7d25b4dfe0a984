"""Real generation with the packaged SmolLM2 GGUF through llama-cpp-python."""

import math

import pytest

from bench.models.chat import ChatTemplate
from bench.models.llama import LlamaBackend
from bench.models.resolve import resolve_model
from bench.types import GenParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    spec = resolve_model("smollm2-135m", tmp_path_factory.mktemp("cache"))
    backend = LlamaBackend(spec, threads=2, n_ctx=1024)
    yield backend
    backend.close()


def test_packaged_model_is_found_and_hashed(smollm):
    assert smollm.spec.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(smollm.model_id) == 64 and smollm.model_id == smollm.spec.sha256


def test_chat_template_from_gguf(smollm):
    prompt = smollm.render([{"role": "user", "content": "What is 2+2?"}])
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    assert "What is 2+2?" in prompt


def test_greedy_generation_is_deterministic_and_counted(smollm):
    prompt = smollm.render([{"role": "user", "content": "Name a colour of the sky."}])
    params = GenParams(max_new_tokens=12)
    a, b = smollm.generate(prompt, params, seed=0), smollm.generate(prompt, params, seed=123)
    assert a.output == b.output and a.output.strip()
    assert 0 < a.completion_tokens <= 12
    assert a.prompt_tokens == smollm.count_tokens(prompt)
    assert a.seconds > 0


def test_sampling_is_seeded(smollm):
    prompt = smollm.render([{"role": "user", "content": "Write a word."}])
    params = GenParams(max_new_tokens=8, temperature=1.0, top_p=1.0)
    assert smollm.generate(prompt, params, seed=7).output == smollm.generate(prompt, params, seed=7).output
    outs = {smollm.generate(prompt, params, seed=s).output for s in range(6)}
    assert len(outs) > 1


def test_stop_strings_and_plain_template(smollm):
    plain = ChatTemplate()
    prompt = plain.render([{"role": "user", "content": "Count: one, two, three"}])
    assert prompt.endswith("### Response:\n")
    out = smollm.generate(prompt, GenParams(max_new_tokens=24, stop=("two",)), seed=0)
    assert "two" not in out.output


def test_loglikelihood_prefers_the_plausible_continuation(smollm):
    good = smollm.loglikelihood("The capital of France is", " Paris")
    bad = smollm.loglikelihood("The capital of France is", " banana")
    assert math.isfinite(good) and math.isfinite(bad) and good > bad


def test_loglikelihood_choices_match_one_by_one(smollm):
    ctx = "Question: What colour is grass?\nAnswer:"
    conts = [" green", " blue", " a kind of purple"]
    together = smollm.loglikelihood_choices(ctx, conts)
    for c, v in zip(conts, together):
        assert v == pytest.approx(smollm.loglikelihood(ctx, c), abs=1e-3)
