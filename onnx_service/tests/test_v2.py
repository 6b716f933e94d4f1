"""The Open Inference Protocol on /v2, checked against direct onnxruntime runs."""

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import BODY_LIMIT, ort_run
from fastapi.testclient import TestClient
from onnx_models import magika_model, typed_inputs


def tensor(name: str, arr: np.ndarray, datatype: str, nested: bool = False) -> dict:
    data = arr.tolist() if nested else arr.reshape(-1).tolist()
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}


def output(body: dict, name: str, dtype: type[np.generic]) -> np.ndarray:
    (found,) = [o for o in body["outputs"] if o["name"] == name]
    return np.array(found["data"], dtype=dtype).reshape(found["shape"])


def test_server_metadata_and_health(client: TestClient) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "onnx_service"
    assert {"model_repository", "binary_tensor_data"} <= set(meta["extensions"])
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_model_metadata(client: TestClient) -> None:
    meta = client.get("/v2/models/tiny").json()
    assert meta == {
        "name": "tiny",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
    }
    assert client.get("/v2/models/tiny/versions/1").json() == meta
    assert client.get("/v2/models/tiny/ready").json() == {"name": "tiny", "ready": True}
    assert client.get("/v2/models/tiny/versions/1/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/2/ready").status_code == 404
    config = client.get("/v2/models/batched/config").json()
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [16]}]
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 1000000}
    assert config["parameters"]["adaptive_queue_delay"] is False
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]


