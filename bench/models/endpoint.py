"""Models served over an OpenAI-compatible HTTP API: vLLM, SGLang, TGI, llama.cpp's server, ollama, a hosted API.

`--model openai/NAME --base-url URL` (config `model: openai/NAME`, `endpoint: {...}`) generates through
the official `openai` client instead of loading weights. Prompting and retrieval arms run on such a
model; fine-tuning needs local weights and is rejected when the run is planned.

Which API. bench does not know the template a server applies to chat messages (the server has it,
bench only has a name), so a chat model is asked through `/v1/chat/completions` with the messages
themselves: the "prompt" of a chat request is the canonical JSON of its messages (`chat_prompt`),
which is what the generation cache keys on and what generations.jsonl records. A prompt that is not
such JSON (the plain completion form, or a model whose server offers no chat) goes to
`/v1/completions` as it is. Whether the server chats with the model is asked once, when the backend
is made (a one-token chat request); a server that refuses (a base model without a chat template on
vLLM, a completion-only hosted model) gets bench's plain completion template, as local base models do.

Identity. The model part of every cache key is the hash of the base URL, the served name and, when
the server reports one (vLLM's `root`), the weights it serves: a different server is a different
model. bench cannot see the weights behind a name, so a server that swaps them under the same name and
URL must get a new cache folder (`cache_dir`).

Errors. The key is read from the environment variable `endpoint.api_key_env` and is never written
anywhere (error texts have it masked). `check_served` runs when the model is resolved (plan time):
an unreachable server, a refused key or an unknown model name is a one-line BenchError naming the
option, before any cell runs. The client retries 408/409/429/5xx, timeouts and dropped connections
`max_retries` times with exponential backoff (honouring Retry-After); a request the server rejects
(400: e.g. a prompt longer than its context) fails alone, counted like any failed answer; a server
that stays down raises `EndpointUnavailable`, which fails the cell without writing it, so the next run
resumes from the generation cache with nothing lost or duplicated.

Tokens. Counts for the cost ledger come from each response's `usage`. `count_tokens` asks the
server's tokenizer (llama-cpp-python's `/extras/tokenize/count`, llama.cpp's and vLLM's `/tokenize`)
and falls back to an estimate of 4 characters a token, which `token_counter` then says.

Scoring continuations (`loglikelihood`, for the forgetting probes) uses `/v1/completions` with
`echo` and `logprobs`, after checking once that the echoed log-probabilities line up with generated
ones (llama-cpp-python 0.3's server shifts them by one token for models without a BOS token); a
server that cannot, raises `ScoringUnsupported`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from bench.config import EndpointConfig
from bench.errors import BenchError
from bench.models.backend import Backend
from bench.models.chat import ChatTemplate
from bench.types import Generation, GenParams, GenRequest

if TYPE_CHECKING:
    from bench.models.resolve import ModelSpec

PREFIX = "openai/"  # --model openai/NAME: NAME as the server lists it
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # when endpoint.base_url is not set: the hosted OpenAI API
NO_KEY = "none"  # local servers take any key, and the client insists on one
CHARS_PER_TOKEN = 4  # the estimate when the server has no tokenizer endpoint
ALIGNMENT_TEXT = "The quick brown fox jumps over the lazy dog. The quick brown fox"
ALIGNMENT_TOLERANCE = 0.05  # nats between an echoed log-probability and the generated one
# Sent where the server takes it: llama.cpp-family servers default to a 1.1 repetition penalty, which
# bench's decoding (GenParams: greedy means argmax) does not have; vLLM ignores the field.
NEUTRAL_SAMPLING = {"repeat_penalty": 1.0}


class EndpointUnavailable(RuntimeError):
    """The server stopped answering (down, overloaded past the retries, or refusing the key mid-run).

    Deliberately not a BenchError: the runner counts a BenchError of one request as that item's failed
    answer and writes the cell, but a dead server is no answer of the model; this fails the whole cell
    unwritten, and the next run resumes it from the generation cache.
    """


class ScoringUnsupported(BenchError, NotImplementedError):
    """The server cannot score a continuation (no echo/logprobs, or misaligned ones): probes skip the model."""


# -- names, URLs and prompts -------------------------------------------------------------------------
def is_endpoint(word: str) -> bool:
    """Whether a --model word names a served model (openai/NAME)."""
    return word.startswith(PREFIX) and len(word) > len(PREFIX)


def normalize_base_url(url: Optional[str]) -> str:
    """The base URL as identity and client use it: the OpenAI default when unset, no trailing slash."""
    url = (url or DEFAULT_BASE_URL).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BenchError(f"--base-url {url!r}: not an http(s) URL; pass e.g. http://127.0.0.1:8000/v1")
    return url.rstrip("/")


def display_url(url: str) -> str:
    """The URL without any user:password part (for messages and manifests)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def server_root(base_url: str) -> str:
    """Where servers put their extra routes (tokenizers): the base URL without its trailing /v1."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def chat_prompt(messages: Sequence[dict]) -> str:
    """The canonical text of a chat request: what the cache keys on and generations.jsonl records."""
    msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    return json.dumps({"messages": msgs}, ensure_ascii=False, sort_keys=True)


def chat_messages(prompt: str) -> Optional[list[dict]]:
    """The messages of a `chat_prompt`, or None for a plain completion prompt."""
    if not prompt.startswith('{"messages": ['):
        return None
    try:
        obj = json.loads(prompt)
    except ValueError:
        return None
    msgs = obj.get("messages") if isinstance(obj, dict) and len(obj) == 1 else None
    if not isinstance(msgs, list) or not all(isinstance(m, dict) and set(m) == {"role", "content"} for m in msgs):
        return None
    return msgs


@dataclass(frozen=True)
class ServerChatTemplate(ChatTemplate):
    """The server's own chat template: bench sends the messages and the server renders them."""

    @property
    def is_chat(self) -> bool:
        return True

    def render(self, messages: list[dict]) -> str:
        return chat_prompt(messages)


