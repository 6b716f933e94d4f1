"""Repository layout, config.yaml, version policies, load/unload/index and polling."""

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_app, metric, ready_client
from fastapi.testclient import TestClient
from onnx_models import fixed, mlp, scale

X = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}


def factor(client: TestClient, model: str, version: str | None = None) -> float:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    response = client.post(path, json=X)
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"][0]


def index(client: TestClient) -> dict[tuple[str, str | None], dict]:
    rows = client.post("/v2/repository/index").json()
    return {(r["name"], r.get("version")): r for r in rows}


def test_bad_config_is_reported_and_others_serve(client: TestClient) -> None:
    rows = index(client)
    broken = rows[("broken", None)]
    assert broken["state"] == "UNAVAILABLE"
    assert "max_batch_size" in broken["reason"]
    assert rows[("tiny", "1")]["state"] == "READY"
    assert rows[("flat", "1")]["state"] == "READY"
    ready = client.post("/v2/repository/index", json={"ready": True}).json()
    assert {r["name"] for r in ready} == {"tiny", "flat", "types", "fixed", "magika", "batched"}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ("max_batch_size: [1]\n", "max_batch_size"),
        ("instance_count: 0\n", "instance_count"),
        ("dynamic_batching: {max_queue_delay_us: 10}\n", "needs max_batch_size"),
        ("execution_providers: [NoSuchProvider]\n", "unknown execution providers"),
        ("version_policy: {latest: 1, all: true}\n", "only one of"),
        ("colour: blue\n", "colour"),
        ("a: [unclosed\n", "cannot read config.yaml"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_config_errors(tmp_path: Path, config: str, reason: str) -> None:
    scale(tmp_path / "m" / "1" / "model.onnx", 2.0)
    (tmp_path / "m" / "config.yaml").write_text(config)
    scale(tmp_path / "ok" / "1" / "model.onnx", 2.0)
    with ready_client(make_app(tmp_path)) as client:
        assert reason in index(client)[("m", None)]["reason"]
        assert factor(client, "ok") == 2.0


def test_dynamic_batching_needs_a_batch_dimension(tmp_path: Path) -> None:
    fixed(tmp_path / "f" / "1" / "model.onnx")
    (tmp_path / "f" / "config.yaml").write_text(
        "max_batch_size: 4\ndynamic_batching: {max_queue_delay_us: 100}\n"
    )
    with ready_client(make_app(tmp_path)) as client:
        row = index(client)[("f", "1")]
        assert row["state"] == "UNAVAILABLE"
        assert "dynamic first dimension" in row["reason"]


@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ("", ["3"]),
        ("version_policy: {latest: 2}\n", ["2", "3"]),
        ("version_policy: {all: true}\n", ["1", "2", "3"]),
        ("version_policy: {specific: [1, 3]}\n", ["1", "3"]),
    ],
)
def test_version_policies(tmp_path: Path, policy: str, served: list[str]) -> None:
    for v in (1, 2, 3):
        scale(tmp_path / "m" / str(v) / "model.onnx", float(v))
    scale(tmp_path / "m" / "²" / "model.onnx", 9.0)  # not a version: isdigit() but not 0-9
    scale(tmp_path / "m" / "0" / "model.onnx", 9.0)  # versions start at 1
    (tmp_path / "m" / "config.yaml").write_text(policy)
    with ready_client(make_app(tmp_path)) as client:
        assert client.get("/v2/models/m").json()["versions"] == served
        for v in served:
            assert factor(client, "m", v) == float(v)
        assert factor(client, "m") == float(served[-1])


def test_load_swaps_in_a_new_version(tmp_path: Path) -> None:
    scale(tmp_path / "m" / "1" / "model.onnx", 1.0)
    with ready_client(make_app(tmp_path)) as client:
        assert factor(client, "m") == 1.0
        scale(tmp_path / "m" / "2" / "model.onnx", 2.0)
        assert factor(client, "m") == 1.0  # nothing changes until load (no polling)
        response = client.post("/v2/repository/models/m/load")
        assert response.status_code == 200
        assert response.json() == {"name": "m", "versions": ["2"]}
        assert factor(client, "m") == 2.0
        rows = index(client)
        assert rows[("m", "1")] == {
            "name": "m",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        }
        assert rows[("m", "2")]["state"] == "READY"
        old = client.post("/v2/models/m/versions/1/infer", json=X)
        assert old.status_code == 503
        metrics = client.get("/metrics").text
        assert metric(metrics, "onnx_service_model_loaded", model="m", version="1") == 0
        assert metric(metrics, "onnx_service_model_loaded", model="m", version="2") == 1


