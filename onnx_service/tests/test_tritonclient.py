"""Triton's own HTTP client (tritonclient), unchanged, against the service on loopback."""

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from conftest import LiveServer, ort_run
from onnx_models import typed_inputs
from tritonclient.utils import InferenceServerException


@pytest.fixture
def client(live: LiveServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{live.port}")


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("tiny")
    assert not client.is_model_ready("broken")
    assert "model_repository" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("tiny")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    config = client.get_model_config("batched")
    assert config["max_batch_size"] == 8


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_infer(
    client: triton.InferenceServerClient, repo: Path, binary: bool, compression: str | None
) -> None:
    x = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [triton.InferRequestedOutput("y", binary_data=binary)]
    result = client.infer(
        "tiny",
        [tensor],
        outputs=wanted,
        request_id="abc",
        request_compression_algorithm=compression,
    )
    assert result.get_response()["id"] == "abc"
    expected = ort_run(repo / "tiny" / "1" / "model.onnx", {"x": x})["y"]
    np.testing.assert_array_equal(result.as_numpy("y"), expected)


def test_every_datatype_binary(client: triton.InferenceServerClient, repo: Path) -> None:
    feeds = typed_inputs()
    tensors = []
    for name, arr in feeds.items():
        tensor = triton.InferInput(name, list(arr.shape), name.removeprefix("in_"))
        tensor.set_data_from_numpy(arr)
        tensors.append(tensor)
    result = client.infer("types", tensors)  # no outputs given: all of them, in binary
    expected = ort_run(repo / "types" / "1" / "model.onnx", feeds)
    for name, reference in expected.items():
        got = result.as_numpy(name)
        assert got.dtype == reference.dtype
        np.testing.assert_array_equal(got, reference)


def test_repository_and_errors(client: triton.InferenceServerClient) -> None:
    names = {row["name"] for row in client.get_model_repository_index()}
    assert {"tiny", "broken", "magika"} <= names
    client.unload_model("tiny")
    assert not client.is_model_ready("tiny")
    client.load_model("tiny")
    assert client.is_model_ready("tiny")
    tensor = triton.InferInput("x", [1, 16], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 16), np.float32))
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [tensor])
    assert unknown.value.status() == "404"
    assert "unknown model 'nope'" in unknown.value.message()
    wrong = triton.InferInput("x", [1, 16], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, 16), np.float64))
    with pytest.raises(InferenceServerException) as bad:
        client.infer("tiny", [wrong])
    assert bad.value.status() == "400"
    assert "datatype FP64" in bad.value.message()
    with pytest.raises(InferenceServerException) as failed:
        client.load_model("broken")
    assert "max_batch_size" in failed.value.message()
