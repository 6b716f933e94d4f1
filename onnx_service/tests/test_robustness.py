"""Abuse and failure handling: a bad request inside a dynamic batch, 500 answers without
internals, KServe V1 outputs that cannot be rows, and the memory bounds: inflated size,
elements per request, requests in flight; listening before the models are loaded (issue #14,
items 4, 5, 6 and 11)."""

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from conftest import BODY_LIMIT, LiveServer, make_app, metric, ready_client
from fastapi.testclient import TestClient
from onnx_models import gather, reshape3, uneven
from onnx_service.model import ModelVersion

from onnx_service import codec, healthcheck


@pytest.fixture
def robust_repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    gather(root / "gather" / "1" / "model.onnx")
    # the batch closes when 4 rows are in (or after 1 s): the four requests below form one batch
    (root / "gather" / "config.yaml").write_text(
        "max_batch_size: 4\ndynamic_batching:\n  max_queue_delay_us: 1000000\n"
    )
    uneven(root / "uneven" / "1" / "model.onnx")
    reshape3(root / "reshape3" / "1" / "model.onnx")
    return root


def _gather_body(index: int) -> dict:
    return {"inputs": [{"name": "idx", "shape": [1], "datatype": "INT64", "data": [index]}]}


def test_a_rejected_request_fails_alone_in_its_batch(robust_repo: Path) -> None:
    indices = [1, 2, 20, 3]  # 20 is out of the table's range: onnxruntime rejects it
    with LiveServer(make_app(robust_repo, inline_compute_us=0)) as server:

        def post(index: int) -> httpx.Response:
            url = f"{server.url}/v2/models/gather/infer"
            return httpx.post(url, json=_gather_body(index), timeout=30)

        with ThreadPoolExecutor(len(indices)) as pool:
            responses = list(pool.map(post, indices))
        text = httpx.get(f"{server.url}/metrics").text

    for index, response in zip(indices, responses, strict=True):
        if index == 20:
            assert response.status_code == 400, response.text
            assert "out of data bounds" in response.json()["error"]
        else:
            assert response.status_code == 200, response.text
            data = response.json()["outputs"][0]["data"]
            assert data == [float(v) for v in range(4 * index, 4 * index + 4)]
    labels = {"model": "gather", "version": "1"}
    assert metric(text, "onnx_service_inference_requests_total", outcome="success", **labels) == 3
    name = "onnx_service_inference_requests_total"
    assert metric(text, name, outcome="invalid_argument", **labels) == 1
    # they were batched: the first run held all four rows, the reruns found the bad one
    assert metric(text, "onnx_service_inference_exec_count_total", **labels) > 1
    assert metric(text, "onnx_service_inference_pending_requests", **labels) == 0


def test_v1_rows_from_outputs_of_different_lengths_are_a_clear_400(robust_repo: Path) -> None:
    x = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
    with ready_client(make_app(robust_repo)) as client:
        rows = client.post("/v1/models/uneven:predict", json={"instances": x})
        assert rows.status_code == 400, rows.text
        message = rows.json()["error"]
        assert "different numbers of rows (y: 2, total: 1)" in message
        assert "send 'inputs'" in message
        columns = client.post("/v1/models/uneven:predict", json={"inputs": x})
        assert columns.status_code == 200, columns.text
        assert columns.json()["outputs"]["total"] == [[6.0, 8.0, 10.0, 12.0]]


