"""What an attacker, with or without a key, can do to the gateway: the real nginx on loopback.

Every client here that should count as another client uses its own 127.x source address, so the
per-address limits of one test do not leak into the next.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from .client import Response, request, tls_context
from .conftest import Gateway, Lab

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BAD_LOGIN = {"Authorization": "Basic " + base64.b64encode(b"prom:not-the-password").decode()}


@pytest.fixture
def ca(lab: Lab) -> Path:
    return lab.ca_dir / "ca.crt"


def json_error(resp: Response, code: int) -> dict[str, object]:
    assert resp.status == code, (resp.status, resp.body[:300])
    assert resp.headers["Content-Type"] == "application/json", resp.body[:300]
    payload = resp.json()
    assert payload["error"]["code"] == code  # type: ignore[index]
    return payload


def workers_cpu_seconds(gw: Gateway) -> float:
    """User + system CPU time of the nginx worker processes (children of the master)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == gw.proc.pid:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def raw_tls(gw: Gateway, ca: Path, source: str) -> ssl.SSLSocket:
    sock = socket.create_connection(
        ("127.0.0.1", gw.scenario.port), timeout=30, source_address=(source, 0)
    )
    return tls_context(ca).wrap_socket(sock, server_hostname="127.0.0.1")


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Wait for the server to close the connection; the time it took."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    return time.monotonic() - start


# --- /prometheus/ basic auth: a wrong password costs little, and is limited per address --------


