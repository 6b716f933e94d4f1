"""The real ONNX service (onnx_service's FastAPI app) in this process, for the onnx_model tests:
replicas sharing one model repository, each under uvicorn on a loopback port in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from onnx_service.app import create_app
from onnx_service.settings import Settings


@contextmanager
def serve(models_dir: Path) -> Iterator[str]:
    """One replica of the service on 127.0.0.1; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(Settings(model_repository=models_dir, inference_threads=1))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ONNX service did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@dataclass
class Replicas:
    """The replicas and the repository they serve."""

    models_dir: Path
    urls: list[str]

    def serving(self) -> list[list[str]]:
        """Per replica, the READY versions as ``name:version``."""
        found = []
        for url in self.urls:
            status, rows = http("POST", f"{url}/v2/repository/index", {"ready": True})
            assert status == 200, rows
            found.append(sorted(f"{r['name']}:{r['version']}" for r in rows))
        return found

    def infer(self, model: str, x: np.ndarray) -> list[tuple[int, Any]]:
        tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32"}
        body = {"inputs": [{**tensor, "data": x.ravel().tolist()}]}
        return [http("POST", f"{url}/v2/models/{model}/infer", body) for url in self.urls]


@contextmanager
def replicas(models_dir: Path, count: int = 2) -> Iterator[Replicas]:
    models_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        urls = [stack.enter_context(serve(models_dir)) for _ in range(count)]
        yield Replicas(models_dir, urls)
