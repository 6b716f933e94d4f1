"""Small real ONNX models for the delivery tests (built with the onnx helper) and references."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

INPUT_WIDTH = 16
# one MLP builder for the whole repository: the ONNX service's test helper
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "onnx_service/tests"))
import onnx_models  # noqa: E402


def mlp(path: Path, seed: int, sizes: tuple[int, ...] = (INPUT_WIDTH, 32, 4)) -> Path:
    """Dense ReLU network x [N, 16] -> y [N, 4]; the seed tells versions apart."""
    return onnx_models.mlp(path, list(sizes), seed=seed)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample(rows: int = 3) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((rows, INPUT_WIDTH)).astype(np.float32)


def reference(path: Path, x: np.ndarray) -> np.ndarray:
    """What onnxruntime computes for this file and input, in this process."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(["y"], {"x": x})[0]
    return result
