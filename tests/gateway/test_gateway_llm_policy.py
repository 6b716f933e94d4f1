"""Per-key LLM policy at the gateway: model allow-lists (requests and listings) and key expiry.

Runs the real nginx with Debian 12's njs 0.7.9 (the policy needs no shared dictionary); the
metering and budgets need njs 0.8 and are tested through the lab gateway (molecule).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .client import Response, request
from .conftest import Gateway, Lab


@pytest.fixture
def ca(lab: Lab) -> Path:
    return lab.ca_dir / "ca.crt"


def post(gw: Gateway, ca: Path, path: str, key: str, payload: dict[str, object]) -> Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return request(
        gw.scenario.port, "POST", path, ca=ca, headers=headers, body=json.dumps(payload).encode()
    )


def get(gw: Gateway, ca: Path, path: str, key: str) -> Response:
    return request(gw.scenario.port, "GET", path, ca=ca, headers={"Authorization": f"Bearer {key}"})


def error(resp: Response, code: int, kind: str) -> dict[str, object]:
    assert resp.status == code, (resp.status, resp.body[:300])
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()["error"]
    assert body["code"] == code  # type: ignore[index]
    assert body["type"] == kind  # type: ignore[index]
    return body  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/generate", {"model": "llama3.2:1b", "prompt": "hi"}),
        ("/api/chat", {"model": "llama3.2:1b", "messages": []}),
        ("/api/embed", {"model": "llama3.2:1b", "input": "hi"}),
        ("/api/show", {"model": "llama3.2:1b"}),
        ("/api/show", {"name": "qwen3:8b"}),  # qwen3 is qwen3:latest only
        ("/openai/v1/chat/completions", {"model": "llama3.2:1b", "messages": []}),
        ("/openai/v1/completions", {"model": "gemma2:2b", "prompt": "hi"}),
        ("/openai/v1/embeddings", {"model": "llama3.2:1b", "input": "hi"}),
    ],
)
def test_a_model_outside_the_allow_list_is_403_before_ollama(
    multi: Gateway, ca: Path, lab: Lab, path: str, payload: dict[str, object]
) -> None:
    for up in lab.upstreams.values():
        up.reset()
    body = error(post(multi, ca, path, lab.keys.scoped, payload), 403, "model_not_allowed")
    assert body["model"] == payload.get("model", payload.get("name"))
    assert sum(up.count() for up in lab.upstreams.values()) == 0
    # the same request with a key without an allow-list reaches Ollama
    assert post(multi, ca, path, lab.keys.alice, payload).status == 200


@pytest.mark.parametrize(
    ("path", "model", "upstream_path"),
    [
        ("/api/generate", "gemma3:270m", "/api/generate"),
        ("/api/chat", "gemma3", "/api/chat"),  # gemma3 is gemma3:latest
        ("/api/show", "qwen3", "/api/show"),
        ("/openai/v1/chat/completions", "qwen3:latest", "/v1/chat/completions"),
    ],
)
def test_an_allowed_model_reaches_ollama_with_the_body_unchanged(
    multi: Gateway, ca: Path, lab: Lab, path: str, model: str, upstream_path: str
) -> None:
    for up in lab.upstreams.values():
        up.reset()
    payload = {"model": model, "prompt": "hi", "options": {"seed": 7}, "stream": False}
    resp = post(multi, ca, path, lab.keys.scoped, payload)
    assert resp.status == 200, resp.body
    assert resp.json()["path"] == upstream_path
    seen = [s for up in lab.upstreams.values() for s in up.seen]
    assert len(seen) == 1
    assert json.loads(seen[0].body) == payload
    assert "Authorization" not in seen[0].headers


def test_a_body_that_is_not_a_json_object_is_400(multi: Gateway, ca: Path, lab: Lab) -> None:
    headers = {"Authorization": f"Bearer {lab.keys.scoped}", "Content-Type": "application/json"}
    for body in (b"{not json", b"[1, 2]"):
        resp = request(
            multi.scenario.port, "POST", "/api/generate", ca=ca, headers=headers, body=body
        )
        error(resp, 400, "bad_request")


def test_listings_show_only_the_allowed_models(multi: Gateway, ca: Path, lab: Lab) -> None:
    allowed = ["gemma3:270m", "gemma3:latest", "qwen3:latest"]
    for path in ("/api/tags", "/api/ps"):
        names = [m["name"] for m in get(multi, ca, path, lab.keys.scoped).json()["models"]]
        assert names == allowed
        everything = [m["name"] for m in get(multi, ca, path, lab.keys.alice).json()["models"]]
        assert len(everything) == 5
    resp = get(multi, ca, "/openai/v1/models", lab.keys.scoped)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert [m["id"] for m in resp.json()["data"]] == allowed
    assert get(multi, ca, "/openai/v1/models/qwen3:latest", lab.keys.scoped).status == 200
    error(get(multi, ca, "/openai/v1/models/qwen3:8b", lab.keys.scoped), 404, "model_not_found")
    assert get(multi, ca, "/openai/v1/models/qwen3:8b", lab.keys.alice).status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/generate"),
        ("GET", "/api/tags"),
        ("POST", "/v2/models/m/infer"),
        ("GET", "/v1/models"),
    ],
)
def test_an_expired_key_is_401_saying_so(
    multi: Gateway, ca: Path, lab: Lab, method: str, path: str
) -> None:
    headers = {"Authorization": f"Bearer {lab.keys.expired}", "Content-Type": "application/json"}
    resp = request(
        multi.scenario.port,
        method,
        path,
        ca=ca,
        headers=headers,
        body=b"{}" if method == "POST" else None,
    )
    body = error(resp, 401, "key_expired")
    assert "2024-01-31" in str(body["message"])
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # an unknown key still gets the generic answer
    unknown = request(
        multi.scenario.port, method, path, ca=ca, headers={"Authorization": "Bearer " + "x" * 40}
    )
    error(unknown, 401, "unauthorized")
