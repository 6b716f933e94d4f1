"""The abuse suite: the lab appliance attacked through its published gateway port (issue #14).

As an attacker without a key and as a user with one: slow headers and slow bodies, oversized
headers, URIs and bodies per route, compressed bombs, malformed JSON and OIP bodies at every
route, path tricks against the admin routes, bursts past every limit. Meanwhile a well-behaved
client runs real ONNX inferences. Expected: every answer a 4xx JSON (or a closed connection for
a client too slow to finish its request; or, on an LLM route, the gateway's own 503 `llm_busy`
JSON with Retry-After while every Ollama server is at gateway_llm_max_conns, which the suite's
own LLM requests can fill: 4 in the lab) within a bounded time, no container restarted or killed
for memory, and the appliance serving normally right after. The figures (requests per category,
the well-behaved client's worst latency, restarts) go to <lab state>/abuse-report.json.

Bounded: about a minute; every connection has a timeout.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from appliance_lab import CA, LAB_STATE, USER, gateway_url

URL = gateway_url()
HOST, PORT = urlsplit(URL).hostname, urlsplit(URL).port
MAGIKA = {
    "inputs": [
        {
            "name": "bytes",
            "shape": [1, 2048],
            "datatype": "INT32",
            "data": list(b"#!/bin/sh\necho hello\n") + [256] * (2048 - 21),
        }
    ]
}
REPORT = LAB_STATE / "abuse-report.json"
SLOW_BOUND = 40.0  # seconds a slow client may hold a connection (the timeouts are 10 s)


def appliance_state(host) -> dict[str, dict[str, object]]:
    ids = host.check_output("docker ps -aq --filter label=org.edgeai.appliance=true").split()
    return {
        c["Name"].lstrip("/"): {
            "restarts": c["RestartCount"],
            "started": c["State"]["StartedAt"],
            "oom_killed": c["State"]["OOMKilled"],
            "running": c["State"]["Running"],
        }
        for c in json.loads(host.check_output(f"docker inspect {' '.join(ids)}"))
    }


def tls_socket() -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=CA)
    sock = socket.create_connection((HOST, PORT), timeout=SLOW_BOUND)
    return context.wrap_socket(sock, server_hostname=HOST)


def held_until_closed(
    first: bytes, trickle: bytes = b"", every: float = 2.0
) -> tuple[float, bytes]:
    """Send `first`, then a byte of `trickle` every few seconds, then nothing: the seconds until the
    server hangs up, and what it answered first (b"" when it just closed)."""
    start = time.monotonic()
    answer = b""
    with tls_socket() as sock:
        sock.sendall(first)
        sock.settimeout(every)
        for byte in [*trickle, None]:
            try:
                data = sock.recv(4096)
                answer = answer or data
                if not data:
                    break
            except TimeoutError:
                pass
            except OSError:
                break
            if byte is None or time.monotonic() - start > SLOW_BOUND:
                sock.settimeout(max(0.1, SLOW_BOUND - (time.monotonic() - start)))
                try:
                    while data := sock.recv(4096):
                        answer = answer or data
                except OSError:
                    pass
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
    return time.monotonic() - start, answer


def llm_busy(path: str, resp: requests.Response) -> bool:
    """The gateway's answer when every Ollama server is at its connection cap: a 503 of its own
    (type llm_busy) with Retry-After, on an LLM route only."""
    if resp.status_code != 503 or not path.startswith(("/api/", "/openai/")):
        return False
    try:
        kind = resp.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return False
    return kind == "llm_busy" and resp.headers.get("Retry-After", "").isdigit()


class Attack:
    """Runs the categories, counts requests and checks every answer."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.statuses: dict[str, Counter[int]] = {}
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def send(self, category: str, method: str, path: str, expect: set[int], **kwargs) -> None:
        try:
            resp = requests.request(method, URL + path, verify=CA, timeout=60, **kwargs)
        except requests.RequestException as error:
            self.note(category, 0, f"{method} {path}: {type(error).__name__}")
            return
        problem = ""
        if resp.status_code not in expect and not llm_busy(path, resp):
            problem = f"{method} {path}: {resp.status_code} {resp.text[:120]!r}"
        elif resp.status_code >= 400 and "json" not in resp.headers.get("Content-Type", ""):
            problem = f"{method} {path}: {resp.status_code} is not JSON"
        self.note(category, resp.status_code, problem)

    def note(self, category: str, status: int, problem: str = "") -> None:
        with self.lock:
            self.counts[category] += 1
            self.statuses.setdefault(category, Counter())[status] += 1
            if problem:
                self.problems.append(f"{category}: {problem}")


