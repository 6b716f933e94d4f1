"""POST /openai/v1/embeddings through the gateway: the ONNX text model (minilm, from the model
list) answers from onnx_service in OpenAI's format, with the official openai client; any other
model goes to Ollama as before."""

from __future__ import annotations

import json
import ssl
import subprocess
import uuid

import httpx
import numpy as np
import requests
from appliance_lab import CA, INSTANCE, SECRETS, USER, access_log, gateway_url, wait_for
from openai import OpenAI

URL = gateway_url()
TEXTS = ["The edge appliance serves models next to the machines.", "Grüße aus der Werkhalle"]


def direct(texts: list[str]) -> dict:
    """The service's own answer on the edge host (its loopback port, no gateway)."""
    script = (
        "import json, sys, urllib.request; print(urllib.request.urlopen(urllib.request.Request("
        "'http://127.0.0.1:8001/openai/v1/embeddings', sys.argv[1].encode(), "
        "{'Content-Type': 'application/json'})).read().decode())"
    )
    body = json.dumps({"model": "minilm", "input": texts, "encoding_format": "float"})
    out = subprocess.run(
        ["docker", "exec", INSTANCE, "python3", "-c", script, body],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def access_entry(request_id: str) -> dict | None:
    lines = access_log(request_id)
    return json.loads(lines[-1]) if lines else None


def test_the_openai_client_gets_the_services_embeddings_through_the_gateway() -> None:
    client = OpenAI(
        base_url=f"{URL}/openai/v1",
        api_key=SECRETS["user_key"],
        http_client=httpx.Client(verify=ssl.create_default_context(cafile=CA), timeout=60),
    )
    result = client.embeddings.create(model="minilm", input=TEXTS)  # the client asks for base64
    want = direct(TEXTS)
    assert result.object == "list"
    assert result.model == "minilm"
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens == want["usage"]["prompt_tokens"] > len(TEXTS)
    got = np.array([d.embedding for d in result.data], np.float32)
    expected = np.array([d["embedding"] for d in want["data"]], np.float32)
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_other_models_still_go_to_ollama_and_errors_are_json() -> None:
    request_id = f"embeddings-{uuid.uuid4().hex[:12]}"
    body = {"model": "gemma3:270m", "input": "hello"}
    answer = requests.post(
        f"{URL}/openai/v1/embeddings", json=body, verify=CA, timeout=60,
        headers={**USER, "X-Request-ID": request_id},
    )  # fmt: skip
    assert answer.status_code != 401, answer.text  # whatever Ollama (here its stand-in) says
    assert wait_for(lambda: access_entry(request_id), timeout=10, step=0.5) is not None
    entry = access_entry(request_id)
    assert entry is not None
    assert entry["route"] == "openai", entry
    assert entry["upstream_addr"].endswith(":11434"), entry  # Ollama, not onnx_service
    for bad in (b"{", b'{"input": "x"}'):
        refused = requests.post(
            f"{URL}/openai/v1/embeddings", data=bad, verify=CA, timeout=30,
            headers={**USER, "Content-Type": "application/json"},
        )  # fmt: skip
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "bad_request"
    unknown = requests.post(
        f"{URL}/openai/v1/embeddings", json={"model": "minilm", "input": [[1, 2]]},
        headers=USER, verify=CA, timeout=30,
    )  # fmt: skip
    assert unknown.status_code == 400  # onnx_service's own OpenAI-shaped error
    assert unknown.json()["error"]["type"] == "invalid_request_error"
