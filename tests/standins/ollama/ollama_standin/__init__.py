"""A stand-in for the Ollama server: a subset of its HTTP API for tests. It is not Ollama."""

from .app import create_app

__all__ = ["create_app"]
