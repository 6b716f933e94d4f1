"""KServe V1 on /v1, checked against direct onnxruntime runs."""

from pathlib import Path

import numpy as np
import pytest
from conftest import ort_run
from fastapi.testclient import TestClient
from onnx_models import ALL_TYPES


def test_model_list_and_status(client: TestClient) -> None:
    models = client.get("/v1/models").json()["models"]
    assert {"tiny", "flat", "types", "fixed", "magika", "batched"} <= set(models)
    assert "broken" not in models
    assert client.get("/v1/models/tiny").json() == {"name": "tiny", "ready": True}
    assert client.get("/v1/models/broken").json() == {"name": "broken", "ready": False}
    assert client.get("/v1/models/nope").status_code == 404


def test_predict_instances_and_inputs(client: TestClient, repo: Path) -> None:
    x = np.random.default_rng(4).standard_normal((5, 16)).astype(np.float32)
    expected = ort_run(repo / "tiny" / "1" / "model.onnx", {"x": x})["y"]
    rows = client.post("/v1/models/tiny:predict", json={"instances": x.tolist()})
    assert rows.status_code == 200, rows.text
    np.testing.assert_array_equal(np.array(rows.json()["predictions"], np.float32), expected)
    cols = client.post("/v1/models/tiny:predict", json={"inputs": x.tolist()})
    np.testing.assert_array_equal(np.array(cols.json()["outputs"], np.float32), expected)


def test_predict_multi_input_model(client: TestClient, repo: Path) -> None:
    rng = np.random.default_rng(5)
    feeds = {}
    for name, (_, dtype) in ALL_TYPES.items():
        raw = rng.integers(0, 2, (2, 3)) if dtype is np.bool_ else rng.integers(0, 100, (2, 3))
        feeds[f"in_{name}"] = raw.astype(dtype)
    expected = ort_run(repo / "types" / "1" / "model.onnx", feeds)
    instances = [{n: a[i].tolist() for n, a in feeds.items()} for i in range(2)]
    body = client.post("/v1/models/types:predict", json={"instances": instances}).json()
    assert len(body["predictions"]) == 2
    for i, row in enumerate(body["predictions"]):
        for name, ref in expected.items():
            np.testing.assert_array_equal(np.array(row[name], ref.dtype), ref[i])
    cols = {n: a.tolist() for n, a in feeds.items()}
    body = client.post("/v1/models/types:predict", json={"inputs": cols}).json()
    for name, ref in expected.items():
        np.testing.assert_array_equal(np.array(body["outputs"][name], ref.dtype), ref)


@pytest.mark.parametrize(
    ("model", "body", "status", "message"),
    [
        ("tiny", b"{oops", 400, "malformed JSON"),
        ("tiny", b'{"instances": [[1]], "inputs": [[1]]}', 400, "exactly one"),
        ("tiny", b'{"instances": []}', 400, "non-empty"),
        ("tiny", b'{"instances": [[1, 2]]}', 400, "does not match the model's [-1, 16]"),
        ("tiny", b'{"instances": [["a"]]}', 400, "not FP32"),
        ("types", b'{"instances": [[1, 2, 3]]}', 400, "each instance must be an object"),
        ("types", b'{"inputs": {"in_BOOL": [[true, false, true]]}}', 400, "missing inputs"),
        ("types", b'{"inputs": {"zzz": [[1]]}}', 400, "unknown inputs: zzz"),
        ("nope", b'{"instances": [[1]]}', 404, "unknown model"),
    ],
)
def test_predict_errors(
    client: TestClient, model: str, body: bytes, status: int, message: str
) -> None:
    response = client.post(f"/v1/models/{model}:predict", content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
