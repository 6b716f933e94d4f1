"""The rollout: serial batches over `edge`, a health gate after each, a failing batch stops it."""

from __future__ import annotations

import re

import numpy as np

from .conftest import Site
from .models import mlp, reference, sample, sha256
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
    # one batch per play, in inventory order: edge-1 finishes (its health gate included)
    # before edge-2 starts
    _, first, second = result.stdout.split(PLAY)
    assert "[edge-1]" in first
    assert "[edge-2]" not in first
    assert "[edge-2]" in second
    assert "[edge-1]" not in second
    assert "Health gate, Ollama" in first
    assert "Health gate, Ollama" in second
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


def test_one_run_delivers_both_kinds(site: Site) -> None:
    """No --tags: ONNX and Ollama models in one run, both health gates pass."""
    onnx_file = mlp(site.files / "other-1.onnx", seed=11)
    onnx_models = [
        {"name": "other", "version": 1, "sha256": sha256(onnx_file), "src": str(onnx_file)}
    ]
    result = site.run({"onnx_service_models": onnx_models, "ollama_models": manifest(site)})
    assert result.rc == 0, result
    assert "Health gate, ONNX service" in result.stdout
    assert "Health gate, Ollama" in result.stdout
    x = sample()
    for url in site.onnx_urls:
        status, body = site.infer(url, "other", x)
        assert status == 200, body
        np.testing.assert_allclose(
            np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(x.shape[0], -1),
            reference(onnx_file, x),
            rtol=1e-6,
            atol=1e-6,
        )
    assert set(site.ollama_names()) >= {m["name"] for m in manifest(site)}
