"""Dynamic batching and hot swaps under concurrent load, through a real uvicorn on loopback."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import LiveServer, make_app, metric, ort_run, ready_client
from fastapi.testclient import TestClient
from onnx_models import scale


def infer_body(x: np.ndarray) -> dict:
    return {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def test_dynamic_batching_coalesces_and_splits_exactly(live: LiveServer, repo: Path) -> None:
    rng = np.random.default_rng(6)
    rows = [1, 1, 2, 1, 1, 1, 1]  # 8 rows = max_batch_size: the batch closes when all are in
    xs = [rng.standard_normal((n, 16)).astype(np.float32) for n in rows]

    def post(x: np.ndarray) -> httpx.Response:
        return httpx.post(f"{live.url}/v2/models/batched/infer", json=infer_body(x), timeout=30)

    with ThreadPoolExecutor(len(xs)) as pool:
        responses = list(pool.map(post, xs))
    model = repo / "batched" / "1" / "model.onnx"
    for x, response in zip(xs, responses, strict=True):
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        assert out["shape"] == [len(x), 4]
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        # A row may meet a different GEMM blocking inside a batch: equal to float32 rounding.
        np.testing.assert_allclose(got, ort_run(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)
    text = httpx.get(f"{live.url}/metrics").text
    labels = {"model": "batched", "version": "1"}
    executions = metric(text, "onnx_service_inference_exec_count_total", **labels)
    assert metric(text, "onnx_service_inference_count_total", **labels) == sum(rows)
    assert 1 <= executions < len(rows)
    successes = metric(text, "onnx_service_inference_requests_total", outcome="success", **labels)
    assert successes == len(rows)
    assert metric(text, "onnx_service_inference_pending_requests", **labels) == 0


def test_without_batching_every_request_is_one_execution(live: LiveServer) -> None:
    x = np.ones((2, 16), np.float32)

    def post(_: int) -> int:
        url = f"{live.url}/v2/models/tiny/infer"
        return httpx.post(url, json=infer_body(x), timeout=30).status_code

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(post, range(12))) == {200}
    text = httpx.get(f"{live.url}/metrics").text
    labels = {"model": "tiny", "version": "1"}
    assert metric(text, "onnx_service_inference_exec_count_total", **labels) == 12
    assert metric(text, "onnx_service_inference_count_total", **labels) == 24


@pytest.mark.parametrize(("batching", "inline_us"), [(False, 0), (True, 100), (True, 0)])
def test_hot_swap_under_load_fails_no_request(
    tmp_path: Path, batching: bool, inline_us: int
) -> None:
    model = tmp_path / "m"
    scale(model / "1" / "model.onnx", 1.0)
    if batching:
        (model / "config.yaml").write_text(
            "max_batch_size: 4\ndynamic_batching: {max_queue_delay_us: 500}\n"
        )
    x = [1.0, 2.0, 3.0, 4.0]
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]}
    results: list[tuple[int, int, float]] = []  # (swaps done before sending, status, factor)
    swaps = [0]
    stop = threading.Event()
    lock = threading.Lock()

    with LiveServer(make_app(tmp_path, inline_compute_us=inline_us)) as server:

        def load_loop() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for _ in range(400):
                    if stop.is_set():
                        return
                    before = swaps[0]
                    response = http.post("/v2/models/m/infer", json=body)
                    factor = (
                        response.json()["outputs"][0]["data"][0]
                        if response.status_code == 200
                        else -1.0
                    )
                    with lock:
                        results.append((before, response.status_code, factor))

        def wait_for(count: int) -> None:
            while True:
                with lock:
                    if len(results) >= count or stop.is_set():
                        return
                stop.wait(0.01)

        workers = [threading.Thread(target=load_loop) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            with httpx.Client(base_url=server.url, timeout=60) as admin:
                for version in (2, 3):
                    wait_for(len(results) + 40)
                    scale(model / str(version) / "model.onnx", float(version))
                    answer = admin.post("/v2/repository/models/m/load")
                    assert answer.json() == {"name": "m", "versions": [str(version)]}
                    swaps[0] = version - 1
                wait_for(len(results) + 40)
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)
        index = httpx.post(f"{server.url}/v2/repository/index").json()

    assert results
    assert {status for _, status, _ in results} == {200}
    assert {factor for _, _, factor in results} == {1.0, 2.0, 3.0}
    for swaps_before, _, factor in results:
        assert factor >= swaps_before + 1  # sent after a swap answered: never the old version
    states = {row["version"]: row["state"] for row in index}
    assert states == {"1": "UNAVAILABLE", "2": "UNAVAILABLE", "3": "READY"}


def _runs_on_the_loop(client: TestClient, rows: int, ran_on: list[int]) -> bool:
    """Infer ``rows`` rows; whether session.run ran on the event loop's own thread."""
    loop_thread = client.portal.call(threading.get_ident)  # type: ignore[union-attr]
    body = infer_body(np.zeros((rows, 16), np.float32))
    response = client.post("/v2/models/tiny/infer", json=body)
    assert response.status_code == 200, response.text
    return ran_on[-1] == loop_thread


def test_only_cheap_runs_stay_on_the_event_loop(repo: Path) -> None:
    """Where session.run happens: the event loop's thread for cheap runs, the pool otherwise."""
    for inline_us in (100, 0):
        with ready_client(make_app(repo, inline_compute_us=inline_us)) as client:
            mv = client.app.state.repository.get("tiny")  # type: ignore[attr-defined]
            ran_on: list[int] = []
            run_graph = mv._run_graph
            mv._run_graph = lambda wanted, feeds, g=run_graph, r=ran_on: (
                r.append(threading.get_ident()) or g(wanted, feeds)
            )
            inline = inline_us == 100
            # nothing measured yet: the thread pool
            assert not _runs_on_the_loop(client, 1, ran_on)
            for rows, expected in ((1, inline), (4, inline), (100, False)):
                # settle the moving average on a known cost (20 us a row): each run measures
                # its own cost, which on a busy machine is far from it
                for _ in range(100):
                    mv.record_compute(20e-6, 1)
                # 100 rows ~ 2 ms: a big batch never blocks the loop
                assert _runs_on_the_loop(client, rows, ran_on) is expected, (inline_us, rows)