def test_a_wrong_prometheus_password_costs_the_worker_almost_nothing(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    """bcrypt (cost 12) took ~0.27 s of a worker per attempt, blocking every connection on it."""
    attempts = 30
    before = workers_cpu_seconds(multi)
    for _ in range(attempts):
        resp = request(
            multi.scenario.port, "GET", "/prometheus/api/v1/query?query=up", ca=ca,
            headers=BAD_LOGIN, source="127.0.1.1",
        )  # fmt: skip
        json_error(resp, 401)
    per_attempt = (workers_cpu_seconds(multi) - before) / attempts
    # SHA-512 crypt at 1000 rounds is well under a millisecond; bcrypt cost 12 was ~270 ms
    assert per_attempt < 0.02, f"{per_attempt * 1000:.1f} ms of worker CPU per failed login"


def test_a_flood_of_bad_logins_leaves_other_routes_answering(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    stop = threading.Event()
    statuses: list[int] = []

    def flood(source: str) -> None:
        while not stop.is_set():
            statuses.append(
                request(multi.scenario.port, "GET", "/prometheus/", ca=ca, headers=BAD_LOGIN,
                        source=source).status
            )  # fmt: skip

    threads = [threading.Thread(target=flood, args=(f"127.0.2.{i}",)) for i in range(1, 17)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for _ in range(10):
            ok = request(
                multi.scenario.port, "GET", "/v2/models/m", ca=ca,
                headers={"Authorization": f"Bearer {lab.keys.alice}"}, source="127.0.2.100",
            )  # fmt: skip
            assert ok.status == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(statuses) <= {401, 429}, set(statuses)
    assert 401 in statuses


def test_the_prometheus_limit_applies_per_address_with_or_without_a_key(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    """A valid API key used to lift every limit on /prometheus/; the limit is per address now."""
    with_key = {**BAD_LOGIN, "X-API-Key": lab.keys.alice}
    responses = [
        request(multi.scenario.port, "GET", "/prometheus/", ca=ca, headers=with_key,
                source="127.0.3.1")
        for _ in range(60)
    ]  # fmt: skip
    statuses = [r.status for r in responses]
    assert statuses.count(429) >= 10, statuses
    # judge a refusal that happened, not one more request: on a slow machine the bucket may have
    # refilled by the time a 61st request arrives
    over = next(r for r in responses if r.status == 429)
    json_error(over, 429)
    assert over.headers["Retry-After"] == "1"
    # another address is not affected
    assert (
        request(
            multi.scenario.port, "GET", "/prometheus/", ca=ca, headers=BAD_LOGIN, source="127.0.3.2"
        ).status
        == 401
    )


# --- anonymous bodies and slow clients ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed", "refused"),
    [("/grafana/api/ds/query", 900_000, 1_100_000), ("/prometheus/api/v1/query", 200_000, 300_000)],
)
def test_anonymous_routes_take_small_bodies_only(
    multi: Gateway, ca: Path, lab: Lab, path: str, allowed: int, refused: int
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if path.startswith("/prometheus/"):
        headers["Authorization"] = (
            "Basic " + base64.b64encode(b"prom:prometheus-password-1").decode()
        )
    big = request(multi.scenario.port, "POST", path, ca=ca, headers=headers,
                  body=b"q" * refused, source="127.0.4.1")  # fmt: skip
    json_error(big, 413)
    fits = request(multi.scenario.port, "POST", path, ca=ca, headers=headers,
                   body=b"q" * allowed, source="127.0.4.1")  # fmt: skip
    assert fits.status == 200, fits.body[:200]


def test_an_anonymous_body_is_streamed_not_kept_in_temp_files(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    grafana = lab.upstreams["grafana"]
    grafana.reset()
    sock = raw_tls(multi, ca, "127.0.4.2")
    try:
        length = 1_000_000
        sock.sendall(
            b"POST /grafana/api/dashboards/db HTTP/1.1\r\nHost: gw\r\n"
            + f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
            + b"x" * 700_000
        )
        time.sleep(1)
        temp = multi.scenario.run_dir / "client_body"
        assert not temp.exists() or not any(temp.iterdir()), "the body went to a temp file"
        sock.sendall(b"x" * (length - 700_000))
        assert b"200 OK" in sock.recv(4096)
    finally:
        sock.close()
    assert len(grafana.seen[0].body) == length


def test_slow_headers_are_cut_off(multi: Gateway, ca: Path) -> None:
    """Slowloris: a connection that never finishes its headers is closed (3 s in this scenario)."""
    socks = [raw_tls(multi, ca, f"127.0.5.{i}") for i in range(1, 11)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
    waited = [seconds_until_closed(sock, 30) for sock in socks]
    for sock in socks:
        sock.close()
    assert max(waited) < 15, (
        waited
    )  # the default was 60 s; 3 s here (gateway_client_header_timeout)
    assert request(multi.scenario.port, "GET", "/healthz", ca=ca).status == 200


def test_trickled_headers_are_cut_off_too(multi: Gateway, ca: Path) -> None:
    """The header timeout bounds the whole header, not each pause: a byte a second does not help."""
    sock = raw_tls(multi, ca, "127.0.5.11")
    start = time.monotonic()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        sock.settimeout(1)
        while time.monotonic() - start < 30:
            try:
                if not sock.recv(4096):
                    break
            except TimeoutError:
                pass
            except OSError:
                break
            try:
                sock.sendall(b"a")
            except OSError:
                break
    finally:
        sock.close()
    assert time.monotonic() - start < 15


def test_a_slow_body_is_cut_off_before_reaching_the_service(
    multi: Gateway, ca: Path, lab: Lab
) -> None:
    onnx = lab.upstreams["onnx"]
    onnx.reset()
    sock = raw_tls(multi, ca, "127.0.5.20")
    try:
        sock.sendall(
            b"POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\n"
            + f"Authorization: Bearer {lab.keys.alice}\r\nContent-Length: 5000\r\n\r\n".encode()
            + b"{"
        )
        waited = seconds_until_closed(sock, 30)
    finally:
        sock.close()
    assert waited < 15, waited
    assert onnx.count("/v2/models/m/infer") == 0


def test_oversized_headers_uri_and_garbage_get_json_errors(multi: Gateway, ca: Path) -> None:
    huge_header = request(multi.scenario.port, "GET", "/healthz", ca=ca,
                          headers={"X-Big": "h" * 40_000}, source="127.0.6.1")  # fmt: skip
    json_error(huge_header, 400)
    long_uri = request(multi.scenario.port, "GET", "/v2/" + "u" * 20_000, ca=ca, source="127.0.6.1")
    json_error(long_uri, 414)
    sock = raw_tls(multi, ca, "127.0.6.2")
    try:
        sock.sendall(b"GET /healthz HTTP/1.1 trailing-garbage\r\nHost: gw\r\n\r\n")
        answer = sock.recv(65536)
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"Content-Type: application/json" in head
    assert b'"code":400' in body


def test_big_onnx_bodies_wait_in_at_most_the_configured_slots(
    minimal: Gateway, ca: Path, lab: Lab
) -> None:
    """gw-minimal keeps 2 slots: two uploads on their way, a third big one is 429 at once."""
    admin = lab.keys.admin
    length = 300_000
    head = (
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\n"
        + f"Authorization: Bearer {admin}\r\nContent-Length: {length}\r\n\r\n".encode()
    )
    held = [raw_tls(minimal, ca, f"127.0.7.{i}") for i in (1, 2)]
    try:
        for sock in held:
            sock.sendall(head + b"x" * 150_000)
        time.sleep(0.5)
        third = request(minimal.scenario.port, "POST", "/v2/models/m/infer", ca=ca,
                        headers={"Authorization": f"Bearer {admin}"},
                        body=b"y" * length)  # fmt: skip
        json_error(third, 429)
        assert third.headers["Retry-After"]
        # small bodies stay in memory and need no slot
        small = request(minimal.scenario.port, "POST", "/v2/models/m/infer", ca=ca,
                        headers={"Authorization": f"Bearer {admin}"}, body=b"{}")  # fmt: skip
        assert small.status == 200
        for sock in held:
            sock.sendall(b"x" * (length - 150_000))
            assert b"200 OK" in sock.recv(4096)
    finally:
        for sock in held:
            sock.close()
    again = request(minimal.scenario.port, "POST", "/v2/models/m/infer", ca=ca,
                    headers={"Authorization": f"Bearer {admin}"}, body=b"z" * length)  # fmt: skip
    assert again.status == 200


# --- user routes: no key or a wrong key is limited per address before its 401 -------------------


@pytest.mark.parametrize(
    ("method", "path", "source"),
    [
        ("POST", "/v2/models/m/infer", "127.0.8.1"),
        ("GET", "/v1/models", "127.0.8.2"),
        ("POST", "/api/generate", "127.0.8.3"),
        ("POST", "/openai/v1/chat/completions", "127.0.8.4"),
        ("POST", "/openai/v1/embeddings", "127.0.8.5"),
    ],
)
def test_requests_without_a_valid_key_are_limited_per_address_before_their_401(
    minimal: Gateway, ca: Path, lab: Lab, method: str, path: str, source: str
) -> None:
    """gw-minimal allows 1 request a minute with a burst of 3 without a valid key: the key check
    happens before the route's limits, but a refusal still passes the per-address limit first."""
    seen = {name: up.count() for name, up in lab.upstreams.items()}
    statuses = []
    for key in (None, "w" * 64) * 3:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = request(minimal.scenario.port, method, path, ca=ca, source=source, headers=headers,
                       body=b'{"model": "m"}' if method == "POST" else None)  # fmt: skip
        statuses.append(resp.status)
        json_error(resp, resp.status)
    assert statuses[:4] == [401] * 4, statuses
    assert statuses[4:] == [429, 429], statuses
    # another address still gets its 401, and nothing reached a service
    other = request(minimal.scenario.port, method, path, ca=ca,
                    source=source.replace("127.0.8.", "127.0.9."),
                    body=b'{"model": "m"}' if method == "POST" else None)  # fmt: skip
    assert other.headers["WWW-Authenticate"].startswith("Bearer")
    json_error(other, 401)
    assert {name: up.count() for name, up in lab.upstreams.items()} == seen


# --- Ollama routes: an allow-list for user keys --------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/generate"),
        ("POST", "/api/chat"),
        ("POST", "/api/embed"),
        ("POST", "/api/embeddings"),
        ("POST", "/api/show"),
        ("GET", "/api/tags"),
        ("GET", "/api/ps"),
        ("GET", "/api/version"),
        ("POST", "/openai/v1/chat/completions"),
        ("POST", "/openai/v1/completions"),
        ("POST", "/openai/v1/embeddings"),
        ("GET", "/openai/v1/models"),
        ("GET", "/openai/v1/models/gemma3:270m"),
    ],
)
def test_user_keys_reach_the_inference_and_listing_routes(
    multi: Gateway, ca: Path, lab: Lab, method: str, path: str
) -> None:
    resp = request(multi.scenario.port, method, path, ca=ca,
                   headers={"Authorization": f"Bearer {lab.keys.alice}"},
                   body=b'{"model": "m"}' if method == "POST" else None)  # fmt: skip
    assert resp.status == 200, resp.body[:200]
    assert resp.json()["path"] == path.removeprefix("/openai")


@pytest.mark.parametrize(
    ("method", "path", "upstream_path"),
    [
        ("POST", "/api/signout", None),
        ("POST", "/api/me", None),
        ("DELETE", "/api/user/keys/c3NoLWVkMjU1MTk", None),
        ("POST", "/api/experimental/web_search", None),
        ("POST", "/api/experimental/web_fetch", None),
        ("POST", "/api/some-future-route", "/api/some-future-route"),
        ("GET", "/api/generate/", "/api/generate/"),
        ("POST", "/api/Generate", "/api/Generate"),
        ("POST", "/openai/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs"),
    ],
)
def test_everything_else_is_admin_only_or_refused(
    multi: Gateway, ca: Path, lab: Lab, method: str, path: str, upstream_path: str | None
) -> None:
    """Routes that act on the ollama.com account or the internet are refused for every key."""
    user = request(multi.scenario.port, method, path, ca=ca,
                   headers={"Authorization": f"Bearer {lab.keys.alice}"}, body=b"{}")  # fmt: skip
    assert user.status in (403, 404), (user.status, user.body[:200])
    json_error(user, user.status)
    admin = request(multi.scenario.port, method, path, ca=ca,
                    headers={"Authorization": f"Bearer {lab.keys.admin}"}, body=b"{}")  # fmt: skip
    if upstream_path is None:
        assert admin.status in (403, 404)
        json_error(admin, admin.status)
    else:
        assert admin.status == 200, admin.body[:200]
        assert admin.json()["path"] == upstream_path


@pytest.mark.parametrize(
    "path",
    [
        "/api//pull",
        "/api/./pull",
        "/api/tags/../pull",
        "/api/tags/..%2Fpull",
        "/api/%70ull",
        "/api/generate/../delete",
        "/API/pull",
        "/v2//repository/index",
        "/v2/models/../repository/index",
        "/v2/repository%2Findex",
        "/v1/../v2/repository/index",
    ],
)
def test_path_tricks_never_bring_a_user_key_to_an_admin_route(
    multi: Gateway, ca: Path, lab: Lab, path: str
) -> None:
    seen_before = {name: up.count() for name, up in lab.upstreams.items()}
    resp = request(multi.scenario.port, "POST", path, ca=ca,
                   headers={"Authorization": f"Bearer {lab.keys.alice}"}, body=b"{}")  # fmt: skip
    assert resp.status in (403, 404), (resp.status, resp.body[:200])
    json_error(resp, resp.status)
    assert {name: up.count() for name, up in lab.upstreams.items()} == seen_before


def test_a_user_route_gets_the_path_that_was_checked(multi: Gateway, ca: Path, lab: Lab) -> None:
    """The gateway sends the normalized path it authorized, not the client's spelling of it."""
    for name in ("ollama-a", "ollama-b", "ollama-peer"):
        lab.upstreams[name].reset()
    resp = request(multi.scenario.port, "POST", "/api/pull/../generate", ca=ca,
                   headers={"Authorization": f"Bearer {lab.keys.alice}"}, body=b"{}")  # fmt: skip
    assert resp.status == 200
    assert resp.json()["path"] == "/api/generate"
