"""Shared fixtures: a model repository of real ONNX models, an app client, a live server."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from onnx_models import all_types, copy_magika, fixed, mlp, scale
from onnx_service.app import create_app
from onnx_service.settings import Settings
from prometheus_client.parser import text_string_to_metric_families

BODY_LIMIT = 1024 * 1024


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    mlp(root / "tiny" / "1" / "model.onnx", [16, 32, 4])
    scale(root / "flat.onnx", 3.0)
    all_types(root / "types" / "1" / "model.onnx")
    fixed(root / "fixed" / "1" / "model.onnx")
    copy_magika(root / "magika" / "1" / "model.onnx")
    mlp(root / "batched" / "1" / "model.onnx", [16, 32, 4], seed=1)
    (root / "batched" / "config.yaml").write_text(
        "max_batch_size: 8\ndynamic_batching:\n  max_queue_delay_us: 1000000\n"
    )
    scale(root / "broken" / "1" / "model.onnx", 2.0)
    (root / "broken" / "config.yaml").write_text("max_batch_size: -1\n")
    return root


def make_app(root: Path, **settings: object) -> FastAPI:
    """The service on ``root``; gRPC off unless a test gives grpc_port."""
    options: dict[str, object] = {"max_request_bytes": BODY_LIMIT, "grpc_port": 0, **settings}
    return create_app(Settings(model_repository=root, **options))  # type: ignore[arg-type]


@contextmanager
def ready_client(app: FastAPI, **options: bool) -> Iterator[TestClient]:
    """A TestClient on ``app`` once start-up loading is done (the server is live at once and
    ready after loading, which runs in the background)."""
    with TestClient(app, **options) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "start-up loading did not finish"
            time.sleep(0.01)
        yield test_client


@pytest.fixture
def client(repo: Path) -> Iterator[TestClient]:
    with ready_client(make_app(repo)) as test_client:
        yield test_client


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference: a direct onnxruntime run of the same model file on the same inputs."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


class LiveServer:
    """The app under a real uvicorn on a loopback port, in a background thread."""

    def __init__(self, app: FastAPI, wait_ready: bool = True, **config_options: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", **config_options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.wait_ready = wait_ready

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        for _ in range(3000):
            if self.server.started:
                break
            self.thread.join(0.01)
        assert self.server.started, "uvicorn did not start"
        deadline = time.monotonic() + 60
        while self.wait_ready and httpx.get(f"{self.url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "start-up loading did not finish"
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def live(repo: Path) -> Iterator[LiveServer]:
    # inline_compute_us=0: every session.run goes through the thread pool here
    with LiveServer(make_app(repo, inline_compute_us=0)) as server:
        yield server


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a /metrics page (0 when the series is absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