# -- the client ----------------------------------------------------------------------------------------
def api_key(endpoint: EndpointConfig) -> Optional[str]:
    """The key from the environment variable the config names (None when it is not set)."""
    return os.environ.get(endpoint.api_key_env) or None


def make_client(endpoint: EndpointConfig, max_retries: Optional[int] = None):
    """An `openai.OpenAI` client for the endpoint, with its timeout and retries."""
    from openai import OpenAI

    return OpenAI(base_url=normalize_base_url(endpoint.base_url), api_key=api_key(endpoint) or NO_KEY,
                  timeout=endpoint.timeout_s, max_retries=endpoint.max_retries if max_retries is None else max_retries)


def _redact(text: str, key: Optional[str]) -> str:
    text = " ".join(str(text).split())
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return text[:300]


@dataclass(frozen=True)
class Served:
    """What the server says about a model name: the base URL it answers on and, if it tells, the weights."""

    name: str
    base_url: str
    root: Optional[str] = None  # vLLM's path or hub id of the weights behind the name


def check_served(name: str, endpoint: EndpointConfig) -> Served:
    """Ask the server which models it serves (GET /models); BenchError naming the option if it cannot say
    `name`. Runs when the model is resolved, before any cell (plan time)."""
    import openai

    url = normalize_base_url(endpoint.base_url)
    where, key = display_url(url), api_key(endpoint)
    client = make_client(endpoint, max_retries=min(endpoint.max_retries, 2))
    try:
        listed = list(client.models.list())
    except openai.AuthenticationError:
        fix = (f"set the environment variable {endpoint.api_key_env} (endpoint.api_key_env) to a valid key" if key else
               f"the environment variable {endpoint.api_key_env} (endpoint.api_key_env) is not set; export the key there")
        raise BenchError(f"--base-url {where}: the server refused the API key (401); {fix}") from None
    except openai.PermissionDeniedError:
        raise BenchError(f"--base-url {where}: the key in {endpoint.api_key_env} may not list models (403); "
                         "use a key with access to the model") from None
    except openai.NotFoundError:
        raise BenchError(f"--base-url {where}: no OpenAI API there (GET /models is 404); the URL usually ends in /v1, "
                         "e.g. http://127.0.0.1:8000/v1") from None
    except (openai.APIConnectionError, openai.APITimeoutError) as e:
        raise BenchError(f"--base-url {where}: no server answers ({_redact(type(e).__name__, key)}); start the "
                         "server or fix the URL (config endpoint.base_url)") from None
    except openai.APIStatusError as e:
        raise BenchError(f"--base-url {where}: GET /models failed with HTTP {e.status_code} "
                         f"({_redact(e.message, key)}); check the server's log") from None
    finally:
        client.close()
    ids = [m.id for m in listed]
    if ids and name not in ids:
        close = difflib.get_close_matches(name, ids, n=1)
        hint = f"did you mean openai/{close[0]}? " if close else ""
        shown = ", ".join(ids[:8]) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")
        raise BenchError(f"--model {PREFIX}{name}: the server at {where} does not serve {name!r}; {hint}"
                         f"it serves {shown}")
    entry = next((m for m in listed if m.id == name), None)
    root = getattr(entry, "root", None) if entry is not None else None
    return Served(name, url, str(root) if root else None)


