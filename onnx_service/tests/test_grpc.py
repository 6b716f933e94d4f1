"""gRPC Open Inference Protocol (issue #18 item 4, service side): Triton's own gRPC client
(tritonclient.grpc), unchanged, against the service's gRPC port; same models, batching and
metrics as HTTP; checked against direct onnxruntime runs."""

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from conftest import LiveServer, make_app, metric, ort_run
from onnx_models import strings, typed_inputs
from onnx_service.grpc_api import grpc_service_pb2 as pb
from onnx_service.grpc_api import grpc_service_pb2_grpc as pb_grpc
from test_robustness import _hold_open
from tritonclient.utils import InferenceServerException


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(repo: Path) -> Iterator[tuple[LiveServer, int]]:
    strings(repo / "strings" / "1" / "model.onnx")
    port = _free_port()
    app = make_app(repo, grpc_port=port, max_request_elements=100_000, inline_compute_us=0)
    with LiveServer(app) as server:
        yield server, port


@pytest.fixture
def client(served: tuple[LiveServer, int]) -> tg.InferenceServerClient:
    return tg.InferenceServerClient(url=f"127.0.0.1:{served[1]}")


def test_health_metadata_and_config(client: tg.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("tiny")
    assert client.is_model_ready("tiny", "1")
    assert not client.is_model_ready("broken")
    assert "model_repository" in client.get_server_metadata().extensions
    meta = client.get_model_metadata("tiny", as_json=True)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "16"]}]
    assert meta["versions"] == ["1"]
    config = client.get_model_config("batched", as_json=True)["config"]
    assert config["max_batch_size"] == 8
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == ["16"]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "1000000"
    assert config["parameters"]["adaptive_queue_delay"] == {"string_value": "false"}
    text = client.get_model_config("strings", as_json=True)["config"]
    assert text["input"][0]["data_type"] == "TYPE_STRING"


def test_infer_matches_onnxruntime(client: tg.InferenceServerClient, repo: Path) -> None:
    x = np.random.default_rng(11).standard_normal((3, 16)).astype(np.float32)
    tensor = tg.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("tiny", [tensor], request_id="g-1")
    assert result.get_response().id == "g-1"
    expected = ort_run(repo / "tiny" / "1" / "model.onnx", {"x": x})["y"]
    np.testing.assert_array_equal(result.as_numpy("y"), expected)


def test_every_datatype_and_bytes(client: tg.InferenceServerClient, repo: Path) -> None:
    feeds = typed_inputs()
    tensors = []
    for name, arr in feeds.items():
        tensor = tg.InferInput(name, list(arr.shape), name.removeprefix("in_"))
        tensor.set_data_from_numpy(arr)
        tensors.append(tensor)
    wanted = [tg.InferRequestedOutput("sum_INT64"), tg.InferRequestedOutput("twice_FP16")]
    result = client.infer("types", tensors, outputs=wanted)
    expected = ort_run(repo / "types" / "1" / "model.onnx", feeds)
    for name in ("sum_INT64", "twice_FP16"):
        np.testing.assert_array_equal(result.as_numpy(name), expected[name])
    assert [o.name for o in result.get_response().outputs] == ["sum_INT64", "twice_FP16"]
    texts = np.array(["héllo".encode(), b"", b"edge"], dtype=np.object_)
    tensor = tg.InferInput("text", [3], "BYTES")
    tensor.set_data_from_numpy(texts)
    result = client.infer("strings", [tensor])
    assert list(result.as_numpy("shout")) == ["héllo!".encode(), b"!", b"edge!"]
    assert list(result.as_numpy("lower")) == [False, False, True]


def test_typed_contents_are_accepted(served: tuple[LiveServer, int], repo: Path) -> None:
    """Clients other than tritonclient send values in InferTensorContents, not raw bytes."""
    x = np.arange(16, dtype=np.float32).reshape(1, 16) / 10
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 16]).contents.fp32_contents.extend(
        x.ravel().tolist()
    )
    with grpc.insecure_channel(f"127.0.0.1:{served[1]}") as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(response.outputs[0].shape)
    np.testing.assert_array_equal(got, ort_run(repo / "tiny" / "1" / "model.onnx", {"x": x})["y"])


