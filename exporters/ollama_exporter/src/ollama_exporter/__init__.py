"""Prometheus metrics for Ollama, which has no metrics endpoint of its own."""

from .collector import OllamaCollector

__all__ = ["OllamaCollector"]
