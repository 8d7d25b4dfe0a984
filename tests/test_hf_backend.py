"""The transformers backend on the packaged SmolLM2 (its cached safetensors conversion): batched
generation equals one-by-one generation and transformers' own `generate`, for the plain model, a LoRA
adapter, prompt tuning (a couple of real training steps) and prefix tuning; stop strings, token limits
and seeded sampling behave per sequence; log-likelihoods equal a token-by-token hand computation
(log-softmax of the model's logits at each position), with an empty context and with virtual tokens.

Set BENCH_TEST_CACHE to a folder to keep the GGUF -> safetensors conversion across runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from bench.errors import BenchError
from bench.prompts import build_messages
from bench.taskio import load_folder
from bench.types import GenParams, GenRequest
from tests.conftest import ROOT, scratch

pytestmark = pytest.mark.slow

GREEDY = GenParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Iterator[Path]:
    yield from scratch(tmp_path_factory, "hfcache")


@pytest.fixture(scope="module")
def spec(cache):
    from bench.models.convert import hf_checkpoint
    from bench.models.resolve import resolve_model

    s = resolve_model("smollm2-135m", cache)
    hf_checkpoint(s, cache)
    return s


@pytest.fixture(scope="module")
def hf(spec, cache):
    from bench.models.hf import HFBackend

    backend = HFBackend(spec, cache, threads=2, batch_size=8)
    yield backend
    backend.close()


def fresh(spec, cache):
    """A new (model, tokenizer) pair: peft injects adapters into the model it wraps."""
    import torch

    from bench.models.convert import load_pretrained

    return load_pretrained(spec, cache, dtype=torch.float32)


def task_prompts(backend, n: int) -> list[str]:
    """Rendered prompts of the built-in facts task: short questions, and every fourth with passages (longer)."""
    facts = load_folder(ROOT / "tasks" / "facts")
    return [backend.render(build_messages(facts, ex, passages=facts.docs[3 * i: 3 * i + 4] if i % 4 == 3 else None))
            for i, ex in enumerate(facts.test[:n])]


def reference_generate(model, tokenizer, prompt: str, max_new: int) -> str:
    """transformers' (or peft's) own greedy generate on one unpadded prompt."""
    import torch

    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def assert_batch_equals_single(backend, prompts: list[str], params: GenParams = GREEDY, sizes=(8, 64)) -> list:
    """generate_batch at each batch size (8: several batches; 64: one batch whose short and long prompts
    run in separate prefill passes joined for decoding) equals generate on each prompt alone."""
    alone = [backend.generate(p, params, seed=0) for p in prompts]
    keep = backend.batch_size
    try:
        for size in sizes:
            backend.batch_size = size
            batched = backend.generate_batch([GenRequest(p, params, seed=0) for p in prompts])
            for prompt, got, one in zip(prompts, batched, alone):
                assert got.prompt == prompt
                assert (got.output, got.completion_tokens, got.prompt_tokens, got.finish_reason) == \
                       (one.output, one.completion_tokens, one.prompt_tokens, one.finish_reason), (size, prompt[-80:])
    finally:
        backend.batch_size = keep
    return batched


# -- generation: plain model --------------------------------------------------------------------
def test_batched_greedy_equals_one_by_one_over_task_prompts(hf):
    prompts = task_prompts(hf, 30)
    lengths = [hf.count_tokens(p) for p in prompts]
    assert max(lengths) > 3 * min(lengths)  # real padding: long passages beside short questions
    unique = sorted({tuple(hf.tokenizer(p)["input_ids"]) for p in prompts}, key=len)
    assert len(hf._length_groups(unique)) > 1 and hf._shared_prefix(unique) > 0  # the paths a full batch takes
    gens = assert_batch_equals_single(hf, prompts)
    assert len({g.output for g in gens}) > 20 and all(g.output.strip() for g in gens)
    assert {g.finish_reason for g in gens} <= {"stop", "length"} and any(g.finish_reason == "stop" for g in gens)


def test_chat_template_is_the_ggufs(spec, hf):
    from bench.models.convert import gguf_chat_template

    assert hf.template.jinja == gguf_chat_template(spec.path)  # read from the conversion's record, not the GGUF
    assert hf.render([{"role": "user", "content": "Hi"}]).endswith("<|im_start|>assistant\n")


def test_greedy_equals_transformers_generate(hf):
    for prompt in task_prompts(hf, 4)[:3]:
        assert hf.generate(prompt, GREEDY, seed=0).output == reference_generate(hf.model, hf.tokenizer, prompt, 12)


def test_stop_string_cuts_and_stops_counting_in_a_batch(hf):
    prompt = hf.render([{"role": "user", "content": "List the numbers from 1 to 30, one per line."}])
    free = hf.generate(prompt, GenParams(max_new_tokens=24), seed=0)
    assert free.finish_reason == "length" and free.completion_tokens == 24 and "\n4." in free.output
    stop = GenParams(max_new_tokens=24, stop=("\n4.", "never appears"))
    long_one = hf.render([{"role": "user", "content": "Write a long story about a cat."}])
    cut, other = hf.generate_batch([GenRequest(prompt, stop), GenRequest(long_one, GenParams(max_new_tokens=24))])
    assert cut.output == free.output[: free.output.index("\n4.")] and cut.finish_reason == "stop"
    # tokens up to the one that completed the stop string, not the 24 steps the batch ran for the other sequence
    tokens = hf.tokenizer(free.output, add_special_tokens=False)["input_ids"]
    n = next(k for k in range(1, 25) if "\n4." in hf.tokenizer.decode(tokens[:k], skip_special_tokens=True))
    assert cut.completion_tokens == n < 24
    assert other.completion_tokens == 24 and other.finish_reason == "length"


def test_end_of_sequence_is_not_counted(hf):
    prompt = hf.render([{"role": "user", "content": "What is the capital of France?"}])
    g = hf.generate(prompt, GenParams(max_new_tokens=40), seed=0)
    assert g.finish_reason == "stop"
    assert g.completion_tokens == len(hf.tokenizer(g.output, add_special_tokens=False)["input_ids"])


def test_sampling_is_seeded_per_request_whatever_the_batch(hf):
    prompt = hf.render([{"role": "user", "content": "Write one word."}])
    hot = GenParams(max_new_tokens=8, temperature=1.0)
    alone = hf.generate(prompt, hot, seed=7)
    others = [GenRequest(p, hot, seed=s) for s, p in enumerate(task_prompts(hf, 4))]
    in_batch = hf.generate_batch(others[:2] + [GenRequest(prompt, hot, seed=7)] + others[2:])[2]
    assert in_batch.output == alone.output
    assert len({hf.generate(prompt, hot, seed=s).output for s in range(6)}) > 1
    # meaning of top_k / top_p: one candidate left is greedy decoding
    greedy = hf.generate(prompt, GenParams(max_new_tokens=8), seed=0).output
    assert hf.generate(prompt, GenParams(max_new_tokens=8, temperature=1.5, top_k=1), seed=3).output == greedy
    assert hf.generate(prompt, GenParams(max_new_tokens=8, temperature=1.0, top_p=1e-6), seed=4).output == greedy


def test_identical_requests_share_one_computation(hf):
    prompt = task_prompts(hf, 4)[0]
    a, b, c = hf.generate_batch([GenRequest(prompt, GREEDY, 0), GenRequest(prompt, GREEDY, 5),
                                 GenRequest(prompt, GenParams(max_new_tokens=3), 0)])
    assert a.output == b.output and a.seconds == b.seconds and a.completion_tokens == 12
    assert c.completion_tokens == 3 and a.output.startswith(c.output)


def test_prompt_that_does_not_fit_fails_alone(spec, cache, hf):
    from bench.models.hf import HFBackend

    small = HFBackend(spec, cache, model=hf.model, tokenizer=hf.tokenizer)
    small.max_positions = 40
    short, long_ = "Hi", "word " * 60
    ok, bad = small.generate_batch([GenRequest(short, GenParams(max_new_tokens=4)), GenRequest(long_, GREEDY)])
    assert ok.error is None and ok.completion_tokens > 0
    assert bad.finish_reason == "error" and "does not fit" in bad.error and bad.output == ""
    with pytest.raises(BenchError, match="does not fit"):
        small.generate(long_, GREEDY, seed=0)


# -- generation: adapters ----------------------------------------------------------------------
def test_lora_adapter_batched_equals_single_and_generate(spec, cache, hf):
    from peft import LoraConfig, TaskType, get_peft_model

    from bench.models.hf import HFBackend

    model, tok = fresh(spec, cache)
    peft_model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, init_lora_weights=False,
                                                  target_modules=["q_proj", "v_proj"]))
    backend = HFBackend(spec, cache, model=peft_model, tokenizer=tok, adapter_hash="lora-test", batch_size=8)
    prompts = task_prompts(backend, 12)
    gens = assert_batch_equals_single(backend, prompts)
    assert [g.output for g in gens] != [g.output for g in hf.generate_batch([GenRequest(p, GREEDY) for p in prompts])]
    assert gens[0].output == reference_generate(peft_model, tok, prompts[0], 12)


def trained_prompt_tuning(spec, cache):
    """A prompt-tuning adapter after two real optimizer steps on two question/answer pairs."""
    import torch
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from bench.models.convert import hf_checkpoint

    model, tok = fresh(spec, cache)
    cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=8, prompt_tuning_init="TEXT",
                             prompt_tuning_init_text="Answer with one short phrase:",
                             tokenizer_name_or_path=str(hf_checkpoint(spec, cache)))
    peft_model = get_peft_model(model, cfg)
    pairs = ["Q: Who runs the night shift? A: Ingrid Solberg", "Q: Which dock takes seafood? A: dock 4"]
    batch = tok(pairs, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    before = peft_model.get_prompt(batch_size=1).detach().clone()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=0.05)
    peft_model.train()
    for _ in range(2):
        loss = peft_model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.eval()
    assert not torch.equal(before, peft_model.get_prompt(batch_size=1).detach())
    return peft_model, tok


@pytest.fixture(scope="module")
def prompt_tuned(spec, cache):
    from bench.models.hf import HFBackend

    peft_model, tok = trained_prompt_tuning(spec, cache)
    backend = HFBackend(spec, cache, model=peft_model, tokenizer=tok, adapter_hash="pt-test", batch_size=6)
    assert (backend.virtual_kind, backend.n_virtual) == ("embedding", 8)
    return backend


def test_prompt_tuning_batched_left_padded_equals_single_and_peft_generate(prompt_tuned):
    prompts = task_prompts(prompt_tuned, 16)
    gens = assert_batch_equals_single(prompt_tuned, prompts)
    for prompt, g in list(zip(prompts, gens))[:2]:
        assert g.output == reference_generate(prompt_tuned.model, prompt_tuned.tokenizer, prompt, 12)


def test_prefix_tuning_batched_equals_single_and_peft_generate(spec, cache):
    import torch
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    from bench.models.hf import HFBackend

    torch.manual_seed(0)
    model, tok = fresh(spec, cache)
    peft_model = get_peft_model(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=6))
    with torch.no_grad():  # a small random prefix: the model still writes words, and they change
        for p in peft_model.prompt_encoder.parameters():
            p.mul_(0.05)
    backend = HFBackend(spec, cache, model=peft_model, tokenizer=tok, adapter_hash="prefix-test", batch_size=6)
    assert backend.virtual_kind == "prefix"
    prompts = task_prompts(backend, 12)
    gens = assert_batch_equals_single(backend, prompts)
    assert gens[0].output == reference_generate(peft_model, tok, prompts[0], 12)


# -- speculation in a batch's tail -----------------------------------------------------------------
def test_lookup_draft_repeats_the_latest_occurrence_into_its_own_draft():
    from bench.models.hf import _lookup_draft

    assert _lookup_draft([5, 1, 2, 3, 9, 1, 2], k=4, ngram=3, room=10) == [3, 9, 1, 2]  # after "1 2"
    assert _lookup_draft([7, 0, 0, 0], k=5, ngram=3, room=10) == [0, 0, 0, 0, 0]  # period 1 runs on
    assert _lookup_draft([1, 2, 1, 2], k=5, ngram=2, room=10) == [1, 2, 1, 2, 1]
    assert _lookup_draft([1, 2, 1, 2], k=5, ngram=2, room=3) == [1, 2]  # the pass's own token takes the last
    assert _lookup_draft([1, 2, 3], k=5, ngram=3, room=10) == []  # nothing earlier to repeat


REPETITIVE = ["Write the number 7 twenty times, separated by spaces.", "Repeat the word 'ping' again and again.",
              "Count from 1 to 40.", "List the days of the week, then list them again, three times."]


def forward_widths(backend) -> list[tuple[int, int]]:
    """(rows, tokens) of every decoding pass of the backend's model from now on."""
    seen: list[tuple[int, int]] = []
    forward = backend.base.forward

    def spy(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None:
            seen.append(tuple(ids.shape))
        return forward(*args, **kwargs)

    backend.base.forward = spy
    return seen


def test_speculative_tail_keeps_greedy_answers_in_fewer_passes(hf):
    """Drafts are fed and kept (fewer passes than tokens), and every answer equals plain one-token decoding,
    alone and in a batch whose tail speculates, and transformers' own generate."""
    params = GenParams(max_new_tokens=48)
    prompts = [hf.render([{"role": "user", "content": q}]) for q in REPETITIVE] + task_prompts(hf, 4)
    requests = [GenRequest(p, params, seed=0) for p in prompts]
    keep, hf.speculate = hf.speculate, 0
    try:
        plain = hf.generate_batch(requests)
    finally:
        hf.speculate = keep
    widths = forward_widths(hf)
    try:
        fast = hf.generate_batch(requests)
        in_batch = len(widths)
        alone = [hf.generate(p, params, seed=0) for p in prompts[:2]]
    finally:
        del hf.base.forward
    assert [(g.output, g.completion_tokens, g.finish_reason) for g in fast] == \
           [(g.output, g.completion_tokens, g.finish_reason) for g in plain]
    assert [g.output for g in alone] == [g.output for g in plain[:2]]
    assert alone[0].output == reference_generate(hf.model, hf.tokenizer, prompts[0], 48)
    assert any(rows > 1 and tokens > 1 for rows, tokens in widths[2:in_batch])  # a batch's tail fed drafts
    assert max(g.completion_tokens for g in alone) >= 20
    # one prefill and one pass per token without speculation; fewer when drafts were kept
    assert len(widths) - in_batch < sum(1 + g.completion_tokens for g in alone)


def test_speculation_keeps_prompt_tuning_answers(prompt_tuned):
    params = GenParams(max_new_tokens=32)
    requests = [GenRequest(prompt_tuned.render([{"role": "user", "content": q}]), params, seed=0) for q in REPETITIVE]
    keep, prompt_tuned.speculate = prompt_tuned.speculate, 0
    try:
        plain = prompt_tuned.generate_batch(requests)
    finally:
        prompt_tuned.speculate = keep
    assert [g.output for g in prompt_tuned.generate_batch(requests)] == [g.output for g in plain]


# -- log-likelihood ------------------------------------------------------------------------------
def hand_loglikelihood(step_logits, tokens: list[int], start: int) -> float:
    """Sum over i >= start of log_softmax(logits after tokens[:i])[tokens[i]], one forward pass per token."""
    import torch

    total = 0.0
    with torch.inference_mode():
        for i in range(start, len(tokens)):
            total += float(torch.log_softmax(step_logits(tokens[:i]).double(), -1)[tokens[i]])
    return total


CASES = [("The capital of France is", " Paris"), ("The capital of France is", " a small village near the sea"),
         ("", "Hello world"), ("2 + 2 =", " 4")]


def test_loglikelihood_equals_hand_computation(hf):
    import torch

    def step(prefix):
        return hf.model(input_ids=torch.tensor([prefix])).logits[0, -1]

    tok = hf.tokenizer
    for context, cont in CASES:
        ctx = tok(context)["input_ids"]
        lead = [] if ctx else [hf.start_token()]  # an empty context starts from BOS (else EOS)
        full = lead + tok(context + cont)["input_ids"]
        expected = hand_loglikelihood(step, full, len(lead) + len(ctx))
        assert hf.loglikelihood(context, cont) == pytest.approx(expected, abs=2e-3), (context, cont)
    # the empty context scores every continuation token: the same as a context holding only the start token
    start = tok.decode([hf.start_token()])
    assert hf.loglikelihood("", "Hello world") == pytest.approx(hf.loglikelihood(start, "Hello world"), abs=1e-4)
    assert hf.loglikelihood("The capital of France is", "") == 0.0
    many = hf.loglikelihood_choices("The capital of France is", [" Paris", " London", ""])
    one = [hf.loglikelihood("The capital of France is", c) for c in (" Paris", " London", "")]
    assert many == pytest.approx(one, abs=1e-3) and many[0] > many[1]


def test_loglikelihood_skips_prompt_tuning_virtual_tokens(prompt_tuned):
    import torch

    pm, tok = prompt_tuned.model, prompt_tuned.tokenizer
    base = pm.get_base_model()

    def step(prefix):
        embeds = torch.cat([pm.get_prompt(batch_size=1), pm.word_embeddings(torch.tensor([prefix]))], dim=1)
        return base(inputs_embeds=embeds).logits[0, -1]

    for context, cont in CASES:
        ctx = tok(context)["input_ids"]
        lead = [] if ctx else [prompt_tuned.start_token()]
        full = lead + tok(context + cont)["input_ids"]
        expected = hand_loglikelihood(step, full, len(lead) + len(ctx))
        assert prompt_tuned.loglikelihood(context, cont) == pytest.approx(expected, abs=2e-3), (context, cont)
