"""gRPC OIP across hosts (issue 16 item 3), from a client's side: tritonclient.grpc, unchanged,
through the VIP with the site's certificate and a user key; the gateway that holds the VIP passes
each call to its own replica or, over mutual TLS, to a peer, so the calls reach every host's ONNX
service (per-host counters), and each answer is the one the HTTP route gives."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
from cluster_lab import CA, HOSTS, INFER, SECRETS, VIP, infer, served

CALLS = 90


def test_grpc_calls_through_the_vip_reach_every_host_with_the_http_answer() -> None:
    rows = np.asarray(INFER["inputs"][0]["data"], dtype=np.int32).reshape(1, 2048)
    tensor = grpcclient.InferInput("bytes", list(rows.shape), "INT32")
    tensor.set_data_from_numpy(rows)
    key = {"authorization": f"Bearer {SECRETS['user_key']}"}
    http = infer()
    assert http.status_code == 200, http.text
    expected = {out["name"]: np.asarray(out["data"]) for out in http.json()["outputs"]}

    before = {h: served(h) for h in HOSTS}
    # the client trusts the site CA only; the VIP is in the gateways' certificates' SANs
    triton = grpcclient.InferenceServerClient(f"{VIP}:30080", ssl=True, root_certificates=CA)
    for _ in range(CALLS):
        result = triton.infer("magika", [tensor], headers=key)
        for name, want in expected.items():
            np.testing.assert_allclose(result.as_numpy(name).ravel(), want, rtol=1e-6, atol=1e-6)
    after = {h: served(h) for h in HOSTS}
    spread = {h: after[h] - before[h] for h in HOSTS}
    print(f"{CALLS} gRPC infer calls through the VIP, per host: {spread}")
    assert sum(spread.values()) == CALLS, spread
    assert all(n > 0 for n in spread.values()), spread
