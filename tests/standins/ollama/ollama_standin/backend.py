"""Model runtimes behind a small interface: llama.cpp for real GGUF models, a deterministic one
for the stand-in's built-in catalog models (GGUF files without tensors, nothing to run).

The HTTP layer owns everything that does not depend on the runtime: queueing, keep_alive,
``num_predict``, ``stop`` sequences, counters and durations. A runtime only loads a model and
yields pieces of text as it samples them; its iterators may block (they run in a worker thread).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import gguf

_VOCAB = [
    "edge",
    "alpha",
    "beta",
    "gamma",
    "delta",
    "signal",
    "model",
    "token",
    "stream",
    "sky",
    "blue",
    "light",
    "river",
    "stone",
    "cloud",
    "quiet",
    "bright",
    "swift",
    "gentle",
    "steady",
    "amber",
    "silver",
    "north",
    "south",
    "east",
    "west",
    "answer",
    "question",
    "because",
    "therefore",
    "maybe",
    "always",
    "often",
    "rarely",
    "inference",
    "appliance",
    "gateway",
]


class BackendError(RuntimeError):
    """A model cannot be loaded or run; answered as HTTP 500 with this message."""


@dataclass(frozen=True)
class Prompt:
    """The text to continue: the request rendered through the model's template (prompt.py), or
    a raw prompt as given. A runtime tokenizes it as Ollama's runner does: the model's BOS token
    first (when its tokenizer adds one) and special tokens in the text parsed as such."""

    text: str


@dataclass(frozen=True)
class Completion:
    """A piece of sampled text and how many tokens it stands for.

    ``prompt_tokens`` is set on the first piece (the prompt is evaluated before it).
    A runtime stops on its own only at an end-of-generation token or a full context
    (``done_reason`` "stop" or "length"); the HTTP layer stops it earlier by closing the iterator.
    """

    text: str
    tokens: int = 1
    prompt_tokens: int | None = None
    done_reason: str | None = None


class ModelRunner(Protocol):
    """One loaded context of a model; serves one request at a time."""

    memory_bytes: int

    def generate(self, prompt: Prompt, options: Mapping[str, Any]) -> Iterator[Completion]: ...

    def close(self) -> None: ...


class GenerationBackend(Protocol):
    """Loads models (blocking; called in a worker thread)."""

    def load(self, path: Path, num_ctx: int, options: Mapping[str, Any]) -> ModelRunner: ...


@dataclass
class DeterministicRunner:
    """A catalog model without weights: 12-27 words chosen by sha256 of (model, prompt)."""

    model_digest: str
    memory_bytes: int = 0
    closed: bool = field(default=False, repr=False)

    def reply_tokens(self, prompt: str) -> list[str]:
        seed = hashlib.sha256(f"{self.model_digest}\n{prompt}".encode()).digest()
        stream = seed
        while len(stream) < 64:
            stream += hashlib.sha256(stream).digest()
        length = 12 + seed[0] % 16
        words = [_VOCAB[b % len(_VOCAB)] for b in stream[1 : length + 1]]
        return ["Stand-in", *(f" {w}" for w in words[1:]), "."]

    def generate(self, prompt: Prompt, options: Mapping[str, Any]) -> Iterator[Completion]:
        text = prompt.text
        prompt_tokens = max(1, len(text.split()))
        tokens = self.reply_tokens(text)
        for index, token in enumerate(tokens):
            last = index == len(tokens) - 1
            yield Completion(
                token,
                prompt_tokens=prompt_tokens if index == 0 else None,
                done_reason="stop" if last else None,
            )

    def close(self) -> None:
        self.closed = True


class AutoBackend:
    """llama.cpp for GGUF files with tensors; the deterministic runner for catalog models."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def load(self, path: Path, num_ctx: int, options: Mapping[str, Any]) -> ModelRunner:
        try:
            with path.open("rb") as stream:
                info = gguf.read_info(stream)
        except (OSError, gguf.NotGGUFError) as exc:
            raise BackendError(f"llama runner process has terminated: {exc}") from None
        if info.tensor_count == 0:
            return DeterministicRunner(model_digest=path.name, memory_bytes=0)
        try:
            # llama-cpp-python is in the stand-in image only, not in the test venv
            from .llama import LlamaRunner  # noqa: PLC0415
        except ImportError as exc:
            raise BackendError(
                f"llama runner is not available in this environment: {exc} "
                "(the stand-in image has llama-cpp-python)"
            ) from None
        threads = options.get("num_thread") or self.threads
        return LlamaRunner(path, num_ctx=num_ctx, threads=int(threads) if threads else None)