def test_grpc_and_http_share_batches_and_metrics(served: tuple[LiveServer, int]) -> None:
    server, port = served
    x = np.ones((1, 16), np.float32)

    def over_grpc(_: int) -> np.ndarray:
        client = tg.InferenceServerClient(url=f"127.0.0.1:{port}")
        tensor = tg.InferInput("x", [1, 16], "FP32")
        tensor.set_data_from_numpy(x)
        return client.infer("batched", [tensor]).as_numpy("y")

    def over_http(_: int) -> np.ndarray:
        body = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16}]}
        answer = httpx.post(f"{server.url}/v2/models/batched/infer", json=body, timeout=30)
        return np.array(answer.json()["outputs"][0]["data"], np.float32).reshape(1, 4)

    with ThreadPoolExecutor(8) as pool:  # 8 rows = max_batch_size: one batch closes at once
        futures = [pool.submit(over_grpc, i) for i in range(4)]
        futures += [pool.submit(over_http, i) for i in range(4)]
        results = [f.result() for f in futures]
    for got in results[1:]:
        np.testing.assert_allclose(got, results[0], rtol=1e-5, atol=1e-6)
    text = httpx.get(f"{server.url}/metrics").text
    labels = {"model": "batched", "version": "1"}
    assert metric(text, "onnx_service_inference_requests_total", outcome="success", **labels) == 8
    assert metric(text, "onnx_service_inference_exec_count_total", **labels) < 8


def test_repository_calls(client: tg.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"tiny", "broken", "magika"} <= {row["name"] for row in index}
    client.unload_model("tiny")
    assert not client.is_model_ready("tiny")
    client.load_model("tiny")
    assert client.is_model_ready("tiny")
    with pytest.raises(InferenceServerException) as failed:
        client.load_model("broken")
    assert failed.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "max_batch_size" in failed.value.message()


@pytest.mark.parametrize(
    ("model", "datatype", "shape", "status", "message"),
    [
        ("nope", "FP32", [1, 16], "NOT_FOUND", "unknown model 'nope'"),
        ("tiny", "FP64", [1, 16], "INVALID_ARGUMENT", "datatype FP64 does not match"),
        ("tiny", "FP32", [1, 15], "INVALID_ARGUMENT", "does not match the model's [-1, 16]"),
        ("broken", "FP32", [1, 4], "UNAVAILABLE", "has no version ready"),
        ("tiny", "FP32", [7000, 16], "RESOURCE_EXHAUSTED", "over the service's limit"),
    ],
)
def test_errors_map_to_grpc_status_codes(
    client: tg.InferenceServerClient,
    model: str,
    datatype: str,
    shape: list[int],
    status: str,
    message: str,
) -> None:
    dtype = np.float64 if datatype == "FP64" else np.float32
    tensor = tg.InferInput("x", shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype))
    with pytest.raises(InferenceServerException) as error:
        client.infer(model, [tensor])
    assert error.value.status() == f"StatusCode.{status}"
    assert message in error.value.message()


def test_one_inflight_bound_for_http_and_grpc(repo: Path) -> None:
    port = _free_port()
    app = make_app(repo, grpc_port=port, max_inflight_requests=1)
    with LiveServer(app) as server:
        held = _hold_open(server.port, "/v2/models/tiny/infer")  # HTTP takes the only slot
        try:
            deadline = time.monotonic() + 10
            while (
                metric(httpx.get(f"{server.url}/metrics").text, "onnx_service_inflight_requests")
                < 1
            ):
                assert time.monotonic() < deadline, "the held HTTP request never counted"
                time.sleep(0.05)
            client = tg.InferenceServerClient(url=f"127.0.0.1:{port}")
            tensor = tg.InferInput("x", [1, 16], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, 16), np.float32))
            with pytest.raises(InferenceServerException) as error:
                client.infer("tiny", [tensor])
            assert error.value.status() == "StatusCode.UNAVAILABLE"
            assert "max_inflight_requests" in error.value.message()
            assert client.is_server_live()  # health is never refused
        finally:
            held.close()
        deadline = time.monotonic() + 10
        while metric(httpx.get(f"{server.url}/metrics").text, "onnx_service_inflight_requests") > 0:
            assert time.monotonic() < deadline, "the slot did not come back"
            time.sleep(0.05)
        np.testing.assert_array_equal(
            client.infer("tiny", [tensor]).as_numpy("y").shape, np.array([1, 4])
        )
