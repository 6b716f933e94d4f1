"""The exporter's metrics follow what Ollama's API reports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

import httpx
from ollama_exporter import OllamaCollector
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(OllamaCollector(url, timeout=2))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_up_and_version_without_models(ollama_url: str) -> None:
    metrics = _scrape(ollama_url)
    assert metrics[("ollama_up", ())] == 1
    assert metrics[("ollama_build_info", (("version", "0.12.0-standin"),))] == 1
    assert not [k for k in metrics if k[0].startswith("ollama_model")]


def test_models_present_then_loaded_then_unloaded(ollama_url: str) -> None:
    httpx.post(f"{ollama_url}/api/pull", json={"model": "standin/tiny", "stream": False})
    tiny = (("model", "standin/tiny:latest"),)
    metrics = _scrape(ollama_url)
    assert metrics[("ollama_model_present", tiny)] == 1
    size = httpx.get(f"{ollama_url}/api/tags").json()["models"][0]["size"]
    assert metrics[("ollama_model_size_bytes", tiny)] == size
    assert metrics[("ollama_model_loaded", tiny)] == 0
    assert metrics[("ollama_model_loaded_memory_bytes", tiny)] == 0
    httpx.post(f"{ollama_url}/api/generate", json={"model": "standin/tiny", "prompt": ""})
    metrics = _scrape(ollama_url)
    assert metrics[("ollama_model_loaded", tiny)] == 1
    ps_size = httpx.get(f"{ollama_url}/api/ps").json()["models"][0]["size"]
    assert metrics[("ollama_model_loaded_memory_bytes", tiny)] == ps_size
    httpx.post(
        f"{ollama_url}/api/generate",
        json={"model": "standin/tiny", "prompt": "", "keep_alive": 0},
    )
    assert _scrape(ollama_url)[("ollama_model_loaded", tiny)] == 0


def test_down_when_ollama_does_not_answer() -> None:
    metrics = _scrape("http://127.0.0.1:9")
    assert metrics == {("ollama_up", ()): 0}


def test_the_program_serves_metrics_and_stops_on_sigterm(ollama_url: str) -> None:
    argv = ["--ollama-url", ollama_url, "--listen", "127.0.0.1:19778"]
    process = subprocess.Popen([sys.executable, "-m", "ollama_exporter", *argv])
    try:
        body = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen("http://127.0.0.1:19778/metrics", timeout=1) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "ollama_up 1.0" in body
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
