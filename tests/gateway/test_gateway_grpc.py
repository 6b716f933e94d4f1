"""gRPC OIP through the real nginx: tritonclient.grpc, unchanged, over TLS and HTTP/2 to the real
onnx_service's gRPC port, with the keys in gRPC metadata and the gateway's refusals as gRPC
statuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from .client import request
from .conftest import Gateway, Lab
from .onnx_grpc import MODEL


@pytest.fixture
def ca(lab: Lab) -> Path:
    return lab.ca_dir / "ca.crt"


def client(gw: Gateway, ca: Path) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(
        f"127.0.0.1:{gw.scenario.port}", ssl=True, root_certificates=str(ca)
    )


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def status_of(call: object) -> str:
    with pytest.raises(InferenceServerException) as failure:
        call()  # type: ignore[operator]
    return str(failure.value.status())


def test_tritonclient_grpc_infers_through_the_gateway(multi: Gateway, ca: Path, lab: Lab) -> None:
    triton = client(multi, ca)
    for headers in (bearer(lab.keys.alice), {"x-api-key": lab.keys.alice}):
        assert triton.is_server_live(headers=headers)
        assert triton.is_model_ready(MODEL, headers=headers)
        meta = triton.get_model_metadata(MODEL, headers=headers)
        assert [i.name for i in meta.inputs] == ["x"]
    x = np.random.default_rng(3).standard_normal((3, 16)).astype(np.float32)
    tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = triton.infer(MODEL, [tensor], headers=bearer(lab.keys.alice))
    session = ort.InferenceSession(str(lab.onnx.model_file), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        result.as_numpy("y"), session.run(["y"], {"x": x})[0], rtol=1e-6, atol=1e-6
    )


def test_refusals_are_grpc_statuses(multi: Gateway, ca: Path, lab: Lab) -> None:
    triton = client(multi, ca)
    assert status_of(triton.is_server_live) == "StatusCode.UNAUTHENTICATED"
    assert status_of(lambda: triton.is_server_live(headers=bearer("x" * 64))) == (
        "StatusCode.UNAUTHENTICATED"
    )
    index = triton.get_model_repository_index
    assert status_of(lambda: index(headers=bearer(lab.keys.alice))) == (
        "StatusCode.PERMISSION_DENIED"
    )
    unload = triton.unload_model
    assert status_of(lambda: unload(MODEL, headers=bearer(lab.keys.alice))) == (
        "StatusCode.PERMISSION_DENIED"
    )
    assert [m.name for m in index(headers=bearer(lab.keys.admin)).models] == [MODEL]
    assert triton.is_model_ready(MODEL, headers=bearer(lab.keys.alice))  # nothing was unloaded
    # the service's own statuses pass through
    missing = lambda: triton.get_model_metadata("nope", headers=bearer(lab.keys.alice))  # noqa: E731
    assert status_of(missing) == "StatusCode.NOT_FOUND"


def test_the_per_key_onnx_limit_holds_for_grpc(multi: Gateway, ca: Path, lab: Lab) -> None:
    """ "limited": 1r/m without burst on the ONNX routes, gRPC included (it may already be spent
    by the HTTP tests that ran before: the second call is refused in any case)."""
    triton = client(multi, ca)
    statuses = []
    for _ in range(2):
        try:
            triton.is_server_live(headers=bearer(lab.keys.limited))
            statuses.append("OK")
        except InferenceServerException as exc:
            statuses.append(f"{exc.status()}: {exc.message()}")
    assert statuses[-1].startswith("StatusCode.RESOURCE_EXHAUSTED:"), statuses
    assert "limit reached" in statuses[-1]


def test_http_clients_still_get_http_1_1_and_json(multi: Gateway, ca: Path, lab: Lab) -> None:
    """HTTP/2 is on for gRPC; HTTP/1.1 clients and the JSON routes are unchanged."""
    resp = request(multi.scenario.port, "GET", "/v2", ca=ca, headers=bearer(lab.keys.alice))
    assert resp.status == 200
    assert resp.json()["upstream"] == "onnx"