def test_failed_load_leaves_the_serving_version(tmp_path: Path) -> None:
    scale(tmp_path / "m" / "1" / "model.onnx", 1.0)
    with ready_client(make_app(tmp_path)) as client:
        (tmp_path / "m" / "2").mkdir()
        (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"not an onnx model")
        response = client.post("/v2/repository/models/m/load", json={})
        assert response.status_code == 400
        assert "version 2" in response.json()["error"]
        assert factor(client, "m") == 1.0
        rows = index(client)
        assert rows[("m", "1")]["state"] == "READY"
        assert rows[("m", "2")]["state"] == "UNAVAILABLE"
        assert "onnxruntime cannot load" in rows[("m", "2")]["reason"]
        text = client.get("/metrics").text
        assert metric(text, "onnx_service_model_load_failures_total", model="m") == 1
        (tmp_path / "m" / "config.yaml").write_text("max_batch_size: nope\n")
        response = client.post("/v2/repository/models/m/load")
        assert response.status_code == 400
        assert factor(client, "m") == 1.0


def test_unload_load_and_unknown(tmp_path: Path) -> None:
    scale(tmp_path / "m" / "1" / "model.onnx", 1.0)
    with ready_client(make_app(tmp_path)) as client:
        assert client.post("/v2/repository/models/m/unload").json() == {
            "name": "m",
            "versions": [],
        }
        assert client.get("/v2/models/m/ready").status_code == 503
        assert client.post("/v2/models/m/infer", json=X).status_code == 503
        assert client.post("/v2/repository/models/m/load").status_code == 200
        assert factor(client, "m") == 1.0
        assert client.post("/v2/repository/models/zz/load").status_code == 404
        assert client.post("/v2/repository/models/zz/unload").status_code == 404
        override = {"parameters": {"config": "{}"}}
        response = client.post("/v2/repository/models/m/load", json=override)
        assert response.status_code == 400
        assert "not supported" in response.json()["error"]


def test_poll_loads_new_versions_and_models(tmp_path: Path) -> None:
    scale(tmp_path / "m" / "1" / "model.onnx", 1.0)
    with ready_client(make_app(tmp_path)) as client:
        repository = client.app.state.repository  # type: ignore[attr-defined]
        scale(tmp_path / "m" / "2" / "model.onnx", 2.0)
        mlp(tmp_path / "new" / "1" / "model.onnx", [4, 4])
        assert client.portal is not None
        client.portal.call(repository.poll)
        assert factor(client, "m") == 2.0
        assert client.get("/v2/models/new/ready").status_code == 200
        for path in (tmp_path / "new" / "1" / "model.onnx", tmp_path / "new" / "1"):
            path.unlink() if path.is_file() else path.rmdir()
        (tmp_path / "new").rmdir()
        client.portal.call(repository.poll)
        assert client.get("/v2/models/new/ready").status_code == 503


def test_background_polling_setting(tmp_path: Path) -> None:
    scale(tmp_path / "m" / "1" / "model.onnx", 1.0)
    with ready_client(make_app(tmp_path, poll_interval_s=0.05)) as client:
        scale(tmp_path / "m" / "2" / "model.onnx", 2.0)
        deadline = time.monotonic() + 20
        while factor(client, "m") != 2.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert factor(client, "m") == 2.0


def test_missing_repository_still_starts(tmp_path: Path) -> None:
    with ready_client(make_app(tmp_path / "absent")) as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post("/v2/repository/index").json() == []
        assert client.post("/v2/repository/models/m/load").status_code == 404


def test_metrics_follow_triton_semantics(client: TestClient) -> None:
    x = np.ones((3, 16), np.float32).reshape(-1).tolist()
    body = {"inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP32", "data": x}]}
    assert client.post("/v2/models/tiny/infer", json=body).status_code == 200
    bad = {"inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP64", "data": x}]}
    assert client.post("/v2/models/tiny/infer", json=bad).status_code == 400
    text = client.get("/metrics").text
    labels = {"model": "tiny", "version": "1"}
    requests = "onnx_service_inference_requests_total"
    assert metric(text, requests, outcome="success", **labels) == 1
    assert metric(text, requests, outcome="invalid_argument", **labels) == 1
    assert metric(text, requests, outcome="backend_error", **labels) == 0
    assert metric(text, "onnx_service_inference_count_total", **labels) == 3
    assert metric(text, "onnx_service_inference_exec_count_total", **labels) == 1
    assert metric(text, "onnx_service_inference_pending_requests", **labels) == 0
    for name in ("request", "queue", "compute"):
        assert metric(text, f"onnx_service_{name}_duration_seconds_count", **labels) == 1
    assert metric(text, "onnx_service_model_loaded", **labels) == 1
    assert metric(text, "onnx_service_model_load_failures_total", model="broken") == 1
    assert "_created" not in text