# -- the backend ---------------------------------------------------------------------------------------
class EndpointBackend(Backend):
    """Generation through an OpenAI-compatible server (see the module docstring)."""

    name = "endpoint"

    def __init__(self, spec: "ModelSpec", endpoint: EndpointConfig, chat: Optional[bool] = None):
        """chat: None = ask the server (a one-token chat request); True/False = chat or plain completion prompts."""
        if spec.kind != "endpoint" or not spec.base_url:
            raise BenchError(f"backend endpoint needs a model served by an endpoint (--model {PREFIX}NAME); "
                             f"{spec.name} is a {spec.kind} model")
        self.spec = spec
        self.served_name = spec.name[len(PREFIX):]
        self.endpoint = endpoint
        self.chunk = endpoint.max_concurrency  # CellContext caches after each chunk: a dead server loses at most one
        self.base_url = spec.base_url
        self._key = api_key(endpoint)
        self.client = make_client(endpoint)
        self._down: Optional[str] = None  # set when the server stopped answering: later calls fail at once
        self._lock = threading.Lock()
        self._tokenizer: Optional[Callable[[str], int]] = None
        self.token_counter = "unknown"  # which tokenizer count_tokens used: a server route, or the estimate
        self._scoring: Optional[str] = None  # "ok" or why the server cannot score continuations
        chat, self.extra_body = self._probe(chat)
        template = ServerChatTemplate() if chat else ChatTemplate()
        super().__init__(spec.sha256, template)

    # -- requests ----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one request (the client retries); its error as a per-request BenchError or EndpointUnavailable."""
        import openai

        if self._down:
            raise EndpointUnavailable(self._down)
        try:
            return fn()
        except openai.APIError as e:
            raise self._failure(what, e) from None

    def _failure(self, what: str, e: Exception) -> Exception:
        """A rejected request (400/422) is that request's BenchError; anything else means the server is down
        for this run: EndpointUnavailable, and later calls fail at once."""
        import openai

        where = f"endpoint {display_url(self.base_url)} ({PREFIX}{self.served_name})"
        tries = self.endpoint.max_retries + 1
        message = _redact(getattr(e, "message", None) or str(e) or type(e).__name__, self._key)
        if isinstance(e, (openai.BadRequestError, openai.UnprocessableEntityError)):
            return BenchError(f"{where} rejected the {what} request: {message}")
        if isinstance(e, openai.AuthenticationError):
            reason = f"refused the key in {self.endpoint.api_key_env} (401); set a valid key"
        elif isinstance(e, openai.PermissionDeniedError):
            reason = f"refused the key in {self.endpoint.api_key_env} access to the model (403)"
        elif isinstance(e, openai.NotFoundError):
            reason = f"no longer serves {self.served_name!r} (404); check the server"
        elif isinstance(e, openai.RateLimitError):
            reason = (f"was still rate-limited after {tries} tries (429); lower endpoint.max_concurrency or raise "
                      "endpoint.max_retries")
        elif isinstance(e, openai.APITimeoutError):
            reason = (f"did not answer within endpoint.timeout_s={self.endpoint.timeout_s:g}s in {tries} tries; "
                      "raise endpoint.timeout_s or check the server")
        elif isinstance(e, openai.APIConnectionError):
            reason = f"could not be reached in {tries} tries; restart it"
        elif isinstance(e, openai.APIStatusError):
            reason = f"answered HTTP {e.status_code} in {tries} tries ({message}); check its log"
        else:
            reason = f"failed ({message})"
        text = f"{where} {reason}, then rerun: finished generations are cached and the run resumes from them"
        with self._lock:
            self._down = self._down or text
        return EndpointUnavailable(text)

    def _sampling(self, params: GenParams, seed: int) -> dict:
        kw: dict[str, Any] = {"model": self.served_name, "max_tokens": params.max_new_tokens,
                              "temperature": params.temperature, "top_p": params.top_p, "seed": seed}
        if params.stop:
            kw["stop"] = list(params.stop)
        extra = dict(self.extra_body)
        if params.top_k > 0 and params.temperature > 0:
            extra["top_k"] = params.top_k  # not in the OpenAI API; vLLM, llama.cpp and SGLang take it
        if extra:
            kw["extra_body"] = extra
        return kw

    def generate(self, prompt: str, params: GenParams, seed: int) -> Generation:
        messages = chat_messages(prompt)
        kw = self._sampling(params, seed)
        t0 = time.perf_counter()
        if messages is not None:
            resp = self._call("chat", lambda: self.client.chat.completions.create(messages=messages, **kw))
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            resp = self._call("completion", lambda: self.client.completions.create(prompt=prompt, **kw))
            choice = resp.choices[0]
            text = choice.text or ""
        seconds = time.perf_counter() - t0
        text, cut = _cut_at_stop(text, params.stop)
        usage = resp.usage
        prompt_tokens = int(usage.prompt_tokens) if usage and usage.prompt_tokens is not None else self.count_tokens(prompt)
        completion_tokens = (int(usage.completion_tokens) if usage and usage.completion_tokens is not None
                             else self.count_tokens(text))
        finish = "stop" if cut else str(choice.finish_reason or "")
        return Generation(prompt=prompt, output=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          seconds=seconds, finish_reason=finish)

    def generate_batch(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Every request, in order, with up to endpoint.max_concurrency in flight. A request the server rejects
        fails alone (Generation.error); a server that stops answering fails the batch (EndpointUnavailable)."""
        workers = min(self.endpoint.max_concurrency, len(requests))
        if workers <= 1:
            return super().generate_batch(requests)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-endpoint") as pool:
            futures = [pool.submit(self._one, r) for r in requests]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    for g in futures:
                        g.cancel()
                    raise f.exception()
            return [f.result() for f in futures]

    def _one(self, r: GenRequest) -> Generation:
        try:
            return self.generate(r.prompt, r.params, r.seed)
        except EndpointUnavailable:
            raise
        except BenchError as e:
            return Generation(prompt=r.prompt, output="", prompt_tokens=0, completion_tokens=0, seconds=0.0,
                              finish_reason="error", error=str(e))

    def _probe(self, chat: Optional[bool]) -> tuple[bool, dict]:
        """(chat or plain completion prompts, extra request fields) from one-token requests: chat unless the
        server refuses it for this model, and NEUTRAL_SAMPLING where the server takes it."""
        import openai

        if self._down:
            raise EndpointUnavailable(self._down)
        kinds = ("chat", "completion") if chat is None else (("chat",) if chat else ("completion",))
        for kind in kinds:
            for extra in (NEUTRAL_SAMPLING, {}):
                try:
                    if kind == "chat":
                        self.client.chat.completions.create(model=self.served_name, max_tokens=1, temperature=0.0,
                                                            messages=[{"role": "user", "content": "Hello"}],
                                                            extra_body=extra or None)
                    else:
                        self.client.completions.create(model=self.served_name, prompt="Hello", max_tokens=1,
                                                       temperature=0.0, extra_body=extra or None)
                except (openai.BadRequestError, openai.UnprocessableEntityError):
                    continue  # the extra field, or (without it) the kind of request, is refused
                except openai.NotFoundError as e:
                    if kind == "chat":
                        break  # a completion-only model
                    raise self._failure(kind, e) from None
                except openai.APIError as e:
                    raise self._failure(kind, e) from None
                return kind == "chat", dict(extra)
        raise self._failure("any", RuntimeError(f"the server refuses both chat and completion requests for "
                                                f"{self.served_name!r}"))

    # -- tokens ------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's tokenizer when it has a route for it, else an estimate."""
        if self._tokenizer is None:
            self._tokenizer = self._find_tokenizer()
        return self._tokenizer(text)

    def _find_tokenizer(self) -> Callable[[str], int]:
        import openai

        root = server_root(self.base_url)
        quick = self.client.with_options(max_retries=0)
        routes = (  # (route, body, how to read the count): llama-cpp-python, then llama.cpp's and vLLM's /tokenize
            ("/extras/tokenize/count", lambda t: {"input": t, "model": self.served_name}, lambda d: d["count"]),
            ("/tokenize", lambda t: {"content": t, "prompt": t, "model": self.served_name, "add_special": False,
                                     "add_special_tokens": False},
             lambda d: d["count"] if "count" in d else len(d["tokens"])),
        )
        for route, body, read in routes:
            def count(text: str, route=route, body=body, read=read) -> int:
                return int(read(self._call("tokenize", lambda: self.client.post(root + route, body=body(text),
                                                                                 cast_to=object))))
            try:
                read(quick.post(root + route, body=body("Hello world"), cast_to=object))
            except (openai.APIStatusError, ValueError, KeyError, TypeError):
                continue  # no such route on this server
            except openai.APIError as e:
                raise self._failure("tokenize", e) from None
            self.token_counter = f"server {route}"
            return count
        self.token_counter = f"estimate: {CHARS_PER_TOKEN} characters a token (the server has no tokenizer route)"
        return lambda text: max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0

    # -- scoring continuations ---------------------------------------------------------------------
    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of log-probabilities of `continuation` after `context`, from the server's echoed prompt
        log-probabilities (the tokens that start inside the continuation; the first token has none)."""
        if self._scoring is None:
            self._scoring = self._check_scoring()
        if self._scoring != "ok":
            raise ScoringUnsupported(self._scoring)
        start, end = len(context), len(context) + len(continuation)
        offsets, logprobs = self._echo(context + continuation)
        picked = [lp for off, lp in zip(offsets, logprobs) if start <= off < end and lp is not None]
        if not picked:
            raise BenchError(f"endpoint {self.served_name}: no scored token inside the continuation {continuation[:40]!r}")
        return float(sum(picked))

    def _echo(self, text: str) -> tuple[list[int], list[Optional[float]]]:
        resp = self._call("echo", lambda: self.client.completions.create(
            model=self.served_name, prompt=text, max_tokens=1, temperature=0.0, echo=True, logprobs=1))
        lp = resp.choices[0].logprobs
        if lp is None or not lp.text_offset or lp.token_logprobs is None:
            raise ScoringUnsupported(f"endpoint {self.served_name}: the server returns no prompt log-probabilities "
                                     "(echo + logprobs); probes cannot score this model")
        return list(lp.text_offset), list(lp.token_logprobs)

    def _check_scoring(self) -> str:
        """"ok" when echoed prompt log-probabilities match a generated token's; else why not."""
        who = f"endpoint {display_url(self.base_url)} ({PREFIX}{self.served_name})"
        try:
            gen = self._call("logprobs", lambda: self.client.completions.create(
                model=self.served_name, prompt=ALIGNMENT_TEXT, max_tokens=1, temperature=0.0, logprobs=1))
            choice = gen.choices[0]
            if choice.logprobs is None or not choice.logprobs.token_logprobs or not choice.text:
                return f"{who} returns no log-probabilities; probes cannot score this model"
            token, want = choice.text, choice.logprobs.token_logprobs[0]
            offsets, logprobs = self._echo(ALIGNMENT_TEXT + token)
        except ScoringUnsupported as e:
            return str(e)
        except BenchError as e:
            return f"{who} cannot echo prompt log-probabilities ({e}); probes cannot score this model"
        got = [lp for off, lp in zip(offsets, logprobs) if off == len(ALIGNMENT_TEXT)]
        if not got or got[0] is None or want is None:
            return f"{who}: cannot line up echoed tokens with a generated one; probes cannot score this model"
        if abs(got[0] - want) > ALIGNMENT_TOLERANCE:
            return (f"{who} echoes prompt log-probabilities that do not match generated ones ({got[0]:.3f} vs "
                    f"{want:.3f}: shifted by a token, as llama-cpp-python's server does for models without BOS); "
                    "probes cannot score this model")
        return "ok"

    def close(self) -> None:
        self.client.close()


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first stop string (servers differ in whether they cut it), and whether one was found."""
    at = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:at], True) if at >= 0 else (text, False)