# malformed for a generate or chat request, but a valid /api/show request: it names a model the
# lab serves, and Ollama's show reads "model" and ignores fields it does not know
WRONG_TYPES = b'{"model": "gemma3:270m", "messages": "nope", "prompt": 7}'
BAD_BODIES = [
    b"{",
    b"[]",
    b"null",
    b'{"inputs": "x"}',
    b'{"inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "INT32", "data": [1]}]}',
    b'{"inputs": [{"name": "bytes", "shape": [-1], "datatype": "INT32", "data": []}]}',
    b'{"inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "NOPE", "data": []}]}',
    b'{"instances": [[1, 2, 3]]}',
    b'{"model": 5, "prompt": ["x"]}',
    WRONG_TYPES,
    b"\xff\xfe\x00garbage",
]
ROUTES = [
    ("/v2/models/magika/infer", USER),
    ("/v1/models/magika:predict", USER),
    ("/api/generate", USER),
    ("/api/chat", USER),
    # /api/show reads a JSON body too; the lab's Ollama stand-in has no /api/embed (gin's plain
    # 404 for a route it lacks), so that route would test the stand-in, not the appliance
    ("/api/show", USER),
    ("/openai/v1/chat/completions", USER),
    ("/v2/repository/models/magika/unload", USER),
]
PATH_TRICKS = [
    "/api//pull",
    "/api/./pull",
    "/api/tags/../pull",
    "/api/tags/..%2Fpull",
    "/api/%70ull",
    "/API/pull",
    "/api/create/",
    "/api/blobs/sha256:00",
    "/api/signout",
    "/api/experimental/web_search",
    "/v2//repository/index",
    "/v2/models/../repository/index",
    "/v2/repository%2Findex",
    "/v1/../v2/repository/index",
    "/openai/v1/../../api/delete",
]


def bomb() -> bytes:
    """30 KiB of gzip that inflates to 64 MiB of a JSON number list."""
    raw = b'{"inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "INT32", "data": ['
    raw += b"0," * (32 * 1024 * 1024) + b"0]}]}"
    return gzip.compress(raw, compresslevel=9)


@pytest.fixture(scope="module")
def ready() -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            ok = requests.post(URL + "/v2/models/magika/infer", json=MAGIKA, headers=USER,
                               verify=CA, timeout=10)  # fmt: skip
            if ok.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    pytest.fail("magika did not answer through the gateway within 120 s")


