"""Collect Ollama's state at scrape time from its HTTP API.

Metrics (names shared with the appliance's alert rules and dashboards):
  ollama_up                               1 when /api/version answered, else 0
  ollama_build_info{version}              1
  ollama_model_present{model}             1 per model /api/tags lists
  ollama_model_size_bytes{model}          size on disk from /api/tags
  ollama_model_loaded{model}              1 when /api/ps lists the model, else 0
  ollama_model_loaded_memory_bytes{model} memory /api/ps reports for a loaded model (0 otherwise)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def _get(base_url: str, path: str, timeout: float) -> Any:
    with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


class OllamaCollector(Collector):
    """Polls Ollama on every scrape (no cache: a scrape shows the state at that moment)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("ollama_up", "1 if the Ollama API answered, else 0")
        try:
            version = str(_get(self.base_url, "/api/version", self.timeout).get("version", ""))
            tags = _get(self.base_url, "/api/tags", self.timeout).get("models") or []
            running = _get(self.base_url, "/api/ps", self.timeout).get("models") or []
        except (OSError, urllib.error.URLError, ValueError, AttributeError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        info = GaugeMetricFamily(
            "ollama_build_info", "Ollama's version, as a label", labels=["version"]
        )
        info.add_metric([version], 1)
        yield info
        present = GaugeMetricFamily(
            "ollama_model_present", "1 per model Ollama has", labels=["model"]
        )
        size = GaugeMetricFamily(
            "ollama_model_size_bytes", "Size of a model on disk", labels=["model"]
        )
        loaded = GaugeMetricFamily(
            "ollama_model_loaded",
            "1 if the model is loaded (per /api/ps), else 0",
            labels=["model"],
        )
        memory = GaugeMetricFamily(
            "ollama_model_loaded_memory_bytes",
            "Memory a loaded model takes (per /api/ps), 0 when not loaded",
            labels=["model"],
        )
        in_memory = {str(m.get("name") or m.get("model")): int(m.get("size", 0)) for m in running}
        names = sorted({str(m.get("name") or m.get("model")) for m in tags} | set(in_memory))
        on_disk = {str(m.get("name") or m.get("model")): int(m.get("size", 0)) for m in tags}
        for name in names:
            if name in on_disk:
                present.add_metric([name], 1)
                size.add_metric([name], on_disk[name])
            loaded.add_metric([name], 1 if name in in_memory else 0)
            memory.add_metric([name], in_memory.get(name, 0))
        yield from (present, size, loaded, memory)
