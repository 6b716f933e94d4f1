"""Real inference with llama.cpp (llama-cpp-python), one context per runner.

The HTTP layer renders the prompt through the model's Go template as Ollama does (prompt.py);
this runner only tokenizes that text (BOS first when the model's tokenizer adds one, special tokens
such as ``<start_of_turn>`` parsed) and samples. Sampling options use Ollama's names and defaults.
"""

from __future__ import annotations

import codecs
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama

from .backend import BackendError, Completion, Prompt

# Ollama's defaults for the sampling options it passes to its runner.
DEFAULTS: dict[str, float | int] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class LlamaRunner:
    """A GGUF model loaded by llama.cpp with one context of ``num_ctx`` tokens."""

    def __init__(self, path: Path, num_ctx: int, threads: int | None = None) -> None:
        count = threads or _threads()
        try:
            self.llm = Llama(
                model_path=str(path),
                n_ctx=num_ctx,
                n_threads=count,
                n_threads_batch=count,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama runner process has terminated: {exc}") from None
        self.num_ctx = num_ctx
        self.memory_bytes = path.stat().st_size + self.llm.n_ctx() * self._kv_bytes_per_token()

    def _kv_bytes_per_token(self) -> int:
        meta = self.llm.metadata
        arch = meta.get("general.architecture", "")
        layers = int(meta.get(f"{arch}.block_count", 0))
        heads_kv = int(meta.get(f"{arch}.attention.head_count_kv", 0))
        key = int(meta.get(f"{arch}.attention.key_length", 0))
        value = int(meta.get(f"{arch}.attention.value_length", 0))
        return layers * heads_kv * (key + value) * 2  # f16 K and V

    def tokens(self, prompt: Prompt) -> list[int]:
        # add_bos: llama.cpp adds BOS only when the model's tokenizer asks for it (add_bos_token)
        return self.llm.tokenize(prompt.text.encode(), add_bos=True, special=True)

    def generate(self, prompt: Prompt, options: Mapping[str, Any]) -> Iterator[Completion]:
        tokens = self.tokens(prompt)
        if len(tokens) >= self.num_ctx:
            # Ollama truncates a prompt longer than the context, keeping its end
            tokens = tokens[:1] + tokens[-(self.num_ctx // 2) :]
        settings = {**DEFAULTS, **{k: v for k, v in options.items() if k in DEFAULTS}}
        seed = options.get("seed")
        fixed = seed is not None and int(seed) >= 0
        self.llm.set_seed(int(seed) if fixed else random.getrandbits(32))
        # A fresh context per request: the whole prompt is evaluated, so the same request gives
        # the same text and prompt_eval_count counts every prompt token.
        self.llm.reset()
        vocab = self.llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        prompt_tokens: int | None = len(tokens)
        pending = 0
        produced = len(tokens)
        for token in self.llm.generate(
            tokens,
            top_k=int(settings["top_k"]),
            top_p=float(settings["top_p"]),
            min_p=float(settings["min_p"]),
            typical_p=float(settings["typical_p"]),
            temp=float(settings["temperature"]),
            repeat_penalty=float(settings["repeat_penalty"]),
            presence_penalty=float(settings["presence_penalty"]),
            frequency_penalty=float(settings["frequency_penalty"]),
            reset=True,
        ):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                yield Completion(decoder.decode(b"", final=True), pending, prompt_tokens, "stop")
                return
            pending += 1
            produced += 1
            text = decoder.decode(self.llm.detokenize([token]))
            if produced >= self.num_ctx:
                yield Completion(
                    text + decoder.decode(b"", final=True), pending, prompt_tokens, "length"
                )
                return
            if text:  # an incomplete UTF-8 sequence waits for the next token
                yield Completion(text, pending, prompt_tokens)
                prompt_tokens, pending = None, 0

    def close(self) -> None:
        self.llm.close()
