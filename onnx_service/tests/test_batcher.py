"""The dynamic batcher's instances: how many batches of one model version run at once."""

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import LiveServer, make_app, metric, ort_run
from onnx_models import mlp
from onnx_service.metrics import Metrics
from onnx_service.model import DynamicBatcher, Outputs

ROWS = 8


def _run_batches(instances: int) -> tuple[int, list[int]]:
    """Three requests through a batcher whose batches block until released; returns the
    most batches that ran at once and the rows of each batch, in the order they started."""
    running = 0
    most = 0
    sizes: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def run(batch: Sequence[object]) -> list[Outputs]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            sizes.append(len(batch))
        release.wait(10)
        with lock:
            running -= 1
        return [{"y": np.zeros((1, 1), np.float32)} for _ in batch]

    async def scenario() -> None:
        executor = ThreadPoolExecutor(4)
        batcher = DynamicBatcher(
            run=run,  # type: ignore[arg-type]
            max_batch_size=ROWS,
            max_delay_s=0.0,
            executor=executor,
            metrics=Metrics().for_version("m", 1),
            inline=lambda _: False,
            instances=instances,
        )
        x = {"x": np.zeros((1, 4), np.float32)}
        first = asyncio.ensure_future(batcher.submit(x, 1))
        while not sizes:  # the first batch (one request) runs and blocks
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batcher.submit(x, 1)) for _ in range(2)]
        # a free instance starts the queued requests at once; a busy one leaves them queued
        for _ in range(200):
            await asyncio.sleep(0.001)
            if len(sizes) == 2:
                break
        release.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 10)
        batcher.close()
        executor.shutdown()

    asyncio.run(scenario())
    return most, sizes


def test_one_instance_runs_one_batch_at_a_time() -> None:
    most, sizes = _run_batches(1)
    assert most == 1
    assert sizes == [1, 2]  # the two that queued behind the first ran as one batch


def test_two_instances_run_two_batches_at_once() -> None:
    most, sizes = _run_batches(2)
    assert most == 2
    assert sizes == [1, 2]  # the second instance took both queued requests at once


@pytest.mark.parametrize("delay_us", [0, 500])
def test_concurrent_batches_answer_every_request_exactly(tmp_path: Path, delay_us: int) -> None:
    model = tmp_path / "m" / "1" / "model.onnx"
    mlp(model, [16, 64, 4], seed=3)
    (tmp_path / "m" / "config.yaml").write_text(
        f"max_batch_size: {ROWS}\ninstance_count: 2\nintra_op_threads: 1\n"
        f"dynamic_batching: {{max_queue_delay_us: {delay_us}}}\n"
    )
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal((1 + i % 3, 16)).astype(np.float32) for i in range(96)]

    with LiveServer(make_app(tmp_path, inline_compute_us=0)) as server:

        def post(x: np.ndarray) -> np.ndarray:
            body = {
                "inputs": [
                    {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}
                ]
            }
            response = httpx.post(f"{server.url}/v2/models/m/infer", json=body, timeout=30)
            assert response.status_code == 200, response.text
            out = response.json()["outputs"][0]
            return np.array(out["data"], np.float32).reshape(out["shape"])

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(post, xs))
        text = httpx.get(f"{server.url}/metrics").text

    for x, got in zip(xs, answers, strict=True):
        np.testing.assert_allclose(got, ort_run(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)
    labels = {"model": "m", "version": "1"}
    assert metric(text, "onnx_service_inference_count_total", **labels) == sum(len(x) for x in xs)
    assert metric(text, "onnx_service_inference_exec_count_total", **labels) <= len(xs)
    assert metric(text, "onnx_service_inference_pending_requests", **labels) == 0
