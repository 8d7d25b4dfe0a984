"""Batched generation on the packaged SmolLM2 GGUF: the same answers as one at a time, per-request limits,
shared prompts, failures that stay with their request, and the machine-dependent llama.cpp choices."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from bench.cpu import CpuInfo
from bench.errors import BenchError
from bench.models.llama import EXTRA_BUFTS_ENV, LlamaBackend, extra_bufts_enabled
from bench.models.serving import serving_dtype
from bench.models.resolve import resolve_model
from bench.prompts import build_messages
from bench.registry import TASKS
from bench.types import GenParams, GenRequest

AMX_XEON = CpuInfo(model="Intel Xeon", flags=frozenset({"avx2", "f16c", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}),
                   logical=2, physical=2)
EPYC = CpuInfo(model="AMD EPYC", flags=frozenset({"avx2", "f16c", "avx512f", "avx512_bf16"}), logical=2, physical=2)


# -- the machine-dependent choices (no model) -------------------------------------------------------
def test_extra_buffer_types_follow_the_cpu(monkeypatch):
    monkeypatch.delenv(EXTRA_BUFTS_ENV, raising=False)
    assert extra_bufts_enabled(AMX_XEON) is False  # the AMX buffer type crashes there
    assert extra_bufts_enabled(EPYC) is True


def test_extra_buffer_types_override(monkeypatch):
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "1")
    assert extra_bufts_enabled(AMX_XEON) is True
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "0")
    assert extra_bufts_enabled(EPYC) is False
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "yes")
    with pytest.raises(BenchError, match=EXTRA_BUFTS_ENV):
        extra_bufts_enabled(EPYC)


def test_serving_format_is_one_bench_can_export():
    from bench.types import GGUF_TYPES

    assert serving_dtype(EPYC) == serving_dtype(AMX_XEON) == "f16"
    assert serving_dtype(CpuInfo(model="old", flags=frozenset(), logical=2, physical=2)) in GGUF_TYPES


def test_auto_serves_what_this_cpu_is_given_and_an_explicit_format_as_asked(monkeypatch):
    """`serve_format: auto` follows serving_dtype() of the CPU the run is on (one decision, not two)."""
    import bench.models.serving as serving

    monkeypatch.setattr(serving, "cpu_info", lambda: CpuInfo(model="old", flags=frozenset(), logical=2, physical=2))
    assert serving.resolve_format("auto") == "q8_0"
    monkeypatch.setattr(serving, "cpu_info", lambda: EPYC)
    assert serving.resolve_format("auto") == "f16"
    assert serving.resolve_format("bf16") == "bf16" and serving.export_format("native") == "f16"


# -- real generation ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    spec = resolve_model("smollm2-135m", tmp_path_factory.mktemp("cache"))
    backend = LlamaBackend(spec, threads=2, n_ctx=1024)
    yield backend
    backend.close()


def zero_shot_prompts(backend, n: int) -> list[str]:
    """Zero-shot prompts of the built-in tasks, rendered with the model's chat template."""
    import tasks  # noqa: F401  (registers the built-in tasks)

    out = []
    for name in ("demo", "facts"):
        task = TASKS.get(name).load()
        out += [backend.render(build_messages(task, ex)) for ex in task.test]
    return out[:n]


@pytest.mark.slow
def test_batched_greedy_equals_one_at_a_time_over_50_prompts(smollm):
    params = GenParams(max_new_tokens=32, stop=smollm.template.stop)
    prompts = zero_shot_prompts(smollm, 50)
    assert len(prompts) == 50
    batched = smollm.generate_batch([GenRequest(p, params, seed=0) for p in prompts])
    single = [smollm.generate(p, params, seed=0) for p in prompts]
    for b, s in zip(batched, single):
        assert (b.output, b.completion_tokens, b.finish_reason) == (s.output, s.completion_tokens, s.finish_reason)
        assert b.prompt_tokens == s.prompt_tokens == smollm.count_tokens(b.prompt)
    assert sum(bool(g.output.strip()) for g in batched) >= 45


@pytest.mark.slow
def test_decoding_sequences_sit_on_consecutive_streams(smollm, monkeypatch):
    """llama.cpp runs each run of consecutive sequence ids (in batch order) as its own micro-batch, each
    streaming all the weights: every step that only decodes must list streams 0..n-1 in order, also while
    answers of different lengths end and free streams with no prompt left to take them."""
    backend = LlamaBackend(smollm.spec, threads=2, n_ctx=1024, max_sequences=8)
    steps: list[list[int]] = []
    decode = type(backend.decoder)._decode

    def spy(self, ctx, entries):
        if all(out for _, _, _, out in entries):  # one token per decoding sequence, no prompt chunk
            steps.append([seq for _, _, seq, _ in entries])
        return decode(self, ctx, entries)

    monkeypatch.setattr(type(backend.decoder), "_decode", spy)
    lengths = [2, 30, 5, 30, 9, 30, 3, 30, 14, 30, 6, 30, 20, 30, 4, 30, 11, 30, 8, 30]
    prompts = zero_shot_prompts(backend, len(lengths))
    try:
        gens = backend.generate_batch([GenRequest(p, GenParams(max_new_tokens=n), seed=0)
                                       for p, n in zip(prompts, lengths)])
    finally:
        backend.close()
    assert all(g.completion_tokens <= n for g, n in zip(gens, lengths))
    assert len(steps) > 20 and any(len(s) < 8 for s in steps)  # the batch thinned out as answers ended
    assert all(s == list(range(len(s))) for s in steps), [s for s in steps if s != list(range(len(s)))][:3]