@pytest.mark.parametrize("nested", [False, True])
def test_infer_matches_onnxruntime(client: TestClient, repo: Path, nested: bool) -> None:
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    response = client.post(
        "/v2/models/tiny/infer", json={"id": "req-7", "inputs": [tensor("x", x, "FP32", nested)]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "tiny"
    assert body["model_version"] == "1"
    assert body["id"] == "req-7"
    assert body["outputs"][0]["datatype"] == "FP32"
    expected = ort_run(repo / "tiny" / "1" / "model.onnx", {"x": x})["y"]
    np.testing.assert_array_equal(output(body, "y", np.float32), expected)


def test_every_datatype_matches_onnxruntime(client: TestClient, repo: Path) -> None:
    feeds = typed_inputs()
    request = {"inputs": [tensor(n, a, n.removeprefix("in_")) for n, a in feeds.items()]}
    response = client.post("/v2/models/types/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = ort_run(repo / "types" / "1" / "model.onnx", feeds)
    assert {o["name"] for o in body["outputs"]} == set(expected)
    for out in body["outputs"]:
        reference = expected[out["name"]]
        assert out["datatype"] == out["name"].split("_")[1]
        assert out["shape"] == list(reference.shape)
        np.testing.assert_array_equal(output(body, out["name"], reference.dtype.type), reference)


def test_binary_tensor_data_extension(client: TestClient, repo: Path) -> None:
    feeds = typed_inputs()
    header = {
        "inputs": [
            {
                "name": n,
                "shape": list(a.shape),
                "datatype": n.removeprefix("in_"),
                "parameters": {"binary_data_size": a.nbytes},
            }
            for n, a in feeds.items()
        ],
        "outputs": [
            {"name": "twice_FP16", "parameters": {"binary_data": True}},
            {"name": "sum_INT64", "parameters": {"binary_data": False}},
        ],
    }
    json_part = orjson.dumps(header)
    body = json_part + b"".join(a.tobytes() for a in feeds.values())
    response = client.post(
        "/v2/models/types/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(json_part))},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    split = int(response.headers["inference-header-content-length"])
    result = orjson.loads(response.content[:split])
    expected = ort_run(repo / "types" / "1" / "model.onnx", feeds)
    twice, summed = result["outputs"]
    assert twice["name"] == "twice_FP16"
    assert "data" not in twice
    raw = response.content[split:]
    assert len(raw) == twice["parameters"]["binary_data_size"]
    got = np.frombuffer(raw, dtype=np.float16).reshape(twice["shape"])
    np.testing.assert_array_equal(got, expected["twice_FP16"])
    np.testing.assert_array_equal(
        np.array(summed["data"]).reshape(summed["shape"]), expected["sum_INT64"]
    )


def test_outputs_filter(client: TestClient) -> None:
    feeds = typed_inputs()
    request = {
        "inputs": [tensor(n, a, n.removeprefix("in_")) for n, a in feeds.items()],
        "outputs": [{"name": "not_BOOL"}],
    }
    body = client.post("/v2/models/types/infer", json=request).json()
    assert [o["name"] for o in body["outputs"]] == ["not_BOOL"]
    np.testing.assert_array_equal(output(body, "not_BOOL", np.bool_), ~feeds["in_BOOL"])
    assert "id" not in body


def test_pretrained_magika_matches_onnxruntime(client: TestClient) -> None:
    meta = client.get("/v2/models/magika").json()
    (spec,) = meta["inputs"]
    assert spec["datatype"] == "INT32"
    width = spec["shape"][1]
    x = np.random.default_rng(3).integers(0, 256, (2, width)).astype(np.int32)
    response = client.post(
        "/v2/models/magika/infer", json={"inputs": [tensor(spec["name"], x, "INT32")]}
    )
    assert response.status_code == 200, response.text
    expected = ort_run(magika_model(), {spec["name"]: x})
    (name,) = expected
    np.testing.assert_array_equal(output(response.json(), name, np.float32), expected[name])


def test_versioned_infer(client: TestClient) -> None:
    x = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    response = client.post("/v2/models/flat/versions/1/infer", json=x)
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [3.0, 6.0, 9.0, 12.0]
    missing = client.post("/v2/models/flat/versions/2/infer", json=x)
    assert missing.status_code == 404
    assert "unknown version 2" in missing.json()["error"]
    assert client.post("/v2/models/flat/versions/one/infer", json=x).status_code == 400
    assert client.post("/v2/models/flat/versions/²/infer", json=x).status_code == 400
    assert client.get("/v2/models/flat/versions/²").status_code == 400
    assert client.get("/v2/models/flat/versions/0/ready").status_code == 400


X16 = [0.5] * 16
GOOD = {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": X16}


def _inputs(**changes: object) -> dict:
    return {"inputs": [{**GOOD, **changes}]}


ERROR_CASES = [
    ("tiny", b"{not json", 400, "malformed JSON"),
    ("tiny", b"[1, 2]", 400, "JSON object"),
    ("tiny", b"{}", 400, "inputs"),
    ("tiny", {"inputs": []}, 400, "inputs"),
    ("nope", _inputs(), 404, "unknown model 'nope'"),
    ("tiny", _inputs(name="z"), 400, "unknown input 'z'"),
    ("tiny", _inputs(datatype="FP64"), 400, "datatype FP64 does not match"),
    ("tiny", _inputs(datatype="FLOAT"), 400, "datatype FLOAT does not match"),
    ("tiny", _inputs(shape=[1, 15]), 400, "does not match the model's [-1, 16]"),
    ("tiny", _inputs(shape=[16]), 400, "shape [16]"),
    ("tiny", _inputs(shape=[1, -16]), 400, "shape"),
    ("tiny", _inputs(shape=[2, 16]), 400, "data has 16 elements but shape [2, 16] needs 32"),
    ("tiny", _inputs(shape=[2, 16], data=[]), 400, "data has 0 elements"),
    ("tiny", _inputs(shape=[2**62, 16], data=[]), 413, "over the service's limit of"),
    ("tiny", _inputs(shape=[10**30, 16]), 400, "shape"),
    ("tiny", _inputs(shape=[2**62, 16], parameters={"binary_data_size": 0}), 413, "limit of"),
    ("tiny", _inputs(data=[[1, 2], [3]]), 400, "not a regular array"),
    ("tiny", _inputs(data=["a"] * 16), 400, "not FP32"),
    ("tiny", _inputs(data=None), 400, "has no data"),
    ("tiny", _inputs(data=5), 400, "data must be an array"),
    ("tiny", {"inputs": [GOOD, GOOD]}, 400, "given twice"),
    ("tiny", {"inputs": [GOOD], "outputs": [{"name": "q"}]}, 400, "unknown output 'q'"),
    ("tiny", {"inputs": [GOOD], "parameters": {"binary_data_output": 1}}, 400, "true or false"),
    ("tiny", _inputs(parameters={"binary_data_size": 64}), 400, "shorter than stated"),
    ("tiny", _inputs(parameters={"binary_data_size": 3}), 400, "does not fit"),
    ("batched", _inputs(shape=[9, 16], data=X16 * 9), 400, "over the model's max_batch_size 8"),
    ("fixed", {"inputs": [{**GOOD, "name": "a"}]}, 400, "does not match the model's [2, 3]"),
    ("broken", _inputs(), 503, "invalid config.yaml"),
]


@pytest.mark.parametrize(("model", "body", "status", "message"), ERROR_CASES)
def test_bad_requests_get_clear_json_errors(
    client: TestClient, model: str, body: object, status: int, message: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()  # big ints too
    response = client.post(f"/v2/models/{model}/infer", content=content)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_integer_range_and_kind_are_checked(client: TestClient) -> None:
    feeds = {n: a.reshape(-1).tolist() for n, a in typed_inputs().items()}
    inputs = [
        {"name": n, "shape": [2, 3], "datatype": n.removeprefix("in_"), "data": d}
        for n, d in feeds.items()
    ]
    for item in inputs:
        if item["name"] == "in_UINT8":
            item["data"] = [300] * 6
    response = client.post("/v2/models/types/infer", json={"inputs": inputs})
    assert response.status_code == 400
    assert "out of range for UINT8" in response.json()["error"]
    for item in inputs:
        if item["name"] == "in_UINT8":
            item["data"] = [1] * 6
        if item["name"] == "in_BOOL":
            item["data"] = [1, 0, 1, 0, 1, 0]
    response = client.post("/v2/models/types/infer", json={"inputs": inputs})
    assert response.status_code == 400
    assert "integer values, not BOOL" in response.json()["error"]


def test_missing_input_and_body_limit(client: TestClient) -> None:
    feeds = typed_inputs()
    partial = [tensor(n, a, n.removeprefix("in_")) for n, a in list(feeds.items())[1:]]
    response = client.post("/v2/models/types/infer", json={"inputs": partial})
    assert response.status_code == 400
    assert "missing inputs: in_BOOL" in response.json()["error"]
    big = b"{" + b" " * BODY_LIMIT + b"}"
    response = client.post("/v2/models/tiny/infer", content=big)
    assert response.status_code == 413
    assert "limit" in response.json()["error"]
    chunks = iter([b"{", b" " * (BODY_LIMIT // 2), b" " * (BODY_LIMIT // 2), b"}"])
    streamed = client.post("/v2/models/tiny/infer", content=chunks)  # no Content-Length
    assert streamed.status_code == 413
    assert "limit" in streamed.json()["error"]


def test_unknown_routes_answer_json(client: TestClient) -> None:
    response = client.get("/v2/nothing/here")
    assert response.status_code == 404
    assert "error" in response.json()
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/models/nope/ready").status_code == 404
