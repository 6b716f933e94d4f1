"""gRPC OIP through the gateway: tritonclient.grpc, unchanged, over TLS and HTTP/2 on the
gateway's port with the same API keys; the service's gRPC port is not published on the host."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from appliance_lab import CA, INSTANCE, SECRETS, USER, gateway_url, published
from tritonclient.utils import InferenceServerException

USER_KEY = {"authorization": f"Bearer {SECRETS['user_key']}"}
ADMIN_KEY = {"x-api-key": SECRETS["admin_key"]}


def client() -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(published(), ssl=True, root_certificates=CA)


def test_tritonclient_grpc_gets_the_http_answer_through_the_gateway() -> None:
    rows = np.full((1, 2048), 256, dtype=np.int32)  # magika: a shell script's first bytes
    head = list(b"#!/bin/sh\necho hello from the edge\n")
    rows[0, : len(head)] = head
    tensor = grpcclient.InferInput("bytes", list(rows.shape), "INT32")
    tensor.set_data_from_numpy(rows)
    triton = client()
    assert triton.is_server_ready(headers=USER_KEY)
    result = triton.infer("magika", [tensor], headers=USER_KEY)
    body = {"inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "INT32",
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    http = requests.post(
        gateway_url() + "/v2/models/magika/infer", json=body, headers=USER, verify=CA, timeout=60
    )
    assert http.status_code == 200, http.text
    for output in http.json()["outputs"]:
        got = result.as_numpy(output["name"])
        np.testing.assert_allclose(got.ravel(), np.asarray(output["data"]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda t: t.is_server_live(), "UNAUTHENTICATED"),
        (lambda t: t.get_model_repository_index(headers=USER_KEY), "PERMISSION_DENIED"),
        (lambda t: t.unload_model("magika", headers=USER_KEY), "PERMISSION_DENIED"),
        (lambda t: t.get_model_metadata("no-such-model", headers=USER_KEY), "NOT_FOUND"),
    ],
)
def test_refusals_are_grpc_statuses(call: object, code: str) -> None:
    with pytest.raises(InferenceServerException) as failure:
        call(client())  # type: ignore[operator]
    assert str(failure.value.status()) == f"StatusCode.{code}"


def test_admin_keys_reach_the_repository_and_the_grpc_port_stays_inside() -> None:
    names = {m.name for m in client().get_model_repository_index(headers=ADMIN_KEY).models}
    assert {"magika", "minilm"} <= names
    ports = subprocess.run(
        ["docker", "exec", INSTANCE, "docker", "port", "onnx-service"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "8002/tcp" not in ports, ports
    listening = subprocess.run(
        ["docker", "exec", INSTANCE, "ss", "-ltnH"], capture_output=True, text=True, check=True
    ).stdout
    assert ":8002 " not in listening, listening
