"""Ollama model names: ``[host/][namespace/]model[:tag]``, as Ollama parses and displays them."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(:[0-9]+)?$")


class InvalidNameError(ValueError):
    """Raised for a name Ollama would reject; the message is Ollama's own."""

    def __init__(self) -> None:
        super().__init__("invalid model name")


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, raw: str) -> ModelName:
        text = raw.strip()
        if not text:
            raise InvalidNameError
        tag = DEFAULT_TAG
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
        parts = text.split("/")
        if len(parts) == 1:
            host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
        elif len(parts) == 2:
            host, namespace, model = DEFAULT_HOST, parts[0], parts[1]
        elif len(parts) == 3:
            host, namespace, model = parts
        else:
            raise InvalidNameError
        if not (_HOST.match(host) and _PART.match(namespace) and _PART.match(model)):
            raise InvalidNameError
        if not _PART.match(tag):
            raise InvalidNameError
        return cls(host=host, namespace=namespace, model=model.lower(), tag=tag)

    @property
    def display(self) -> str:
        """The shortest form, as /api/tags shows it (``llama3:latest``, ``ns/m:tag``)."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def manifest_parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)
