"""BYTES tensors (issue #18 item 1): JSON and the binary extension, in and out, batching,
KServe V1, errors, and Triton's own client; checked against direct onnxruntime runs."""

import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from conftest import LiveServer, make_app, ort_run, ready_client
from fastapi.testclient import TestClient
from onnx_models import strings

TEXTS = ["hello", "Grüße, edge!", "", "日本語のテキスト", "abc"]


@pytest.fixture
def text_repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    strings(root / "strings" / "1" / "model.onnx")
    strings(root / "strings_batched" / "1" / "model.onnx")
    (root / "strings_batched" / "config.yaml").write_text(
        "max_batch_size: 8\ndynamic_batching:\n  max_queue_delay_us: 1000000\n"
    )
    return root


@pytest.fixture
def client(text_repo: Path) -> Iterator[TestClient]:
    with ready_client(make_app(text_repo)) as test_client:
        yield test_client


def _reference(repo: Path, texts: list[str]) -> dict[str, np.ndarray]:
    return ort_run(repo / "strings" / "1" / "model.onnx", {"text": np.array(texts, dtype=object)})


def _pack(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def test_metadata_and_config_name_bytes(client: TestClient) -> None:
    meta = client.get("/v2/models/strings").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"][0] == {"name": "shout", "datatype": "BYTES", "shape": [-1]}
    config = client.get("/v2/models/strings_batched/config").json()
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": []}]


def test_json_in_and_out(client: TestClient, text_repo: Path) -> None:
    body = {"inputs": [{"name": "text", "shape": [5], "datatype": "BYTES", "data": TEXTS}]}
    response = client.post("/v2/models/strings/infer", json=body)
    assert response.status_code == 200, response.text
    expected = _reference(text_repo, TEXTS)
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["shout"]["datatype"] == "BYTES"
    assert outputs["shout"]["shape"] == [5]
    assert outputs["shout"]["data"] == list(expected["shout"])
    assert outputs["same"]["data"] == TEXTS
    assert outputs["lower"]["data"] == list(expected["lower"])
    assert outputs["lower"]["data"] == [True, False, False, False, True]


def test_binary_in_and_out(client: TestClient, text_repo: Path) -> None:
    raw = _pack([t.encode() for t in TEXTS])
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [5],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "shout", "parameters": {"binary_data": True}}],
        }
    )
    response = client.post(
        "/v2/models/strings/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    split = int(response.headers["inference-header-content-length"])
    (out,) = orjson.loads(response.content[:split])["outputs"]
    blob = response.content[split:]
    expected = [s.encode() for s in _reference(text_repo, TEXTS)["shout"]]
    assert out["parameters"]["binary_data_size"] == len(blob) == len(_pack(expected))
    assert blob == _pack(expected)


def test_v1_instances_of_text(client: TestClient) -> None:
    response = client.post("/v1/models/strings:predict", json={"instances": ["a", "B"]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"shout": "a!", "same": "a", "lower": True},
        {"shout": "B!", "same": "B", "lower": False},
    ]


def test_text_requests_are_batched_across_requests(text_repo: Path) -> None:
    texts = [[f"r{i}-{j}" for j in range(n)] for i, n in enumerate([1, 2, 1, 3, 1])]  # 8 rows
    with LiveServer(make_app(text_repo, inline_compute_us=0)) as server:

        def post(batch: list[str]) -> httpx.Response:
            body = {
                "inputs": [
                    {"name": "text", "shape": [len(batch)], "datatype": "BYTES", "data": batch}
                ]
            }
            url = f"{server.url}/v2/models/strings_batched/infer"
            return httpx.post(url, json=body, timeout=30)

        with ThreadPoolExecutor(len(texts)) as pool:
            responses = list(pool.map(post, texts))
        metrics = httpx.get(f"{server.url}/metrics").text
    for batch, response in zip(texts, responses, strict=True):
        assert response.status_code == 200, response.text
        shout = next(o for o in response.json()["outputs"] if o["name"] == "shout")
        assert shout["data"] == [t + "!" for t in batch]
    assert 'onnx_service_inference_exec_count_total{model="strings_batched",version="1"} 1.0' in (
        metrics
    )


BAD = [
    ({"data": ["a", 1]}, "BYTES data must be strings"),
    ({"data": [["a"], ["b", "c"]], "shape": [2]}, "not a regular array"),
    ({"datatype": "FP32"}, "datatype FP32 does not match the model's BYTES"),
    ({"data": ["a", "b"]}, "data has 2 elements but shape [1] needs 1"),
    ({"parameters": {"binary_data_size": 3}}, "truncated BYTES element length"),
    ({"parameters": {"binary_data_size": 8}}, "BYTES element runs past its data"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_bytes_inputs_are_400s(client: TestClient, change: dict, message: str) -> None:
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"], **change}
    content = orjson.dumps({"inputs": [tensor]})
    headers = {}
    if "parameters" in change:
        del tensor["data"]
        size = change["parameters"]["binary_data_size"]
        header = orjson.dumps({"inputs": [tensor]})
        # a length of 5 announced, 5 bytes present: cut to the stated size
        content = header + (struct.pack("<I", 5) + b"hello")[:size]
        headers = {"Inference-Header-Content-Length": str(len(header))}
    response = client.post("/v2/models/strings/infer", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_binary_bytes_must_be_utf8(client: TestClient) -> None:
    raw = _pack([b"ok", b"\xff\xfe"])
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    response = client.post(
        "/v2/models/strings/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "BYTES element 1 is not UTF-8 text" in response.json()["error"]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_round_trips_bytes(text_repo: Path, binary: bool) -> None:
    texts = np.array([t.encode() for t in TEXTS], dtype=np.object_)
    with LiveServer(make_app(text_repo)) as server:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        tensor = triton.InferInput("text", [len(texts)], "BYTES")
        tensor.set_data_from_numpy(texts, binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("same", "shout")]
        result = client.infer("strings", [tensor], outputs=outputs)
    expected = _reference(text_repo, TEXTS)
    same, shout = result.as_numpy("same"), result.as_numpy("shout")
    assert same.dtype == np.object_
    # binary outputs come back as bytes (Triton's deserialize_bytes_tensor), JSON ones as str
    decode = (lambda v: v.decode()) if binary else (lambda v: v)
    assert [decode(v) for v in same] == TEXTS
    assert [decode(v) for v in shout] == list(expected["shout"])
