"""The stand-in's "registry": a few deterministic models that /api/pull can fetch.

There is no network registry behind the stand-in. Pulling one of these names writes the same bytes
(and so the same digests) on every machine and every run; any other name fails the way Ollama
reports a manifest the registry does not have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from . import gguf
from .names import ModelName

CHAT_TEMPLATE = (
    "{{ if .System }}<|system|>{{ .System }}\n{{ end }}<|user|>{{ .Prompt }}\n<|assistant|>"
)


@dataclass(frozen=True)
class CatalogModel:
    name: str
    family: str
    parameter_size: str
    quantization: str
    size: int
    system: str = ""
    template: str = CHAT_TEMPLATE
    parameters: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def model_bytes(self) -> bytes:
        metadata = {
            "general.architecture": self.family,
            "general.name": self.name,
            "general.description": "Ollama stand-in test model: deterministic bytes, no weights",
            "general.size_label": self.parameter_size,
        }
        return gguf.build(metadata, self.size, seed=self.name)

    def config(self, model_digest: str) -> dict[str, Any]:
        return {
            "model_format": "gguf",
            "model_family": self.family,
            "model_families": [self.family],
            "model_type": self.parameter_size,
            "file_type": self.quantization,
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [model_digest]},
        }


_MODELS = [
    CatalogModel(
        name="standin/tiny:latest",
        family="standin",
        parameter_size="1M",
        quantization="Q4_0",
        size=384 * 1024,
        parameters={"num_ctx": 2048, "stop": ["<|user|>"]},
    ),
    CatalogModel(
        name="standin/tiny:chat",
        family="standin",
        parameter_size="1M",
        quantization="Q4_0",
        size=384 * 1024,
        system="You are a stand-in model used for testing.",
        parameters={"num_ctx": 2048, "temperature": 0.0, "stop": ["<|user|>"]},
    ),
    CatalogModel(
        name="standin/small:latest",
        family="standin",
        parameter_size="4M",
        quantization="Q8_0",
        size=1536 * 1024,
        parameters={"num_ctx": 4096},
    ),
]

CATALOG: dict[ModelName, CatalogModel] = {ModelName.parse(m.name): m for m in _MODELS}