@pytest.mark.slow
def test_samples_of_one_prompt_share_it_and_match_single_runs(smollm):
    prompt = smollm.render([{"role": "user", "content": "Write one word about the sea."}])
    params = GenParams(max_new_tokens=10, temperature=1.0)
    reqs = [GenRequest(prompt, params, seed=s) for s in range(5)]
    batched = smollm.generate_batch(reqs)
    assert [g.output for g in batched] == [smollm.generate(prompt, params, seed=s).output for s in range(5)]
    assert len({g.output for g in batched}) > 1  # seeded per request, not one draw copied


@pytest.mark.slow
def test_top_k_one_is_greedy_and_zero_is_off(smollm):
    prompt = smollm.render([{"role": "user", "content": "Name a fruit."}])
    greedy = smollm.generate(prompt, GenParams(max_new_tokens=8), seed=0).output
    top1 = [smollm.generate(prompt, GenParams(max_new_tokens=8, temperature=1.5, top_k=1), seed=s).output
            for s in range(3)]
    assert top1 == [greedy] * 3
    free = {smollm.generate(prompt, GenParams(max_new_tokens=8, temperature=1.5, top_k=0), seed=s).output
            for s in range(6)}
    assert len(free) > 1


@pytest.mark.slow
def test_each_request_keeps_its_own_limits(smollm):
    prompt = smollm.render([{"role": "user", "content": "List five animals, one per line."}])
    short = GenParams(max_new_tokens=3)
    one_line = GenParams(max_new_tokens=40, stop=("\n",))
    long = GenParams(max_new_tokens=40)
    a, b, c = smollm.generate_batch([GenRequest(prompt, short), GenRequest(prompt, one_line), GenRequest(prompt, long)])
    assert a.completion_tokens == 3 and a.finish_reason == "length"
    assert "\n" not in b.output and b.finish_reason == "stop"
    assert c.completion_tokens > b.completion_tokens and "\n" in c.output
    assert c.output.startswith(b.output) and c.output.startswith(a.output)  # same greedy path, cut differently


@pytest.mark.slow
def test_a_prompt_too_long_fails_alone(tmp_path):
    spec = resolve_model("smollm2-135m", tmp_path)
    backend = LlamaBackend(spec, threads=2, n_ctx=128)
    try:
        ok = backend.render([{"role": "user", "content": "Say hello."}])
        too_long = backend.render([{"role": "user", "content": "word " * 200}])
        gens = backend.generate_batch([GenRequest(ok, GenParams(max_new_tokens=4)),
                                       GenRequest(too_long, GenParams(max_new_tokens=4)),
                                       GenRequest(ok, GenParams(max_new_tokens=4))])
        assert gens[0].error is None and gens[0].completion_tokens > 0 and gens[2].output == gens[0].output
        assert gens[1].finish_reason == "error" and gens[1].output == "" and "128-token context" in gens[1].error
        with pytest.raises(BenchError, match="does not fit"):
            backend.generate(too_long, GenParams(max_new_tokens=4), seed=0)
    finally:
        backend.close()


@pytest.mark.slow
def test_seconds_are_shares_of_the_batch_wall_time(smollm):
    prompts = zero_shot_prompts(smollm, 12)
    params = GenParams(max_new_tokens=16)
    t0 = time.perf_counter()
    gens = smollm.generate_batch([GenRequest(p, params) for p in prompts])
    wall = time.perf_counter() - t0
    assert all(g.seconds > 0 for g in gens)
    assert sum(g.seconds for g in gens) == pytest.approx(wall, rel=0.05, abs=0.05)


# -- crash guard: decoding with the chosen buffer types and format, in a child process ------------------
DECODE = textwrap.dedent("""
    import sys
    from bench.models.llama import BatchDecoder, load_model
    from bench.types import GenParams, GenRequest
    model = load_model(sys.argv[1])
    dec = BatchDecoder(model, threads=2, n_ctx=256)
    reqs = [GenRequest("The capital of France is", GenParams(max_new_tokens=4))] * 2
    reqs.append(GenRequest("Water boils at", GenParams(max_new_tokens=4)))
    gens = dec.generate(reqs)
    assert all(g.completion_tokens == 4 for g in gens), gens
    print(repr(gens[0].output))
""")


def _requantize(src, out, dtype: str):
    """The packaged weights in another GGUF type, through llama.cpp's own converter (seconds, no transformers):
    the same tensor types as bench.models.convert.export_gguf writes."""
    import llama_cpp

    ftype = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
             "f32": llama_cpp.LLAMA_FTYPE_ALL_F32}[dtype]
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.allow_requantize, p.nthread = ftype, True, 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), p) == 0
    return out


@pytest.mark.slow
def test_chosen_buffer_types_and_serving_format_decode_without_crashing(tmp_path):
    spec = resolve_model("smollm2-135m", tmp_path)
    files = {"packaged Q4_1": spec.path,
             f"served {serving_dtype()}": _requantize(spec.path, tmp_path / "served.gguf", serving_dtype())}
    for what, path in files.items():
        proc = subprocess.run([sys.executable, "-c", DECODE, str(path)], check=False, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (
            f"{what}: decoding with extra buffer types {'on' if extra_bufts_enabled() else 'off'} ended with "
            f"return code {proc.returncode} (negative = killed by a signal, e.g. -11 segfault); set "
            f"{EXTRA_BUFTS_ENV}=0 on this CPU and report it\n{proc.stderr[-2000:]}")
        assert proc.stdout.strip() not in ("", "''")
