"""The real ONNX service (this repository's onnx_service) behind the gateway's gRPC route: its
FastAPI app under uvicorn in a thread, with its gRPC server on a loopback port, serving one MLP;
or the same service as a process of its own, for the tests that kill a member."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn
from free_ports import reserve_port
from onnx_service.app import create_app
from onnx_service.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "onnx_service" / "tests"))
import onnx_models

MODEL = "tiny"  # x: FP32 [-1, 16] -> y: FP32 [-1, 4]


class OnnxService:
    def __init__(self, models_dir: Path) -> None:
        self.model_file = onnx_models.mlp(models_dir / MODEL / "1" / "model.onnx", [16, 32, 4])
        self.grpc_port = reserve_port()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        settings = Settings(
            model_repository=models_dir, grpc_port=self.grpc_port, inference_threads=1
        )
        config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ONNX service did not start")
            time.sleep(0.01)

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()


class OnnxServiceProcess:
    """The real ONNX service as a process of its own (``python -m onnx_service``), serving the
    same MLP over HTTP and gRPC: a member a test can kill (SIGKILL) in the middle of a run."""

    def __init__(self, models_dir: Path) -> None:
        self.model_file = onnx_models.mlp(models_dir / MODEL / "1" / "model.onnx", [16, 32, 4])
        self.port, self.grpc_port = reserve_port(), reserve_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onnx_service", "--model-repository", str(models_dir),
             "--port", str(self.port), "--grpc-port", str(self.grpc_port),
             "--inference-threads", "1", "--log-level", "warning"],
        )  # fmt: skip

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/v2/health/ready"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the ONNX service exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ONNX service was not ready after {timeout} s")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
