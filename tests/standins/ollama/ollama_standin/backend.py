"""Text generation behind a small interface, so a real backend (llama.cpp) can replace it.

The stand-in ships only :class:`DeterministicBackend`: the reply is derived from a hash of the
prompt, so the same request always yields the same text, token by token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .store import ModelRecord

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


@dataclass(frozen=True)
class Completion:
    """One piece of generated text; ``done_reason`` is set on the last one."""

    text: str
    done_reason: str | None = None


class GenerationBackend(Protocol):
    """What the HTTP layer needs from a model runtime. Iterators may block (run in a thread)."""

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self, model: ModelRecord, prompt: str, options: Mapping[str, Any]
    ) -> Iterator[Completion]: ...


class DeterministicBackend:
    """No weights: a reply of 12-27 tokens chosen by sha256 of (model digest, prompt)."""

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))

    def reply_tokens(self, model: ModelRecord, prompt: str) -> list[str]:
        seed = hashlib.sha256(f"{model.digest}\n{prompt}".encode()).digest()
        stream = seed
        while len(stream) < 64:
            stream += hashlib.sha256(stream).digest()
        length = 12 + seed[0] % 16
        words = [_VOCAB[b % len(_VOCAB)] for b in stream[1 : length + 1]]
        return ["Stand-in", *(f" {w}" for w in words[1:]), "."]

    def generate(
        self, model: ModelRecord, prompt: str, options: Mapping[str, Any]
    ) -> Iterator[Completion]:
        tokens = self.reply_tokens(model, prompt)
        limit = options.get("num_predict")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < len(tokens):
            tokens, reason = tokens[:limit], "length"
        else:
            reason = "stop"
        if not tokens:
            yield Completion("", reason)
            return
        for index, token in enumerate(tokens):
            yield Completion(token, reason if index == len(tokens) - 1 else None)
