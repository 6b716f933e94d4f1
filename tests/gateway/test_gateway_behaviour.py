"""A real nginx with the rendered multi-upstream config, Python upstreams behind it, on loopback."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest

from .client import Response, connect, request
from .conftest import Gateway, Lab


@pytest.fixture
def ca(lab: Lab) -> Path:
    return lab.ca_dir / "ca.crt"


def call(
    gw: Gateway,
    ca: Path,
    method: str,
    path: str,
    key: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    return request(gw.scenario.port, method, path, ca=ca, headers=h, body=body)


def log_entry(gw: Gateway, request_id: str) -> dict[str, object]:
    for _ in range(300):
        for entry in gw.access_entries():
            if entry["request_id"] == request_id:
                return entry
        time.sleep(0.02)
    raise AssertionError(f"no access log entry for {request_id}")


def error_body(resp: Response, code: int) -> dict[str, object]:
    assert resp.status == code
    assert resp.headers["Content-Type"] == "application/json"
    payload = resp.json()
    assert payload["error"]["code"] == code  # type: ignore[index]
    return payload


def test_healthz_needs_no_key(multi: Gateway, ca: Path) -> None:
    resp = call(multi, ca, "GET", "/healthz")
    assert resp.status == 200
    assert resp.json() == {"status": "ok"}


def test_missing_or_unknown_key_is_401_json(multi: Gateway, ca: Path, lab: Lab) -> None:
    for name in ("ollama-a", "ollama-b"):
        lab.upstreams[name].reset()  # what earlier tests on this worker sent them
    for key in (None, "x" * 64):
        resp = call(multi, ca, "POST", "/api/generate", key, b'{"model":"m"}')
        error_body(resp, 401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert lab.upstreams["ollama-a"].count("/api/generate") == 0
    assert lab.upstreams["ollama-b"].count("/api/generate") == 0


def test_both_key_headers_authenticate(multi: Gateway, ca: Path, lab: Lab) -> None:
    bearer = call(multi, ca, "GET", "/api/tags", lab.keys.alice)
    header = call(multi, ca, "GET", "/api/tags", headers={"X-API-Key": lab.keys.alice})
    assert bearer.status == header.status == 200
    assert bearer.json()["upstream"] in {"ollama-a", "ollama-b", "ollama-peer"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/pull",
        "/api/Delete",
        "/api/create",
        "/api/copy",
        "/api/push",
        "/api/blobs/sha256:abc",
        "/v2/repository/index",
    ],
)
def test_model_management_is_admin_only(multi: Gateway, ca: Path, lab: Lab, path: str) -> None:
    payload = error_body(call(multi, ca, "POST", path, lab.keys.alice, b"{}"), 403)
    assert "admin" in payload["error"]["message"]  # type: ignore[index]
    admin = call(multi, ca, "POST", path, lab.keys.admin, b"{}")
    assert admin.status == 200
    assert admin.json()["path"] == path


def test_unknown_path_is_404_json(multi: Gateway, ca: Path, lab: Lab) -> None:
    error_body(call(multi, ca, "GET", "/nothing/here"), 404)
    error_body(call(multi, ca, "GET", "/v2foo", lab.keys.alice), 404)


def test_oip_server_metadata_at_v2(multi: Gateway, ca: Path, lab: Lab) -> None:
    resp = call(multi, ca, "GET", "/v2", lab.keys.alice)
    assert resp.status == 200
    assert resp.json()["upstream"] == "onnx"
    assert resp.json()["path"] == "/v2"


def test_body_limits_are_per_route(multi: Gateway, ca: Path, lab: Lab) -> None:
    big = b'{"pad":"' + b"x" * 2000 + b'"}'
    error_body(call(multi, ca, "POST", "/api/chat", lab.keys.alice, big), 413)
    ok = call(multi, ca, "POST", "/v2/models/m/infer", lab.keys.alice, big)
    assert ok.status == 200
    assert ok.json()["upstream"] == "onnx"


def test_openai_prefix_maps_to_ollama_v1(multi: Gateway, ca: Path, lab: Lab) -> None:
    resp = call(multi, ca, "GET", "/openai/v1/models", lab.keys.alice)
    assert resp.status == 200
    assert resp.json()["path"] == "/v1/models"
    assert resp.json()["upstream"].startswith("ollama")
    v1 = call(multi, ca, "GET", "/v1/models", lab.keys.alice)
    assert v1.json()["upstream"] == "onnx"


def test_embeddings_go_by_model_to_onnx_service_or_ollama(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    """The ONNX text models of the model list (minilm) to onnx_service's own OpenAI route, with
    the body unchanged; every other model (magika is ONNX but no text model) to Ollama's /v1."""
    onnx = lab.upstreams["onnx"]
    onnx.reset()
    for model, upstream, path in [
        ("minilm", "onnx", "/openai/v1/embeddings"),
        ("nomic-embed-text", "ollama", "/v1/embeddings"),
        ("magika", "ollama", "/v1/embeddings"),
    ]:
        body = json.dumps({"model": model, "input": ["edge", "AI"]}).encode()
        resp = call(multi, ca, "POST", "/openai/v1/embeddings", lab.keys.alice, body)
        assert resp.status == 200, resp.body
        assert resp.json()["upstream"].startswith(upstream), (model, resp.json())
        assert resp.json()["path"] == path
    (seen,) = onnx.seen
    assert seen.body == json.dumps({"model": "minilm", "input": ["edge", "AI"]}).encode()
    assert "Authorization" not in seen.headers
    assert seen.headers["X-Request-ID"]
    entry_id = "embeddings-route-1"
    call(
        multi, ca, "POST", "/openai/v1/embeddings", lab.keys.alice,
        b'{"model": "minilm", "input": "x"}', headers={"X-Request-ID": entry_id},
    )  # fmt: skip
    assert log_entry(multi, entry_id)["route"] == "onnx_embeddings"


