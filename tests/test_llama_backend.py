"""Real generation with the packaged SmolLM2 GGUF through llama-cpp-python."""

import math

import pytest

from bench.models.chat import ChatTemplate
from bench.models.llama import LlamaBackend, open_llama
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


def _hand_loglikelihood(path, context: str, continuation: str) -> tuple[float, int]:
    """log P(continuation | context) from a plain llama_cpp.Llama's logits at every position (attention computed
    as bench's decoder does it), log-softmaxed by hand: the continuation's tokens follow the longest prefix shared with the context's tokens; with nothing
    before them, the sequence starts from BOS (EOS when the model has none). Returns (sum, tokens scored)."""
    import numpy as np

    llm = open_llama(str(path), 2, 512, logits_all=True, flash_attn=True)
    try:
        ctx = llm.tokenize(context.encode(), add_bos=True, special=True)
        full = llm.tokenize((context + continuation).encode(), add_bos=True, special=True)
        k = 0
        while k < min(len(ctx), len(full)) and ctx[k] == full[k]:
            k += 1
        if k == 0:
            start = llm.token_bos() if llm.token_bos() >= 0 else llm.token_eos()
            full, k = [start] + full, 1
        llm.reset()
        llm.eval(full)
        logits = np.asarray(llm.scores[: len(full)], dtype=np.float64)
        total = 0.0
        for i in range(k, len(full)):
            row = logits[i - 1]
            total += float(row[full[i]] - row.max() - np.log(np.exp(row - row.max()).sum()))
        return total, len(full) - k
    finally:
        llm.close()


@pytest.mark.parametrize("context,continuation", [
    ("The capital of France is", " Paris"),
    ("Question: What colour is grass?\nAnswer:", " green, mostly"),
    ("The sky is ", "blue"),  # the boundary space merges into the continuation's first token
    ("", "Once upon a time there was a cat."),  # empty context: every token scored, the first from BOS/EOS
])
def test_loglikelihood_matches_a_hand_computation(smollm, context, continuation):
    want, scored = _hand_loglikelihood(smollm.spec.path, context, continuation)
    assert smollm.loglikelihood(context, continuation) == pytest.approx(want, rel=1e-3, abs=1e-3)
    assert smollm.loglikelihood_choices(context, [continuation, " x"])[0] == pytest.approx(want, rel=1e-3, abs=1e-3)
    if not context:
        assert scored == smollm.count_tokens(continuation)  # perplexity divides by count_tokens: all of them scored


def test_empty_continuation_scores_zero(smollm):
    assert smollm.loglikelihood("The capital of France is", "") == 0.0


def test_loglikelihood_choices_match_one_by_one(smollm):
    ctx = "Question: What colour is grass?\nAnswer:"
    conts = [" green", " blue", " a kind of purple"]
    together = smollm.loglikelihood_choices(ctx, conts)
    for c, v in zip(conts, together):
        assert v == pytest.approx(smollm.loglikelihood(ctx, c), abs=1e-3)
