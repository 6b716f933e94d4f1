"""dynamic_batching.adaptive_queue_delay: wait for more requests only when they are coming.

Closed-loop clients (each sends its next request once it has its answer, after a short "round
trip") drive a DynamicBatcher whose batches take a few milliseconds in a worker thread. What is
asserted are the batcher's own counters and the batch sizes, never durations.
"""

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from conftest import LiveServer, make_app, metric
from onnx_models import mlp
from onnx_service.metrics import Metrics
from onnx_service.model import PEAK_WINDOW, DynamicBatcher, Outputs

MAX_BATCH = 16
X = {"x": np.zeros((1, 4), np.float32)}


class Scenario:
    """A batcher with a fake model that records the rows of every batch it runs."""

    def __init__(self, *, adaptive: bool, delay_s: float) -> None:
        self.adaptive = adaptive
        self.delay_s = delay_s
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def _run(self, batch: Sequence[object]) -> list[Outputs]:
        with self._lock:
            self.sizes.append(len(batch))
        time.sleep(0.003)  # the model's compute time, off the event loop
        return [{"y": np.zeros((1, 1), np.float32)} for _ in batch]

    def batcher(self) -> DynamicBatcher:
        return DynamicBatcher(
            run=self._run,  # type: ignore[arg-type]
            max_batch_size=MAX_BATCH,
            max_delay_s=self.delay_s,
            executor=ThreadPoolExecutor(2),
            metrics=Metrics().for_version("m", 1),
            inline=lambda _: False,
            adaptive=self.adaptive,
        )


async def client(batcher: DynamicBatcher, requests: int, pause_s: float) -> None:
    """One closed-loop client: request, answer, a pause (the round trip), next request."""
    for _ in range(requests):
        await batcher.submit(X, 1)
        await asyncio.sleep(pause_s)


async def crowd(batcher: DynamicBatcher, clients: int, requests: int) -> None:
    """``clients`` closed-loop clients whose round trips differ (1-3 ms)."""
    await asyncio.gather(*(client(batcher, requests, 0.001 * (1 + i % 3)) for i in range(clients)))


def test_one_client_is_never_held_back() -> None:
    """With a long max_queue_delay a lone client's request runs at once: nothing is coming."""
    scenario = Scenario(adaptive=True, delay_s=0.2)

    async def run() -> tuple[int, int]:
        batcher = scenario.batcher()
        await client(batcher, 12, 0.001)
        batcher.close()
        return batcher.delayed, batcher.expired

    assert asyncio.run(run()) == (0, 0)
    assert scenario.sizes == [1] * 12


def test_fixed_delay_holds_back_a_lone_client() -> None:
    """The same client without adaptive_queue_delay waits max_queue_delay every time (what the
    test above guards against; the batcher's counters see it)."""
    scenario = Scenario(adaptive=False, delay_s=0.02)

    async def run() -> tuple[int, int]:
        batcher = scenario.batcher()
        await client(batcher, 4, 0.001)
        batcher.close()
        return batcher.delayed, batcher.expired

    assert asyncio.run(run()) == (4, 4)


def test_closed_loop_clients_fill_their_batches() -> None:
    """N clients form batches of N once the window has seen them, without waiting out the
    delay; with max_queue_delay 0 the same clients form batches of about half that."""
    clients, requests = 8, 40

    def sizes(adaptive: bool, delay_s: float) -> tuple[list[int], int]:
        scenario = Scenario(adaptive=adaptive, delay_s=delay_s)

        async def run() -> int:
            batcher = scenario.batcher()
            await crowd(batcher, clients, requests)
            batcher.close()
            return batcher.expired

        expired = asyncio.run(run())
        return scenario.sizes, expired

    adaptive, expired = sizes(True, 1.0)
    assert sum(adaptive) == clients * requests
    steady = adaptive[PEAK_WINDOW:]
    assert sum(steady) / len(steady) >= clients - 0.5, adaptive
    assert expired == 0  # every batch closed because it held the N, none at the 1 s delay
    eager, _ = sizes(False, 0.0)
    assert sum(eager) / len(eager) < clients - 1, eager


def test_a_drop_in_load_stops_the_waiting() -> None:
    """After a crowd of 8 leaves, a lone client is held back for at most the window's batches
    and one (each waits out max_queue_delay), then never again."""
    scenario = Scenario(adaptive=True, delay_s=0.02)

    async def run() -> tuple[int, int, int, int]:
        batcher = scenario.batcher()
        await crowd(batcher, 8, 20)
        crowd_delayed = batcher.delayed
        await client(batcher, PEAK_WINDOW + 5, 0.001)
        after_drop = batcher.delayed
        await client(batcher, 12, 0.001)
        batcher.close()
        return crowd_delayed, after_drop, batcher.delayed, batcher.expired

    crowd_delayed, after_drop, final, expired = asyncio.run(run())
    assert crowd_delayed > 0  # the crowd's batches did wait for its stragglers
    # the first period after the crowd still saw its last batch running: one batch more
    assert after_drop - crowd_delayed <= PEAK_WINDOW + 1
    assert final == after_drop  # forgotten: the lone client runs at once
    assert expired >= after_drop - crowd_delayed  # its held batches timed out, as they must


def test_adaptive_model_through_the_service(tmp_path: Path) -> None:
    """config.yaml turns it on; the config endpoint says so; sequential requests to a model
    with a 1 s max_queue_delay never wait for it (queue-duration histogram)."""
    mlp(tmp_path / "m" / "1" / "model.onnx", [16, 32, 4])
    (tmp_path / "m" / "config.yaml").write_text(
        "max_batch_size: 16\n"
        "dynamic_batching: {max_queue_delay_us: 1000000, adaptive_queue_delay: true}\n"
    )
    x = np.ones((1, 16), np.float32)
    body = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x.tolist()}]}
    with LiveServer(make_app(tmp_path)) as server:
        config = httpx.get(f"{server.url}/v2/models/m/config").json()
        for _ in range(5):
            response = httpx.post(f"{server.url}/v2/models/m/infer", json=body, timeout=30)
            assert response.status_code == 200, response.text
        text = httpx.get(f"{server.url}/metrics").text
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 1000000}
    assert config["parameters"]["adaptive_queue_delay"] is True
    labels = {"model": "m", "version": "1"}
    waited = "onnx_service_queue_duration_seconds_bucket"
    assert metric(text, waited, le="0.5", **labels) == 5
