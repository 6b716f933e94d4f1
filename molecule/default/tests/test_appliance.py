"""The appliance from the host side, through the gateway, as a client would use it."""

from __future__ import annotations

import json
import time

import numpy as np
import onnxruntime as ort
import pytest
import requests
from appliance_lab import ADMIN, CA, LAB_STATE, USER, published

PUBLISHED = published()
HOST, HOST_PORT = PUBLISHED.rsplit(":", 1)
URL = f"https://{HOST}:{HOST_PORT}"


def get(path: str, **kwargs) -> requests.Response:
    return requests.get(URL + path, verify=CA, timeout=30, **kwargs)


def post(path: str, **kwargs) -> requests.Response:
    return requests.post(URL + path, verify=CA, timeout=60, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def services_ready() -> None:
    """The services may still be starting right after converge; wait for them (bounded)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if (
                get("/v2/health/ready", headers=USER).status_code == 200
                and get("/api/version", headers=USER).status_code == 200
            ):
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    pytest.fail("the ONNX service and Ollama did not answer through the gateway within 120 s")


def test_tls_is_valid_for_the_lab_ca_and_healthz_needs_no_key() -> None:
    response = get("/healthz")
    assert response.status_code == 200
    assert "max-age=" in response.headers["Strict-Transport-Security"]
    assert "nginx/" not in response.headers.get("Server", "")


def test_plain_http_is_redirected_to_https() -> None:
    response = requests.get(f"http://{HOST}:{HOST_PORT}/healthz", timeout=10, allow_redirects=False)
    assert response.status_code in (301, 308)
    assert response.headers["Location"].startswith("https://")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer " + "0" * 64}])
def test_no_or_unknown_key_is_401_json(headers: dict) -> None:
    response = get("/v2", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401


def test_unknown_path_is_404_json() -> None:
    response = get("/nothing-here", headers=USER)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


def test_user_key_reaches_the_onnx_service_on_v2_and_v1() -> None:
    metadata = get("/v2", headers=USER).json()
    assert metadata["name"]
    assert "model_repository" in metadata["extensions"]
    assert get("/v1/models", headers=USER).status_code == 200
    missing = post("/v2/models/no-such-model/infer", headers=USER, json={"inputs": []})
    assert missing.status_code in (400, 404)
    assert "error" in missing.json()


def test_user_key_reaches_ollama_on_api_and_openai_v1() -> None:
    version = get("/api/version", headers=USER)
    assert version.status_code == 200
    assert "standin" in version.json()["version"]  # the lab's Ollama is the labelled stand-in
    assert get("/openai/v1/models", headers=USER).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/pull"), ("delete", "/api/delete"), ("post", "/v2/repository/index")],
)
def test_model_management_is_admin_only(method: str, path: str) -> None:
    response = requests.request(method, URL + path, headers=USER, json={}, verify=CA, timeout=30)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == 403


def test_admin_pulls_a_model_and_a_user_streams_from_the_real_one() -> None:
    # the stand-in's built-in catalog still serves pulls (there is no registry behind it)
    pulled = post(
        "/api/pull", headers=ADMIN, json={"model": "standin/tiny:latest", "stream": False}
    )
    assert pulled.status_code == 200, pulled.text
    assert pulled.json()["status"] == "success"
    # gemma3:270m was installed by ollama_model from the GGUF on the controller, with the lab's
    # completion-style template; llama.cpp runs it
    _ = requests.post(
        URL + "/api/generate", headers=USER, json={"model": "gemma3:270m", "prompt": ""},
        verify=CA, timeout=300,
    )  # loaded first: the arrival times below are about streaming, not the load  # fmt: skip
    question = {
        "model": "gemma3:270m",
        "prompt": "What is the capital of France? Answer in one word.",
        "stream": False,
        "options": {"num_predict": 12, "temperature": 0, "seed": 1},
    }
    answer = requests.post(
        URL + "/api/generate", headers=USER, json=question, verify=CA, timeout=300
    ).json()
    assert "Paris" in answer["response"], answer
    # streamed token by token: a raw prompt (no template, no early stop) for twelve tokens
    start = time.perf_counter()
    arrivals, chunks = [], []
    with requests.post(
        URL + "/api/generate",
        headers=USER,
        json={
            "model": "gemma3:270m",
            "prompt": "The capital of France is",
            "raw": True,
            # the model's own stop sequences off: twelve tokens of continuation
            "options": {"num_predict": 12, "temperature": 0, "seed": 1, "stop": []},
        },
        verify=CA,
        timeout=300,
        stream=True,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                arrivals.append(time.perf_counter() - start)
                chunks.append(json.loads(line))
    final = chunks[-1]
    assert final["done"] is True
    assert final["done_reason"] == "length"
    assert final["eval_count"] == 12
    assert 8 <= len(chunks) - 1 <= 12  # one piece per token (a split character joins two)
    assert all(not c["done"] for c in chunks[:-1])
    # the pieces arrive spread over the generation, not together in one buffered body
    assert arrivals[-1] - arrivals[0] >= 0.5 * final["eval_duration"] / 1e9
    text = "".join(c["response"] for c in chunks)
    assert text.strip()
    assert not text.startswith("Stand-in")  # written by the model, not the catalog's canned text


def test_admin_key_reaches_the_model_repository() -> None:
    response = post("/v2/repository/index", headers=ADMIN, json={})
    assert response.status_code == 200
    assert isinstance(response.json(), list)


def test_rate_limit_answers_429_with_retry_after() -> None:
    statuses = []
    retry_after = None
    session = requests.Session()
    for _ in range(80):
        # no key: the per-address budget for unauthenticated requests
        response = session.get(URL + "/api/tags", verify=CA, timeout=10)
        statuses.append(response.status_code)
        if response.status_code == 429:
            retry_after = response.headers.get("Retry-After")
            assert response.json()["error"]["code"] == 429
            break
    assert 429 in statuses
    assert retry_after is not None
    assert int(retry_after) >= 1


def _magika_rows() -> np.ndarray:
    rows = np.full((2, 2048), 256, dtype=np.int32)  # 256 is magika's padding token
    for row, content in enumerate((b"#!/bin/sh\necho hello\n", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")):
        rows[row, : len(content)] = list(content)
    return rows


def test_v2_infer_and_v1_predict_give_onnxruntime_numbers() -> None:
    model = json.loads((LAB_STATE / "demo-models.json").read_text())[0]
    rows = _magika_rows()
    expected = ort.InferenceSession(model["src"]).run(None, {"bytes": rows})[0]
    v2 = post(
        f"/v2/models/{model['name']}/infer",
        headers=USER,
        json={
            "id": "molecule-1",
            "inputs": [
                {
                    "name": "bytes",
                    "shape": [2, 2048],
                    "datatype": "INT32",
                    "data": rows.ravel().tolist(),
                }
            ],
        },
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["id"] == "molecule-1"
    output = v2.json()["outputs"][0]
    got = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    v1 = post(
        f"/v1/models/{model['name']}:predict", headers=USER, json={"instances": rows.tolist()}
    )
    assert v1.status_code == 200, v1.text
    np.testing.assert_allclose(np.asarray(v1.json()["predictions"]), expected, rtol=1e-5, atol=1e-6)
