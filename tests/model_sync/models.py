"""Small real ONNX models for the delivery tests (built with the onnx helper) and references."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

INPUT_WIDTH = 16


def mlp(path: Path, seed: int, sizes: tuple[int, ...] = (INPUT_WIDTH, 32, 4)) -> Path:
    """Dense ReLU network x [N, 16] -> y [N, 4]; the seed tells versions apart."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "x"
    last = len(sizes) - 2
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        inits += [
            numpy_helper.from_array(
                (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"
            ),
            numpy_helper.from_array(rng.standard_normal(b).astype(np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        out = "y" if i == last else f"r{i}"
        if i == last:
            nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out]))
        else:
            nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"h{i}"]))
            nodes.append(helper.make_node("Relu", [f"h{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample(rows: int = 3) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((rows, INPUT_WIDTH)).astype(np.float32)


def reference(path: Path, x: np.ndarray) -> np.ndarray:
    """What onnxruntime computes for this file and input, in this process."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(["y"], {"x": x})[0]
    return result
