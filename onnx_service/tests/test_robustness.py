"""Abuse and failure handling: a bad request inside a dynamic batch, 500 answers without
internals, and KServe V1 outputs that cannot be rows (issue #14, items 5 and 11)."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer, make_app, metric
from fastapi.testclient import TestClient
from onnx_models import gather, reshape3, uneven


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
    with TestClient(make_app(robust_repo)) as client:
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
    with TestClient(make_app(robust_repo), raise_server_exceptions=False) as client:
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
