"""The rollout: serial batches over `edge`, a health gate after each, a failing batch stops it."""

from __future__ import annotations

import re

from .conftest import Site
from .test_ollama_sync import manifest

PLAY = "PLAY [Deliver models to the edge hosts]"


def test_batches_run_one_after_the_other(site: Site) -> None:
    result = site.run(
        {"ollama_models": manifest(site), "model_sync_serial": 1},
        "--tags",
        "ollama",
        limit="edge",
    )
    assert result.rc == 0, result
    assert result.stdout.count(PLAY) == 2, result
    assert "Health gate, Ollama" in result.stdout
    for host in ("edge-1", "edge-2"):
        assert result.recap(host)["failed"] == 0


def test_a_failing_health_gate_stops_the_rollout(site: Site) -> None:
    """edge-1's gate cannot reach a third ONNX replica: edge-2 is never touched."""
    result = site.run(
        {"onnx_service_replicas": 3, "model_sync_serial": 1, "model_sync_health_retries": 0},
        "--tags",
        "onnx",
        limit="edge",
    )
    assert result.rc != 0, result
    assert "Health gate, ONNX service" in result.stdout
    assert result.recap("edge-1")["failed"] == 1
    assert result.stdout.count(PLAY) == 1, result
    assert re.search(r"^edge-2\s+:", result.stdout, re.M) is None, result
    assert "[edge-2]" not in result.stdout
