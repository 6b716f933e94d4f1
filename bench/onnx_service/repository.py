"""The benchmark's models: the tests' MLP builder, the repository layout onnx_service serves
(with batching variants), and raw onnxruntime in-process, the limit every server is held to."""

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"tiny": [16, 32, 4], "heavy": [512, 2048, 2048, 2048, 2048, 2048, 2048, 512]}
MAX_BATCH = 16
DELAY_US = 500
LONG_DELAY_US = 5000
# onnx_service variants: (label, model-name suffix, max_queue_delay_us or None for no batching,
# further config.yaml lines, which follow the max_queue_delay_us line: indented ones belong to
# dynamic_batching). "2x1": two batches at once (instance_count 2), one thread each.
# "adaptive": max_queue_delay_us 5000 as an upper bound only (adaptive_queue_delay).
TWO_INSTANCES = "instance_count: 2\nintra_op_threads: 1\n"
ADAPTIVE = "  adaptive_queue_delay: true\n"
SERVICE_VARIANTS = [
    ("off", "", None, ""),
    (f"{DELAY_US} µs", "_batched", DELAY_US, ""),
    ("0 µs", "_b0", 0, ""),
    ("0 µs 2x1", "_i2", 0, TWO_INSTANCES),
    (f"{LONG_DELAY_US} µs", "_d5000", LONG_DELAY_US, ""),
    (f"adaptive ≤{LONG_DELAY_US} µs", "_adaptive", LONG_DELAY_US, ADAPTIVE),
]


def variant_key(suffix: str) -> str:
    """The name ``run.py --variants`` knows a variant by: its suffix, or ``off``."""
    return suffix.lstrip("_") or "off"


PEER_VARIANT = (f"{DELAY_US} µs", "")


def build_mlp(path: Path, sizes: list[int]) -> None:
    """The tests' MLP builder (onnx_service/tests/onnx_models.py), so benchmarks and tests agree."""
    sys.path.insert(0, str(ROOT / "onnx_service/tests"))
    import onnx_models  # noqa: PLC0415 - only the orchestrator builds models

    onnx_models.mlp(path, sizes)


def build_repository(root: Path) -> dict[str, Path]:
    """onnx_service layout: <name>/1/model.onnx, plus copies with a batching config."""
    files = {}
    for name, sizes in MODELS.items():
        files[name] = root / name / "1" / "model.onnx"
        build_mlp(files[name], sizes)
        for _, suffix, delay, extra in SERVICE_VARIANTS:
            if delay is None:
                continue
            batched = root / f"{name}{suffix}"
            (batched / "1").mkdir(parents=True)
            shutil.copyfile(files[name], batched / "1" / "model.onnx")
            (batched / "config.yaml").write_text(
                f"max_batch_size: {MAX_BATCH}\ndynamic_batching:\n  max_queue_delay_us: {delay}\n"
                + extra
            )
    return files


def session_options() -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()  # the same settings onnx_service uses by default
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def raw_ort(path: Path, batch: int, seconds: float) -> dict[str, float]:
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(path), session_options(), ["CPUExecutionProvider"])
    width = session.get_inputs()[0].shape[1]
    x = np.random.default_rng(1).standard_normal((batch, width)).astype(np.float32)
    for _ in range(20):
        session.run(None, {"x": x})
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        latencies.append(time.perf_counter() - t0)
    p50 = float(np.percentile(latencies, 50))
    return {
        "rps": batch / p50,  # from the median run: robust against other load on shared cores
        "p50_ms": p50 * 1e3,
        "p99_ms": float(np.percentile(latencies, 99)) * 1e3,
        "batch": batch,
    }


def request_body(width: int) -> bytes:
    """One OIP JSON request of one row of ``width`` floats."""
    data = np.random.default_rng(2).standard_normal(width).astype(np.float32)
    body = {
        "inputs": [{"name": "x", "shape": [1, width], "datatype": "FP32", "data": data.tolist()}]
    }
    import json  # noqa: PLC0415

    return json.dumps(body).encode()