def test_upstreams_never_see_keys_and_get_a_request_id(multi: Gateway, ca: Path, lab: Lab) -> None:
    onnx = lab.upstreams["onnx"]
    onnx.reset()
    call(
        multi,
        ca,
        "POST",
        "/v2/models/m/infer",
        lab.keys.alice,
        b"{}",
        {"X-Request-ID": "client-chosen-id-1", "X-API-Key": lab.keys.alice},
    )
    call(multi, ca, "GET", "/v2/models/m", lab.keys.alice)
    assert len(onnx.seen) == 2
    for seen in onnx.seen:
        names = {k.lower() for k in seen.headers}
        assert "authorization" not in names
        assert "x-api-key" not in names
    assert onnx.seen[0].headers["X-Request-ID"] == "client-chosen-id-1"
    generated = onnx.seen[1].headers["X-Request-ID"]
    assert len(generated) == 32
    assert generated != "client-chosen-id-1"


def test_security_headers_and_no_version(multi: Gateway, ca: Path) -> None:
    resp = call(multi, ca, "GET", "/healthz")
    assert resp.headers["Server"] == "nginx"
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=63072000")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Request-ID"]


def test_access_log_is_json_with_client_and_never_the_key(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    call(
        multi,
        ca,
        "GET",
        "/api/tags?secret=no",
        lab.keys.alice,
        headers={"X-Request-ID": "log-check-1"},
    )
    entry = log_entry(multi, "log-check-1")
    assert entry["client"] == "alice"
    assert entry["role"] == "user"
    assert entry["route"] == "ollama"
    assert entry["status"] == 200
    assert entry["path"] == "/api/tags"
    assert entry["method"] == "GET"
    assert entry["tls"] in {"TLSv1.2", "TLSv1.3"}
    assert str(entry["upstream_addr"]).startswith("127.0.0.1:")
    assert entry["upstream_status"] == "200"
    for field in (
        "request_time",
        "upstream_header_time",
        "upstream_response_time",
        "upstream_connect_time",
        "limit_req",
        "limit_conn",
        "bytes_sent",
    ):
        assert field in entry
    call(multi, ca, "GET", "/api/tags", "y" * 40, headers={"X-Request-ID": "log-check-2"})
    denied = log_entry(multi, "log-check-2")
    assert denied["status"] == 401
    assert denied["client"] == ""
    logs = "".join(
        log.read_text()
        for log in (
            multi.scenario.access_log,
            multi.scenario.access_log_file,
            multi.scenario.error_log,
        )
    )
    for key in lab.keys.all():
        assert key not in logs
    assert "y" * 40 not in logs


def test_the_file_has_every_request_and_stdout_the_refusals(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    # gateway_access_log_dir: every request in the file for mtail; stdout (docker logs) gets the
    # same JSON line for refusals only (gateway_access_log_stdout: refusals, the default)
    call(multi, ca, "GET", "/v2/models", lab.keys.alice, headers={"X-Request-ID": "file-log-1"})
    call(multi, ca, "GET", "/v2/models", "z" * 40, headers={"X-Request-ID": "file-log-2"})
    call(multi, ca, "GET", "/nowhere", lab.keys.alice, headers={"X-Request-ID": "file-log-3"})
    served, refused, missing = (log_entry(multi, f"file-log-{i}") for i in (1, 2, 3))
    assert (served["status"], refused["status"], missing["status"]) == (200, 401, 404)
    # the refusal is logged with the route it asked for, not the place that refused it
    assert (refused["path"], refused["route"]) == ("/v2/models", "onnx_v2")
    deadline = time.monotonic() + 10
    stdout: dict[object, dict[str, object]] = {}
    while time.monotonic() < deadline and not {"file-log-2", "file-log-3"} <= stdout.keys():
        text = multi.scenario.access_log.read_text()
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        stdout = {e["request_id"]: e for e in entries}
        time.sleep(0.2)
    assert stdout.get("file-log-2") == refused
    assert stdout.get("file-log-3") == missing
    assert "file-log-1" not in stdout


def read_stream(
    gw: Gateway,
    ca: Path,
    path: str,
    key: str,
    body: bytes,
    lab: Lab,
    upstream_names: tuple[str, ...],
) -> tuple[list[bytes], bool]:
    """Read the first piece of a streamed reply while the upstream is still holding the rest."""
    for name in upstream_names:
        lab.upstreams[name].reset()
    conn = connect(gw.scenario.port, ca)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.readline()
        still_open = not any(lab.upstreams[n].gate.finished.is_set() for n in upstream_names)
        for name in upstream_names:
            lab.upstreams[name].gate.release.set()
        rest = resp.read().splitlines(keepends=True)
        return [first, *rest], still_open
    finally:
        conn.close()


def test_ndjson_streams_through_unbuffered(multi: Gateway, ca: Path, lab: Lab) -> None:
    chunks, still_open = read_stream(
        multi,
        ca,
        "/api/generate",
        lab.keys.alice,
        b'{"model": "m", "stream": true}',
        lab,
        ("ollama-a", "ollama-b", "ollama-peer"),
    )
    assert still_open, "the first line arrived only after the upstream had finished"
    lines = [json.loads(c) for c in chunks if c.strip()]
    assert [x["response"] for x in lines] == ["t0", "t1", "t2", "t3", "t4"]
    assert lines[-1]["done"] is True


def test_sse_streams_through_unbuffered(multi: Gateway, ca: Path, lab: Lab) -> None:
    chunks, still_open = read_stream(
        multi,
        ca,
        "/openai/v1/chat/completions",
        lab.keys.alice,
        b'{"model": "m", "stream": true}',
        lab,
        ("ollama-a", "ollama-b", "ollama-peer"),
    )
    assert still_open, "the first event arrived only after the upstream had finished"
    events = [c for c in chunks if c.startswith(b"data:")]
    assert len(events) == 5
    assert events[-1] == b"data: [DONE]\n"


def test_per_key_rate_limit_is_429_with_retry_after(multi: Gateway, ca: Path, lab: Lab) -> None:
    # "limited": 1r/m with burst 2 on LLM routes, 1r/m without burst on ONNX routes.
    statuses = [call(multi, ca, "GET", "/api/tags", lab.keys.limited).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    over = call(
        multi, ca, "GET", "/api/tags", lab.keys.limited, headers={"X-Request-ID": "limited-over-1"}
    )
    payload = error_body(over, 429)
    assert over.headers["Retry-After"] == "1"
    assert payload["error"]["type"] == "rate_limited"  # type: ignore[index]
    assert log_entry(multi, "limited-over-1")["limit_req"] == "REJECTED"
    # The ONNX budget is separate: its first request still passes, the second does not.
    assert call(multi, ca, "GET", "/v2/models", lab.keys.limited).status == 200
    assert call(multi, ca, "GET", "/v2/models", lab.keys.limited).status == 429
    # Other keys are not affected.
    assert call(multi, ca, "GET", "/api/tags", lab.keys.alice).status == 200


def test_concurrent_streams_per_key_are_limited(multi: Gateway, ca: Path, lab: Lab) -> None:
    names = ("ollama-a", "ollama-b", "ollama-peer")
    for n in names:
        lab.upstreams[n].reset()
    conn = connect(multi.scenario.port, ca)
    body = b'{"model": "m", "stream": true}'
    try:
        conn.request(
            "POST",
            "/api/generate",
            body=body,
            headers={"Authorization": f"Bearer {lab.keys.streamer}"},
        )
        first = conn.getresponse()
        assert first.status == 200
        first.readline()
        second = call(multi, ca, "POST", "/api/generate", lab.keys.streamer, body)
        error_body(second, 429)
        assert second.headers["Retry-After"] == "1"
        other = call(multi, ca, "GET", "/api/tags", lab.keys.alice)
        assert other.status == 200
    finally:
        for n in names:
            lab.upstreams[n].gate.release.set()
        conn.close()


def test_load_is_spread_over_the_pool(multi: Gateway, ca: Path, lab: Lab) -> None:
    pool = ("ollama-a", "ollama-b", "ollama-peer")
    for n in pool:
        lab.upstreams[n].reset()
    for _ in range(30):
        assert call(multi, ca, "GET", "/api/ps", lab.keys.alice).status == 200
    counts = {n: lab.upstreams[n].count("/api/ps") for n in pool}
    assert sum(counts.values()) == 30
    assert all(c >= 5 for c in counts.values()), counts


def test_no_blind_retry_of_a_post_that_reached_the_upstream(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    pool = ("ollama-a", "ollama-b", "ollama-peer")
    for n in pool:
        lab.upstreams[n].reset()
    # Every upstream drops /api/boom after reading it: a POST is tried once, a GET again.
    post = call(multi, ca, "POST", "/api/boom", lab.keys.admin, b"{}")
    error_body(post, 502)
    assert sum(lab.upstreams[n].count("/api/boom", "POST") for n in pool) == 1
    get = call(multi, ca, "GET", "/api/boom", lab.keys.admin)
    error_body(get, 502)
    assert sum(lab.upstreams[n].count("/api/boom", "GET") for n in pool) >= 2


def test_grafana_websocket_headers_and_own_auth(multi: Gateway, ca: Path, lab: Lab) -> None:
    grafana = lab.upstreams["grafana"]
    grafana.reset()
    resp = call(
        multi,
        ca,
        "GET",
        "/grafana/api/live/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Authorization": "Bearer glsa_token",
        },
    )
    assert resp.status == 200
    assert resp.json()["upgrade"] == "websocket"
    assert resp.json()["connection"] == "upgrade"
    assert grafana.seen[0].path == "/grafana/api/live/ws"
    assert grafana.seen[0].headers["Authorization"] == "Bearer glsa_token"
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_prometheus_needs_basic_auth(multi: Gateway, ca: Path, lab: Lab) -> None:
    prom = lab.upstreams["prometheus"]
    prom.reset()
    none = call(multi, ca, "GET", "/prometheus/api/v1/query?query=up")
    error_body(none, 401)
    assert none.headers["WWW-Authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"prom:wrong-password").decode()
    error_body(
        call(multi, ca, "GET", "/prometheus/", headers={"Authorization": f"Basic {wrong}"}), 401
    )
    right = base64.b64encode(b"prom:prometheus-password-1").decode()
    ok = call(
        multi,
        ca,
        "GET",
        "/prometheus/api/v1/query?query=up",
        headers={"Authorization": f"Basic {right}"},
    )
    assert ok.status == 200
    assert prom.count() == 1
    assert "Authorization" not in prom.seen[0].headers


def test_stub_status_on_the_status_port(multi: Gateway) -> None:
    resp = request(multi.scenario.status_port, "GET", "/stub_status", ca=None)
    assert resp.status == 200
    assert b"Active connections" in resp.body
    assert request(multi.scenario.status_port, "GET", "/healthz", ca=None).status == 200


def test_concurrent_requests_all_answer(multi: Gateway, ca: Path, lab: Lab) -> None:
    results: list[int] = []

    def worker() -> None:
        for _ in range(5):
            results.append(call(multi, ca, "GET", "/v2/health/ready", lab.keys.alice).status)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 20


def test_failover_when_an_upstream_dies(multi: Gateway, ca: Path, lab: Lab) -> None:
    # Runs last in this module: the peer stays down afterwards.
    pool = ("ollama-a", "ollama-b")
    lab.upstreams["ollama-peer"].stop()
    for n in pool:
        lab.upstreams[n].reset()
    statuses = [
        call(
            multi, ca, method, "/api/show", lab.keys.alice, b"{}" if method == "POST" else None
        ).status
        for method in ("GET", "POST") * 10
    ]
    assert statuses == [200] * 20
    assert sum(lab.upstreams[n].count("/api/show") for n in pool) == 20


def test_a_burst_past_every_llm_servers_max_conns_gets_503_at_once(
    minimal: Gateway, ca: Path, lab: Lab
) -> None:
    """Ollama queues every request for a loaded model without limit (server/sched.go GetRunner),
    so the gateway bounds what is in flight per server (gw-minimal: max_conns 2 on its one
    server): a burst past it is answered 503 with Retry-After while the two streams still run,
    instead of waiting behind them up to the 600 s read timeout."""
    up = lab.upstreams["ollama-a"]
    up.reset()
    body = b'{"model": "m", "stream": true}'
    held = []
    try:
        for _ in range(2):
            conn = connect(minimal.scenario.port, ca)
            conn.request("POST", "/api/generate", body=body, headers={"X-API-Key": lab.keys.admin})
            first = conn.getresponse()
            assert first.status == 200
            first.readline()
            held.append(conn)
        burst = [call(minimal, ca, "POST", "/api/generate", lab.keys.admin, body) for _ in range(5)]
        # answered while both streams are still held (the upstream gate is closed)
        assert not up.gate.finished.is_set()
        for resp in burst:
            payload = error_body(resp, 503)
            assert payload["error"]["type"] == "llm_busy"  # type: ignore[index]
            assert resp.headers["Retry-After"] == "1"
        assert up.count("/api/generate") == 2  # nothing queued up behind them
    finally:
        up.gate.release.set()
        for conn in held:
            conn.close()
    # capacity again once a stream ends
    up.gate.finished.wait(timeout=20)
    again = call(minimal, ca, "POST", "/api/generate", lab.keys.admin, b'{"model": "m"}')
    assert again.status == 200


def test_embeddings_errors_are_json(multi: Gateway, ca: Path, lab: Lab) -> None:
    good = b'{"model": "minilm", "input": "x"}'
    payload = error_body(call(multi, ca, "POST", "/openai/v1/embeddings", None, good), 401)
    assert payload["error"]["type"] == "unauthorized"  # type: ignore[index]
    for bad in (b"not json", b"[1, 2]", b'{"input": "x"}', b'{"model": 7}'):
        resp = call(multi, ca, "POST", "/openai/v1/embeddings", lab.keys.alice, bad)
        payload = error_body(resp, 400)
        assert payload["error"]["type"] == "bad_request", bad  # type: ignore[index]
        assert '"model"' in payload["error"]["message"]  # type: ignore[index]
    big = b'{"model": "minilm", "input": "' + b"x" * 5000 + b'"}'
    error_body(call(multi, ca, "POST", "/openai/v1/embeddings", lab.keys.alice, big), 413)
    # the ONNX per-key budget applies ("limited": 1r/m, no burst, on ONNX routes; this test runs
    # after test_per_key_rate_limit_is_429_with_retry_after, which needs that budget unspent)
    statuses = [
        call(multi, ca, "POST", "/openai/v1/embeddings", lab.keys.limited, good).status
        for _ in range(2)
    ]
    assert statuses[-1] == 429, statuses
