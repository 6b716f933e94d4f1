"""The real ONNX service (this repository's onnx_service) behind the gateway's gRPC route: its
FastAPI app under uvicorn in a thread, with its gRPC server on a loopback port, serving one MLP."""

from __future__ import annotations

import socket
import sys
import threading
import time
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
