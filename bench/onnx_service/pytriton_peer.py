"""The peer: Triton through nvidia-pytriton, onnxruntime in its Python backend, dynamic batching.

PyTriton needs numpy < 2, so it runs in its own venv (made on first use from
requirements-pytriton.txt) as ``python run.py --serve-pytriton DIR``; nothing here imports
onnx_service.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from repository import DELAY_US, MAX_BATCH, MODELS, session_options

HERE = Path(__file__).resolve().parent


def serve_pytriton(models_dir: Path, port: int) -> None:
    """Runs inside the PyTriton venv: ORT in Triton's Python backend, dynamic batching."""
    import onnxruntime as ort  # noqa: PLC0415
    from pytriton.decorators import batch  # noqa: PLC0415
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: PLC0415
    from pytriton.triton import Triton, TritonConfig  # noqa: PLC0415

    config = TritonConfig(http_port=port, grpc_port=port + 1, metrics_port=port + 2)
    with Triton(config=config) as triton:
        for name, sizes in MODELS.items():
            path = models_dir / name / "1" / "model.onnx"
            session = ort.InferenceSession(str(path), session_options(), ["CPUExecutionProvider"])

            def make(sess: Any) -> Any:
                @batch
                def infer(x: np.ndarray) -> dict[str, np.ndarray]:
                    return {"y": sess.run(None, {"x": x})[0]}

                return infer

            triton.bind(
                model_name=name,
                infer_func=make(session),
                inputs=[Tensor(name="x", dtype=np.float32, shape=(sizes[0],))],
                outputs=[Tensor(name="y", dtype=np.float32, shape=(sizes[-1],))],
                config=ModelConfig(
                    max_batch_size=MAX_BATCH,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=DELAY_US),
                ),
                strict=False,
            )
        triton.serve()


def pytriton_python(given: str | None) -> Path:
    if given:
        return Path(given)
    venv = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "onnx-bench-pytriton"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the PyTriton venv in {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(HERE / "requirements-pytriton.txt"),
            ],
            check=True,
        )
    return python