def test_500_answers_carry_no_exception_text(
    robust_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    with ready_client(make_app(robust_repo), raise_server_exceptions=False) as client:
        failed = client.post("/v2/models/reshape3/infer", json=body)
        assert failed.status_code == 500
        assert failed.json() == {
            "error": "inference failed in onnxruntime (model 'reshape3' version 1; "
            "the reason is in the service log)"
        }
        v1 = client.post("/v1/models/reshape3:predict", json={"instances": [[1, 2, 3, 4]]})
        assert v1.status_code == 500
        assert "Reshape" not in v1.text
        # any unexpected exception: a generic JSON answer, the details in the log only
        repository = client.app.state.repository  # type: ignore[attr-defined]

        def broken_index(ready_only: bool = False) -> list[dict[str, str]]:
            raise RuntimeError("secret internal detail /srv/x.py:12")

        repository.index = broken_index
        crashed = client.post("/v2/repository/index")
        assert crashed.status_code == 500
        assert crashed.headers["content-type"] == "application/json"
        assert crashed.json() == {"error": "internal error (the reason is in the service log)"}
    assert "Reshape" in caplog.text  # the operator can still find out what happened
    assert "secret internal detail" in caplog.text


def test_an_unexpected_error_on_the_infer_fast_path_is_a_generic_500(
    robust_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """OIP infer bypasses FastAPI's middleware: its own guard answers as FastAPI's would."""
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    with ready_client(make_app(robust_repo), raise_server_exceptions=False) as client:
        repository = client.app.state.repository  # type: ignore[attr-defined]

        def broken_get(name: str, version: int | None = None) -> ModelVersion:
            raise RuntimeError("secret internal detail /srv/y.py:7")

        repository.get = broken_get
        crashed = client.post("/v2/models/reshape3/infer", json=body)
        assert crashed.status_code == 500
        assert crashed.headers["content-type"] == "application/json"
        assert crashed.json() == {"error": "internal error (the reason is in the service log)"}
        # the in-flight bound was given back: requests are not refused afterwards
        assert client.app.state.admission.inflight == 0  # type: ignore[attr-defined]
        assert client.get("/v2/health/live").status_code == 200
    assert "secret internal detail" in caplog.text


# --- memory bounds (issue #14 item 4) --------------------------------------------------------

ELEMENTS = 1000  # max_request_elements in these tests


def _rows(n: int) -> dict:
    data = [0.5] * (16 * n)
    return {"inputs": [{"name": "x", "shape": [n, 16], "datatype": "FP32", "data": data}]}


@pytest.fixture
def bounded(repo: Path) -> Iterator[TestClient]:
    with ready_client(make_app(repo, max_request_elements=ELEMENTS)) as client:
        yield client


def test_gzip_bodies_inflate_only_up_to_the_byte_limit(bounded: TestClient) -> None:
    bomb = gzip.compress(b"[" + b"0," * BODY_LIMIT + b"0]", 9)  # ~2 MiB of JSON in ~2 KiB
    assert len(bomb) < 8 * 1024
    response = bounded.post(
        "/v2/models/tiny/infer", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert response.json() == {"error": f"decompressed body is over the {BODY_LIMIT}-byte limit"}


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_json_bodies_over_the_element_limit_are_refused_before_parsing(
    bounded: TestClient, encoding: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = orjson.dumps(_rows(400))  # 6,400 values: over the limit plus HEADER_VALUES
    headers = {}
    if encoding:
        body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
    parsed: list[int] = []
    real_loads = codec.orjson.loads

    def counting_loads(raw: bytes) -> object:
        parsed.append(len(raw))
        return real_loads(raw)

    monkeypatch.setattr(codec.orjson, "loads", counting_loads)
    response = bounded.post("/v2/models/tiny/infer", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert "limit of 1000 tensor elements (max_request_elements)" in response.json()["error"]
    assert parsed == []  # refused from the raw bytes: nothing was parsed
    v1 = bounded.post("/v1/models/tiny:predict", json={"instances": [[0.5] * 16] * 70})
    assert v1.status_code == 413
    assert "max_request_elements" in v1.json()["error"]
    small = bounded.post("/v2/models/tiny/infer", json=_rows(ELEMENTS // 16))  # 62 rows: fine
    assert small.status_code == 200, small.text


def test_declared_shapes_over_the_element_limit_are_refused(bounded: TestClient) -> None:
    x = np.zeros((100, 16), np.float32)  # 1,600 elements as binary data: few bytes, many rows
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [100, 16],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    )
    response = bounded.post(
        "/v2/models/tiny/infer",
        content=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 413
    assert response.json()["error"] == (
        "the request's inputs hold 1600 elements, over the service's limit of 1000 "
        "(max_request_elements)"
    )


def _hold_open(port: int, path: str) -> socket.socket:
    """An inference request whose body has not fully arrived: it stays in flight."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    return sock


def test_requests_in_flight_are_bounded(repo: Path) -> None:
    with LiveServer(make_app(repo, max_inflight_requests=2)) as server:
        held = [_hold_open(server.port, "/v2/models/tiny/infer") for _ in range(2)]
        try:
            deadline = time.monotonic() + 10
            refused = httpx.post(f"{server.url}/v2/models/tiny/infer", json=_rows(1))
            while refused.status_code == 200 and time.monotonic() < deadline:  # not yet read
                refused = httpx.post(f"{server.url}/v2/models/tiny/infer", json=_rows(1))
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"] == (
                "the service is handling its limit of 2 inference requests "
                "(max_inflight_requests); retry shortly"
            )
            v1 = httpx.post(f"{server.url}/v1/models/tiny:predict", json={"instances": [[0] * 16]})
            assert v1.status_code == 503
            # health, metadata and metrics are never refused
            assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
            assert httpx.get(f"{server.url}/v2/models/tiny").status_code == 200
            text = httpx.get(f"{server.url}/metrics").text
            assert metric(text, "onnx_service_inflight_requests") == 2
            assert metric(text, "onnx_service_overload_rejections_total") >= 2
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        answer = httpx.post(f"{server.url}/v2/models/tiny/infer", json=_rows(1))
        while answer.status_code == 503 and time.monotonic() < deadline:  # closing takes a moment
            time.sleep(0.05)
            answer = httpx.post(f"{server.url}/v2/models/tiny/infer", json=_rows(1))
        assert answer.status_code == 200, answer.text


# --- listen first, load after (issue #14 item 6) ---------------------------------------------


def test_the_server_is_live_at_once_and_ready_after_loading(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_load = ModelVersion.load

    def slow_load(**kwargs: object) -> ModelVersion:  # a repository that takes long to load
        assert release.wait(60), "the test never released the load"
        return real_load(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ModelVersion, "load", staticmethod(slow_load))
    body = _rows(1)
    with LiveServer(make_app(repo), wait_ready=False) as server:
        url = server.url
        monkeypatch.setenv("ONNX_SERVICE_PORT", str(server.port))
        assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
        assert httpx.get(f"{url}/v2/health/ready").status_code == 503
        assert healthcheck.main([]) == 0  # the container's check: live
        assert healthcheck.main(["--ready"]) == 1
        infer = httpx.post(f"{url}/v2/models/tiny/infer", json=body)
        assert infer.status_code == 503
        assert infer.json()["error"] == (
            "model 'tiny' is not loaded yet: the service is still loading its model repository"
        )
        ready = httpx.get(f"{url}/v2/models/tiny/ready")
        assert (ready.status_code, ready.json()) == (503, {"name": "tiny", "ready": False})
        assert httpx.get(f"{url}/v1/models/tiny").json() == {"name": "tiny", "ready": False}
        assert httpx.get(f"{url}/metrics").status_code == 200
        release.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert healthcheck.main(["--ready"]) == 0
        assert httpx.post(f"{url}/v2/models/tiny/infer", json=body).status_code == 200
        assert httpx.get(f"{url}/v2/models/nope/ready").status_code == 404  # loaded: unknown
