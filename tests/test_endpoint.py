"""The endpoint backend (bench.models.endpoint): models served over an OpenAI-compatible API.

Real behaviour runs against llama-cpp-python's own server on 127.0.0.1 serving the packaged SmolLM2
GGUF (slow tests): greedy answers equal the in-process llama backend's, concurrency changes nothing,
the server's tokenizer counts tokens, and a server killed mid-run loses and duplicates no row. The
error paths (429, timeouts, a server that stays down, a refused key, a wrong name) run against a tiny
scripted stub server, which tests only bench's harness logic.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.cli import main as cli_main
from bench.config import EndpointConfig, RunConfig
from bench.errors import BenchError
from bench.models.endpoint import (
    EndpointBackend,
    EndpointUnavailable,
    ScoringUnsupported,
    ServerChatTemplate,
    chat_messages,
    chat_prompt,
)
from bench.models.llama import server_command
from bench.models.resolve import resolve_model
from bench.report.costs import Ledger, price, prices_from
from bench.run.grid import run_grid
from bench.run.plan import plan
from bench.types import GenParams, GenRequest, Prices

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "BENCH_TEST_ENDPOINT_KEY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a scripted stub server (harness logic only) ----------------------------------------------------
class Stub:
    """An OpenAI-compatible stub: lists one model, answers chat and completion requests with a fixed
    text, and plays `script` (one action per generation request: "ok", a status code such as 429, or
    ("sleep", seconds)) before answering normally."""

    def __init__(self, name: str = "stub", key: str | None = None):
        self.name, self.key = name, key
        self.script: list = []
        self.requests: list[tuple[str, dict, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _authorized(self) -> bool:
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if stub.key is None or given == stub.key:
                    return True
                self._send(401, {"error": {"message": f"Incorrect API key provided: {given}", "type": "auth"}})
                return False

            def do_GET(self):
                if not self._authorized():
                    return
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": stub.name, "object": "model", "owned_by": "t"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                if not self._authorized():
                    return
                action = stub.script.pop(0) if stub.script else "ok"
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                elif action != "ok":
                    self._send(int(action), {"error": {"message": f"scripted {action}", "type": "x"}},
                               {"retry-after-ms": "20"})
                    return
                usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
                if self.path == "/v1/chat/completions":
                    text = "chat: " + body["messages"][-1]["content"][:30]
                    self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": stub.name,
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": text}}], "usage": usage})
                elif self.path == "/v1/completions" and body.get("logprobs") is not None:
                    self._send(200, stub.scored(str(body["prompt"]), bool(body.get("echo"))))
                elif self.path == "/v1/completions":
                    text = "text: " + str(body["prompt"])[-30:]
                    self._send(200, {"id": "c", "object": "text_completion", "created": 0, "model": stub.name,
                                     "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                                     "usage": usage})
                else:
                    self._send(404, {"error": {"message": "no such route"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    shift = 0  # 1: echoed log-probabilities one token off, as llama-cpp-python's server gives them without BOS

    def scored(self, prompt: str, echo: bool) -> dict:
        """Word tokens, each with log-probability -0.1 x its length; the next token is always " jumps" (-0.6 when
        generated; -3.0 as the token after an echoed prompt, so that a shifted echo gives the wrong number)."""
        import re

        words = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+", prompt)]
        lp = [-0.1 * len(w) for _, w in words] + [-3.0]
        if echo:
            lp = lp[self.shift:] + [-9.0] * self.shift
            logprobs = {"tokens": [w for _, w in words] + [" jumps"], "text_offset": [o for o, _ in words] + [len(prompt)],
                        "token_logprobs": [None] + lp[1:len(words) + 1], "top_logprobs": None}
            text = prompt + " jumps"
        else:
            logprobs = {"tokens": [" jumps"], "text_offset": [len(prompt)], "token_logprobs": [-0.6],
                        "top_logprobs": None}
            text = " jumps"
        return {"id": "c", "object": "text_completion", "created": 0, "model": self.name,
                "choices": [{"index": 0, "text": text, "finish_reason": "length", "logprobs": logprobs}],
                "usage": {"prompt_tokens": len(words), "completion_tokens": 1, "total_tokens": len(words) + 1}}

    def generations(self) -> int:
        return sum(p.endswith("completions") for p, _, _ in self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def _endpoint(url: str, **kw) -> EndpointConfig:
    return EndpointConfig(**{"base_url": url, "api_key_env": KEY_ENV, "max_concurrency": 1, "timeout_s": 5.0,
                             "max_retries": 2, **kw})


def _backend(stub: Stub, tmp_path: Path, **kw) -> EndpointBackend:
    cfg = _endpoint(stub.url, **kw)
    return EndpointBackend(resolve_model(f"openai/{stub.name}", tmp_path, cfg), cfg)


# -- prompts and identity -------------------------------------------------------------------------
def test_chat_prompt_is_canonical_and_reversible():
    a = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: café?"}]
    b = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: cafe?"}]
    assert chat_prompt(a) == chat_prompt([dict(reversed(list(m.items()))) for m in a])  # key order is irrelevant
    assert chat_prompt(a) != chat_prompt(b) and chat_messages(chat_prompt(a)) == a
    assert ServerChatTemplate().render(a) == chat_prompt(a) and ServerChatTemplate().stop == ()
    for plain in ("### Instruction:\nQ\n\n### Response:\n", '{"messages": [1, 2]}', '{"messages": []} tail'):
        assert chat_messages(plain) is None


def test_identity_includes_base_url_and_name(stub, tmp_path):
    other = Stub()
    try:
        a = resolve_model("openai/stub", tmp_path, _endpoint(stub.url))
        b = resolve_model("openai/stub", tmp_path, _endpoint(other.url))
    finally:
        other.close()
    assert a.kind == "endpoint" and a.name == "openai/stub" and a.sha256 != b.sha256
    assert stub.url in a.source and "stub" in a.source
    assert stub.generations() == 0  # resolving asks GET /models only


# -- plan-time errors: one line, exit 2 -------------------------------------------------------------
def _cli(capsys, tmp_path, *args) -> tuple[int, str]:
    code = cli_main(["run", "--task", "demo", "--strategy", "zero_shot", "--limit", "1", "--probes", "none",
                     "--out", str(tmp_path / "out"), "--no-progress", *args])
    return code, capsys.readouterr().err.strip()


def test_unreachable_server_wrong_name_and_refused_key_are_one_line_errors(capsys, tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    code, err = _cli(capsys, tmp_path, "--model", "openai/x", "--base-url", dead)
    assert code == 2 and len(err.splitlines()) == 1 and "--base-url" in err and "no server answers" in err

    s = Stub(name="served-model", key="sk-right-key-123")
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-right-key-123")
        code, err = _cli(capsys, tmp_path, "--model", "openai/served-modle", "--base-url", s.url)
        assert code == 2 and len(err.splitlines()) == 1 and "did you mean openai/served-model" in err

        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-987")
        code, err = _cli(capsys, tmp_path, "--model", "openai/served-model", "--base-url", s.url)
        assert code == 2 and len(err.splitlines()) == 1 and "OPENAI_API_KEY" in err and "401" in err
        assert "sk-wrong-key-987" not in err
        assert s.generations() == 0
    finally:
        s.close()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("rows.jsonl"))


def test_finetuning_arm_is_rejected_before_any_model_work(stub, tmp_path):
    cfg = RunConfig().replace(tasks=("demo",), strategies=("zero_shot", "lora+rag"), model="openai/stub",
                              endpoint=_endpoint(stub.url), out=str(tmp_path))
    with pytest.raises(BenchError, match=r"^strategy lora\+rag needs local weights; model openai/stub is served by an endpoint"):
        plan(cfg)
    with pytest.raises(BenchError, match="--backend llama"):
        plan(cfg.replace(strategies=("zero_shot",), backend="llama"))
    assert stub.generations() == 0
    assert plan(cfg.replace(strategies=("zero_shot", "rag"))).model.kind == "endpoint"


# -- retries, timeouts, a server that stays down --------------------------------------------------
def test_429_and_5xx_are_retried(stub, tmp_path):
    b = _backend(stub, tmp_path)
    before = stub.generations()
    stub.script = [429, 503, "ok"]
    g = b.generate("### Instruction:\nhi\n\n### Response:\n", GenParams(max_new_tokens=8), seed=3)
    assert g.output.startswith("text: ") and g.prompt_tokens == 11 and g.completion_tokens == 3
    assert stub.generations() - before == 3
    body = stub.requests[-1][1]
    assert body["seed"] == 3 and body["max_tokens"] == 8 and body["temperature"] == 0.0


def test_timeout_is_retried(stub, tmp_path):
    b = _backend(stub, tmp_path, timeout_s=0.5)
    before = stub.generations()
    stub.script = [("sleep", 1.5)]
    g = b.generate(chat_prompt([{"role": "user", "content": "hello"}]), GenParams(), seed=0)
    assert g.output == "chat: hello" and stub.generations() - before == 2


def test_server_that_stays_down_fails_the_call_then_fails_fast(stub, tmp_path):
    b = _backend(stub, tmp_path, max_retries=1)
    stub.script = [503] * 10
    with pytest.raises(EndpointUnavailable, match="HTTP 503 in 2 tries.*rerun"):
        b.generate("prompt", GenParams(), seed=0)
    seen = stub.generations()
    with pytest.raises(EndpointUnavailable):
        b.generate_batch([GenRequest("another", GenParams())])
    assert stub.generations() == seen  # no request once the server was found down
    assert not issubclass(EndpointUnavailable, BenchError)  # the cell fails unwritten, never scored as failed answers


def test_rejected_request_fails_alone_and_concurrency_keeps_order(stub, tmp_path):
    b = _backend(stub, tmp_path, max_concurrency=3)
    stub.script = ["ok", 400]
    reqs = [GenRequest(f"prompt number {i}", GenParams(stop=("zz",)), seed=i) for i in range(8)]
    gens = b.generate_batch(reqs)
    errors = [g for g in gens if g.error]
    assert len(errors) == 1 and "rejected" in errors[0].error and errors[0].finish_reason == "error"
    assert [g.prompt for g in gens] == [r.prompt for r in reqs]
    assert all(g.output == "text: " + r.prompt[-30:] for g, r in zip(gens, reqs) if not g.error)


def test_loglikelihood_from_echoed_logprobs_after_an_alignment_check(stub, tmp_path):
    b = _backend(stub, tmp_path)
    assert b.loglikelihood("The capital of France is", " Paris") == pytest.approx(-0.6)  # " Paris": 6 characters
    assert b.loglikelihood("Q:", " two words") == pytest.approx(-0.4 - 0.6)
    shifted = Stub()
    shifted.shift = 1
    try:
        with pytest.raises(ScoringUnsupported, match="shifted by a token"):
            _backend(shifted, tmp_path).loglikelihood("The capital of France is", " Paris")
    finally:
        shifted.close()


def test_key_is_sent_but_never_stored(tmp_path, monkeypatch):
    key = "sk-secret-bench-000111"
    s = Stub(name="m", key=key)
    monkeypatch.setenv(KEY_ENV, key)
    try:
        cfg = RunConfig().replace(tasks=("demo",), strategies=("zero_shot",), model="openai/m", limit=2,
                                  probes="none", endpoint=_endpoint(s.url), out=str(tmp_path / "out"))
        res = run_grid(cfg, progress=False, log=lambda m: None)
    finally:
        s.close()
    assert not res.cells_failed and res.rows
    assert all(h.get("authorization") == f"Bearer {key}" for _, _, h in s.requests)
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".md", ".txt"):
            assert key not in f.read_text(encoding="utf-8"), f
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert s.url in manifest["model"]["source"] and manifest["config"]["endpoint"]["api_key_env"] == KEY_ENV
    cell = next((res.run_dir / "cells").iterdir())
    gens = [json.loads(line) for line in (cell / "generations.jsonl").read_text().splitlines()]
    assert gens and all(g["prompt_tokens"] == 11 and g["completion_tokens"] == 3 for g in gens)  # from usage
    assert chat_messages(gens[0]["prompt"])  # a chat model gets its messages, not bench's rendering


def test_token_prices_per_model():
    prices = Prices(per_1k_tokens=0.5, per_1k_prompt_tokens=1.0,
                    models={"openai/big": {"per_1k_prompt_tokens": 10.0, "per_1k_completion_tokens": 30.0}})
    led = Ledger(latency_mean_s=1.0, prompt_tokens=200.0, completion_tokens=100.0)
    manifest = {"config": {"prices": RunConfig(prices=prices).to_dict()["prices"]},
                "model": {"name": "openai/big", "kind": "endpoint"}}
    money = price(led, prices_from(manifest))
    assert money.per_query == pytest.approx(0.2 * 10.0 + 0.1 * 30.0)  # served: tokens only, no machine-hours
    local = {"config": manifest["config"], "model": {"name": "smollm2-135m", "kind": "gguf"}}
    money = price(led, prices_from(local))
    assert money.per_query == pytest.approx(1.0 * 0.05 / 3600 + 0.2 * 1.0 + 0.1 * 0.5)
    with pytest.raises(BenchError, match="prices.models"):
        Prices(models={"x": {"per_1k_prompt": 1.0}})


# -- a real server: llama-cpp-python's, serving the packaged SmolLM2 --------------------------------
# The server is llama_cpp.server's own main, started like `python -m llama_cpp.server`, with the two
# choices the in-process decoder makes (bench.models.llama) so that like is compared with like:
# flash attention on, and llama.cpp's extra buffer types as extra_bufts_enabled() decides (they
# crash llama.cpp on AMX CPUs; the plain command line has no switch for them).
PROMPTS = [
    "What is the capital of France?", "Name three primary colors.", "Write a haiku about rain.",
    "What is 12 times 7?", "Who wrote Hamlet?", "Explain photosynthesis in one sentence.",
    "Give a synonym for happy.", "What is the boiling point of water in Celsius?", "Translate 'thank you' into Spanish.",
    "List two planets of the solar system.", "What does a thermometer measure?", "Complete: an apple a day ...",
    "What is the opposite of cold?", "How many legs does a spider have?", "What color is the sky on a clear day?",
    "Name a mammal that lives in the sea.", "What is the plural of mouse?", "Which is larger, 9 or 11?",
    "What language is spoken in Brazil?", "Summarize: the cat sat on the mat.",
]
GREEDY = GenParams(max_new_tokens=16)


class LlamaServer:
    """llama-cpp-python's server on a free port of 127.0.0.1, started and killed by the test."""

    def __init__(self, log: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        gguf = resolve_model("smollm2-135m", log.parent).path
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                server_command(str(gguf), self.port, threads=1), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=2).read()
                return
            except OSError:
                time.sleep(0.5)
        self.kill()
        raise RuntimeError("llama_cpp.server did not start in 90 s")

    def completions_served(self) -> int:
        return self.log.read_text(errors="replace").count("completions HTTP/1.1\" 200")

    def kill(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = LlamaServer(tmp_path_factory.mktemp("server") / "server.log")
    yield s
    s.kill()


@pytest.fixture(scope="module")
def in_process(server, tmp_path_factory):
    """The in-process llama backend's greedy answers to PROMPTS (rendered with SmolLM2's template)."""
    from bench.models.llama import LlamaBackend

    local = LlamaBackend(resolve_model("smollm2-135m", tmp_path_factory.mktemp("cache")), threads=1)
    try:
        prompts = [local.render([{"role": "user", "content": q}]) for q in PROMPTS]
        counts = [local.count_tokens(p) for p in prompts[:3]]
        return prompts, [local.generate(p, GREEDY, seed=0).output for p in prompts], counts
    finally:
        local.close()


def _served(server, tmp_path, **kw) -> EndpointBackend:
    cfg = _endpoint(server.url, timeout_s=60.0, **kw)
    return EndpointBackend(resolve_model("openai/smollm2", tmp_path, cfg), cfg)


@pytest.mark.slow
def test_greedy_answers_equal_the_in_process_backend(server, in_process, tmp_path):
    prompts, expected, counts = in_process
    b = _served(server, tmp_path)
    assert b.template.is_chat  # llama.cpp's server chats with SmolLM2 ...
    got = [b.generate(p, GREEDY, seed=0).output for p in prompts]  # ... and completes bench's own prompt strings
    assert got == expected
    assert sum(len(g) > 0 for g in got) >= 18
    assert [b.count_tokens(p) for p in prompts[:3]] == counts and b.token_counter == "server /extras/tokenize/count"


@pytest.mark.slow
def test_concurrency_gives_the_same_answers(server, in_process, tmp_path):
    prompts, expected, _ = in_process
    b = _served(server, tmp_path, max_concurrency=4)
    gens = b.generate_batch([GenRequest(p, GREEDY, seed=0) for p in prompts])
    assert [g.output for g in gens] == expected and not any(g.error for g in gens)
    assert all(g.prompt_tokens > 10 and g.completion_tokens > 0 for g in gens)


@pytest.mark.slow
def test_misaligned_prompt_logprobs_are_refused(server, tmp_path):
    b = _served(server, tmp_path)
    with pytest.raises(ScoringUnsupported, match="shifted by a token"):
        b.loglikelihood("The capital of France is", " Paris")
    assert isinstance(ScoringUnsupported("x"), NotImplementedError)


def _comparable(rows):
    return sorted(json.dumps({k: v for k, v in r.items()}, sort_keys=True) for r in rows
                  if r["metric"] != "latency_p50_s")


@pytest.mark.slow
def test_server_killed_mid_run_then_resumed_gives_the_rows_of_an_uninterrupted_run(tmp_path):
    mortal = LlamaServer(tmp_path / "mortal.log")

    def config(out: Path) -> RunConfig:
        return RunConfig().replace(tasks=("demo",), strategies=("zero_shot",), seeds=(0, 1), limit=6, probes="none",
                                   model="openai/smollm2", endpoint=_endpoint(mortal.url, max_retries=1, timeout_s=60.0),
                                   out=str(out), generation=GenParams(max_new_tokens=16))

    try:
        whole = run_grid(config(tmp_path / "whole"), progress=False, log=lambda m: None)
        assert not whole.cells_failed and whole.cells_total == 2
        served = mortal.completions_served()
        killed = threading.Event()

        def kill_in_second_cell():  # the backend's probe request, six answers of seed 0, then two of seed 1
            while mortal.completions_served() < served + 1 + 6 + 2 and mortal.proc.poll() is None:
                time.sleep(0.05)
            mortal.kill()
            killed.set()

        threading.Thread(target=kill_in_second_cell, daemon=True).start()
        cut = run_grid(config(tmp_path / "cut"), progress=False, log=lambda m: None)
    finally:
        mortal.kill()
    assert killed.is_set() and cut.cells_total == 2
    assert len(cut.cells_failed) == 1 and cut.cells_failed[0].endswith("__s1")  # stopped cleanly, left unwritten
    error = (cut.run_dir / "cells" / cut.cells_failed[0] / "error.txt").read_text()
    assert "EndpointUnavailable" in error and "rerun" in error
    assert {r["seed"] for r in cut.rows} == {0}

    mortal = LlamaServer(tmp_path / "mortal.log", port=mortal.port)  # the server is back on the same URL
    try:
        resumed = run_grid(config(tmp_path / "cut"), progress=False, log=lambda m: None)
    finally:
        mortal.kill()
    assert not resumed.cells_failed and resumed.cells_reused == 1 and resumed.model_calls <= 6
    assert _comparable(resumed.rows) == _comparable(whole.rows)
    keys = [(r["task"], r["strategy"], r["seed"], r["metric"]) for r in resumed.rows]
    assert len(keys) == len(set(keys)) and {r["seed"] for r in resumed.rows} == {0, 1}
