"""The built image, run the way the appliance runs it (opt-in: needs Docker and a built image).

    docker build --build-arg BASE_IMAGE=edgeai-lab/python:dev -t edgeai-lab/onnx-service:dev \\
        onnx_service
    ONNX_SERVICE_IMAGE=edgeai-lab/onnx-service:dev pytest tests/test_container.py
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc
from conftest import ort_run
from onnx_models import mlp, slow_chain

IMAGE = os.environ.get("ONNX_SERVICE_IMAGE", "")

pytestmark = pytest.mark.skipif(
    not IMAGE or shutil.which("docker") is None,
    reason="set ONNX_SERVICE_IMAGE to a built image (and have docker) to run",
)


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout.strip()


@pytest.fixture
def models() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="onnx-container-"))
    mlp(root / "tiny" / "1" / "model.onnx", [16, 32, 4])
    for path in [root, *root.rglob("*")]:  # readable by the image's non-root user
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    shutil.rmtree(root)


def test_read_only_non_root_container_is_healthy_and_infers(models: Path) -> None:
    container = docker(
        "run", "-d", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "-v", f"{models}:/models:ro", "-p", "127.0.0.1::8001", "-p", "127.0.0.1::8002", IMAGE,
    )  # fmt: skip
    try:
        health = ""
        for _ in range(120):
            health = docker("inspect", "-f", "{{.State.Health.Status}}", container)
            if health in {"healthy", "unhealthy"}:
                break
            time.sleep(1)
        assert health == "healthy", docker("logs", container)
        config = json.loads(docker("inspect", container))[0]["Config"]
        assert config["User"] not in {"", "0", "root"}
        port = docker("port", container, "8001/tcp").splitlines()[0].rsplit(":", 1)[1]
        x = np.random.default_rng(8).standard_normal((2, 16)).astype(np.float32)
        body = {
            "inputs": [
                {"name": "x", "shape": [2, 16], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        response = httpx.post(f"http://127.0.0.1:{port}/v2/models/tiny/infer", json=body)
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        expected = ort_run(models / "tiny" / "1" / "model.onnx", {"x": x})["y"]
        np.testing.assert_array_equal(got, expected)
        # the same model over gRPC, with Triton's client
        grpc_port = docker("port", container, "8002/tcp").splitlines()[0].rsplit(":", 1)[1]
        client = tritonclient.grpc.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
        tensor = tritonclient.grpc.InferInput("x", [2, 16], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("tiny", [tensor]).as_numpy("y"), expected)
    finally:
        docker("rm", "-f", container)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_a_slow_repository_is_healthy_before_it_is_ready(models: Path) -> None:
    """Listen first, load after: the image's health check (liveness) passes while a model that
    takes seconds to load is still loading; readiness follows when it is loaded."""
    slow_chain(models / "slow" / "1" / "model.onnx", 25_000)  # ~2.5 s to load, quiet
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = docker(
        "run", "-d", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        # the image's own check command, polled faster than its 10 s for the test
        "--health-interval", "1s", "--health-timeout", "5s", "--health-retries", "2",
        "--health-start-period", "60s",
        "-v", f"{models}:/models:ro", "-p", "127.0.0.1::8001", IMAGE,
    )  # fmt: skip
    try:
        port = docker("port", container, "8001/tcp").splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}/v2/health"
        healthy_while_loading = live_while_loading = False
        deadline = time.monotonic() + 180
        while _get(f"{url}/ready") != 200:
            assert time.monotonic() < deadline, docker("logs", container)
            # each observation first, readiness after it: ready then means ready at that time
            health = docker("inspect", "-f", "{{.State.Health.Status}}", container)
            assert health != "unhealthy", docker("logs", container)
            live = _get(f"{url}/live") == 200
            ready_now = _get(f"{url}/ready") == 200
            live_while_loading |= live and not ready_now
            healthy_while_loading |= health == "healthy" and not ready_now
            time.sleep(0.1)
        assert live_while_loading, "the server did not answer before its models were loaded"
        assert healthy_while_loading, "the container was not healthy while loading"
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
        infer = httpx.post(f"http://127.0.0.1:{port}/v2/models/slow/infer", json=body)
        assert infer.status_code == 200, infer.text
    finally:
        docker("rm", "-f", container)