def test_the_appliance_survives_the_abuse_suite(host, ready) -> None:
    before = appliance_state(host)
    attack = Attack()
    latencies: list[float] = []
    good_failures: list[str] = []
    stop = threading.Event()

    def well_behaved() -> None:
        session = requests.Session()
        while not stop.is_set():
            start = time.monotonic()
            try:
                resp = session.post(URL + "/v2/models/magika/infer", json=MAGIKA, headers=USER,
                                    verify=CA, timeout=60)  # fmt: skip
                if resp.status_code != 200:
                    good_failures.append(f"{resp.status_code} {resp.text[:100]}")
            except requests.RequestException as error:
                good_failures.append(type(error).__name__)
            latencies.append(time.monotonic() - start)
            stop.wait(0.2)

    def slow_headers() -> None:
        """Slowloris: a header byte every 2 s; the header timeout bounds the whole header."""
        held, _ = held_until_closed(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: ", b"a" * 60)
        attack.note("slow headers", 0 if held < SLOW_BOUND else -1,
                    "" if held < SLOW_BOUND else "held the connection past the bound")  # fmt: skip

    def slow_body(path: str, headers: dict[str, str]) -> None:
        """Headers, a little body, then silence: cut off after the body timeout, refused at once
        (429) past a limit, or answered by the service early (the browser routes stream bodies)."""
        head = f"POST {path} HTTP/1.1\r\nHost: edge\r\nContent-Length: 100000\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        held, answer = held_until_closed(head.encode() + b"{")
        status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0
        problem = ""
        if held >= SLOW_BOUND:
            problem = f"{path} held past the bound"
        elif not (status == 0 or 400 <= status < 500):
            problem = f"{path} answered {answer[:80]!r}"
        attack.note("slow bodies", status, problem)

    bad_login = {"Authorization": "Basic " + base64.b64encode(b"lab:wrong-password").decode()}
    gzip_headers = {**USER, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    the_bomb = bomb()
    jobs: list[Callable[[], None]] = []
    jobs += [slow_headers] * 40
    jobs += [lambda: slow_body("/v2/models/magika/infer", USER)] * 10
    # 24 at once from one address on a browser route: past gateway_conn_limit_per_address (16)
    jobs += [lambda: slow_body("/grafana/api/user", {})] * 24
    for size in (16_000, 40_000):
        jobs.append(lambda s=size: attack.send("oversized headers", "GET", "/healthz", {400},
                                               headers={"X-Big": "h" * s}))  # fmt: skip
        jobs.append(lambda s=size: attack.send("oversized headers", "GET", "/v2/" + "u" * s,
                                               {414}, headers=USER))  # fmt: skip
    for path, headers, size in [
        ("/grafana/api/dashboards/db", {}, 2 * 1024 * 1024),
        ("/prometheus/api/v1/query", bad_login, 512 * 1024),
        ("/v2/models/magika/infer", USER, 17 * 1024 * 1024),
        ("/v1/models/magika:predict", USER, 17 * 1024 * 1024),
        ("/api/chat", USER, 17 * 1024 * 1024),
        ("/openai/v1/chat/completions", USER, 17 * 1024 * 1024),
    ]:
        jobs.append(lambda p=path, h=headers, s=size: attack.send(
            "oversized bodies", "POST", p, {413}, headers=h, data=b"x" * s))  # fmt: skip
    for path in ("/v2/models/magika/infer", "/v1/models/magika:predict"):
        jobs += [lambda p=path: attack.send("compressed bombs", "POST", p, {400, 413},
                                            headers=gzip_headers, data=the_bomb)] * 3  # fmt: skip
    for path, headers in ROUTES:
        for body in BAD_BODIES:
            if path == "/api/show" and body == WRONG_TYPES:
                continue
            jobs.append(lambda p=path, h=headers, b=body: attack.send(
                "malformed bodies", "POST", p, set(range(400, 500)),
                headers={**h, "Content-Type": "application/json"}, data=b))  # fmt: skip
    for path in PATH_TRICKS:
        for method in ("GET", "POST", "DELETE"):
            jobs.append(lambda p=path, m=method: attack.send(
                "path tricks", m, p, {403, 404, 405, 429}, headers=USER, data=b"{}"))  # fmt: skip
    jobs += [lambda: attack.send("bursts", "GET", "/api/tags", {401, 429})] * 30
    jobs += [lambda: attack.send("bursts", "GET", "/prometheus/api/v1/query?query=up",
                                 {401, 429}, headers=bad_login)] * 80  # fmt: skip
    jobs += [lambda: attack.send("bursts", "GET", "/api/tags", {200, 429}, headers=USER)] * 40

    good = threading.Thread(target=well_behaved)
    good.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            for future in [pool.submit(job) for job in jobs]:
                future.result(timeout=SLOW_BOUND * 3)
    finally:
        stop.set()
        good.join(timeout=90)
    duration = time.monotonic() - started

    after = appliance_state(host)
    restarted = {
        name: after[name]
        for name in before
        if after.get(name, {}).get("started") != before[name]["started"]
        or after[name]["restarts"] != before[name]["restarts"]
        or after[name]["oom_killed"]
    }
    right_after = requests.post(URL + "/v2/models/magika/infer", json=MAGIKA, headers=USER,
                                verify=CA, timeout=30)  # fmt: skip
    report = {
        "duration_s": round(duration, 1),
        "requests_per_category": dict(attack.counts),
        "statuses_per_category": {k: dict(v) for k, v in attack.statuses.items()},
        "well_behaved": {
            "requests": len(latencies),
            "failures": len(good_failures),
            "worst_latency_s": round(max(latencies), 3) if latencies else None,
            "median_latency_s": round(sorted(latencies)[len(latencies) // 2], 3)
            if latencies
            else None,
        },
        "restarts": len(restarted),
        "restarted": restarted,
        "problems": attack.problems,
    }
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    assert attack.problems == [], attack.problems
    assert good_failures == [], good_failures[:10]
    assert restarted == {}, restarted
    assert all(state["running"] for state in after.values()), after
    assert right_after.status_code == 200
    assert sum(attack.counts.values()) == len(jobs)
    time.sleep(5)  # the per-key and per-address limits refill for the tests that follow
