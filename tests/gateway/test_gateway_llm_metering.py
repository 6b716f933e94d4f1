"""Token metering, budgets and /metrics in the lab's nginx image (njs 0.8), on loopback.

The rendered gw-meter scenario runs in the image the lab deploys (Debian 13's nginx 1.26 with
njs 0.8.9; the host's Debian 12 njs 0.7.9 has no shared dictionary), on the host's network so
that it reaches this suite's loopback upstreams. They report 7 prompt and 5 completion tokens
for every answer (upstreams.USAGE_*); the lab's real model is metered in molecule's test_llm.py.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker_run import docker, docker_ready

from .client import Response, connect, request
from .conftest import Lab, Scenario
from .test_gateway_role import IMAGE

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not docker_ready(IMAGE), reason=f"needs Docker and the image {IMAGE}"),
]


Series = dict[str, float]  # a /metrics page: series -> value
SEP = "\u001f"  # between the parts of a key in the gateway's dictionary and its saved file


class Metered:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.name = f"gwtest-meter-{secrets.token_hex(4)}"
        state = scenario.root / "state"
        state.mkdir(exist_ok=True)
        state.chmod(0o777)
        root = str(scenario.root.parent)
        docker(
            "run", "-d", "--name", self.name, "--network", "host",
            "-v", f"{root}:{root}", "--entrypoint", "nginx", IMAGE,
            *scenario.nginx_args()[1:], "-g", "daemon off;",
        )  # fmt: skip
        self.wait()

    def wait(self) -> None:
        for _ in range(200):
            try:
                if request(self.scenario.status_port, "GET", "/healthz", ca=None).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        logs = docker("logs", self.name, check=False)
        raise AssertionError(f"the metered gateway did not start: {logs.stdout}{logs.stderr}")

    def metrics(self) -> dict[str, float]:
        resp = request(self.scenario.status_port, "GET", "/metrics", ca=None)
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        out = {}
        for line in resp.body.decode().splitlines():
            if line and not line.startswith("#"):
                series, value = line.rsplit(" ", 1)
                out[series] = float(value)
        return out

    def metrics_until(self, done: Callable[[Series], bool], what: str) -> Series:
        """The metrics once done(metrics) holds: the gateway counts a request at its end, after the
        response, so a test waits for the count it checks."""
        for _ in range(250):
            now = self.metrics()
            if done(now):
                return now
            time.sleep(0.02)
        raise AssertionError(f"{what} within 5 s")

    def metrics_after(self, before: dict[str, float], key: str, model: str) -> dict[str, float]:
        """The metrics once a new request of `key` for `model` is counted."""
        self.metrics_until(
            lambda m: requests_counted(m, key, model) > requests_counted(before, key, model),
            f"no request of {key} for {model} was counted",
        )
        time.sleep(0.1)  # the same request's histograms and budget, a moment later
        return self.metrics()

    def metrics_when(self, series: str, value: float) -> dict[str, float]:
        """The metrics once `series` reads `value`."""
        return self.metrics_until(lambda m: m.get(series) == value, f"{series} never read {value}")

    def stop(self) -> None:
        docker("rm", "-f", self.name, check=False)


@pytest.fixture(scope="module")
def metered(lab: Lab) -> Iterator[Metered]:
    gw = Metered(lab.scenarios["gw-meter"])
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def ca(lab: Lab) -> Path:
    return lab.ca_dir / "ca.crt"


def post(gw: Metered, ca: Path, path: str, key: str, payload: dict[str, object]) -> Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = json.dumps(payload).encode()
    return request(gw.scenario.port, "POST", path, ca=ca, headers=headers, body=body)


def tokens(m: dict[str, float], key: str, model: str, kind: str) -> float:
    return m.get(f'edgeai_llm_tokens_total{{key="{key}",model="{model}",kind="{kind}"}}', 0)


def requests_of(m: dict[str, float], key: str, model: str, status: int) -> float:
    return m.get(f'edgeai_llm_requests_total{{key="{key}",model="{model}",status="{status}"}}', 0)


def requests_counted(m: dict[str, float], key: str, model: str) -> float:
    """Requests of `key` for `model`, whatever their status."""
    prefix = f'edgeai_llm_requests_total{{key="{key}",model="{model}",'
    return sum(v for series, v in m.items() if series.startswith(prefix))


@pytest.mark.parametrize(
    ("path", "stream"),
    [
        ("/api/generate", False),
        ("/api/generate", True),
        ("/api/chat", True),
        ("/openai/v1/chat/completions", False),
        ("/openai/v1/chat/completions", True),
        ("/openai/v1/completions", True),
    ],
)
def test_counters_grow_by_exactly_the_reported_tokens(
    metered: Metered, ca: Path, lab: Lab, path: str, stream: bool
) -> None:
    model = f"m{secrets.token_hex(3)}:1b"
    lab.upstreams["ollama-a"].gate.release.set()
    before = metered.metrics()
    resp = post(metered, ca, path, lab.keys.alice, {"model": model, "stream": stream})
    assert resp.status == 200, resp.body
    after = metered.metrics_after(before, "alice", model)
    assert tokens(after, "alice", model, "prompt") - tokens(before, "alice", model, "prompt") == 7
    assert (
        tokens(after, "alice", model, "completion") - tokens(before, "alice", model, "completion")
        == 5
    )
    assert requests_of(after, "alice", model, 200) == 1
    if stream and path.startswith("/openai/"):
        # the gateway asked for the usage chunk; the client did not, and does not get it
        events = [e for e in resp.body.split(b"\n\n") if e.startswith(b"data: ")]
        assert events[-1] == b"data: [DONE]"
        assert not any(b'"usage"' in e for e in events)
        assert len(events) == 5


@pytest.mark.parametrize("path", ["/api/embed", "/openai/v1/embeddings"])
def test_embeddings_count_their_prompt_tokens(
    metered: Metered, ca: Path, lab: Lab, path: str
) -> None:
    model = f"e{secrets.token_hex(3)}:1b"
    before = metered.metrics()
    assert post(metered, ca, path, lab.keys.alice, {"model": model, "input": "hi"}).status == 200
    after = metered.metrics_after(before, "alice", model)
    assert tokens(after, "alice", model, "prompt") == 7
    # the stand-in reports completion tokens for every route; Ollama's embed has none
    assert requests_of(after, "alice", model, 200) == 1


@pytest.mark.parametrize("path", ["/api/generate", "/openai/v1/completions"])
def test_a_client_that_leaves_mid_stream_is_charged_for_what_it_got(
    metered: Metered, ca: Path, lab: Lab, path: str
) -> None:
    upstream = lab.upstreams["ollama-a"]
    upstream.reset()  # the stream stops after its first chunk until released
    model = f"gone{secrets.token_hex(3)}:1b"
    before = metered.metrics()
    body = json.dumps({"model": model, "stream": True}).encode()
    conn = connect(metered.scenario.port, ca)
    headers = {"Authorization": f"Bearer {lab.keys.alice}", "Content-Type": "application/json"}
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200
    first = resp.read1()
    assert b"t0" in first
    conn.close()  # the client leaves with one token
    try:
        # The upstream holds the rest until the gateway has noticed the client leave and counted
        # the request: released earlier, the rest (with the final count) could still pass through.
        after = metered.metrics_after(before, "alice", model)
    finally:
        upstream.gate.release.set()
    assert requests_counted(after, "alice", model) == 1
    # no final count reached the gateway: the one piece the client received is charged
    assert tokens(after, "alice", model, "completion") == 1


def test_a_request_ollama_could_not_answer_is_counted_with_its_status(
    metered: Metered, ca: Path, lab: Lab
) -> None:
    model = f"boom{secrets.token_hex(3)}:1b"
    before = metered.metrics()
    resp = post(metered, ca, "/api/chat", lab.keys.alice, {"model": model, "stream": False})
    assert resp.status == 502
    assert resp.json()["error"]["type"] == "upstream_unavailable"
    after = metered.metrics_after(before, "alice", model)
    assert requests_of(after, "alice", model, 502) == 1
    assert tokens(after, "alice", model, "prompt") == 0
    assert tokens(after, "alice", model, "completion") == 0


def test_a_client_that_asked_for_usage_keeps_it(metered: Metered, ca: Path, lab: Lab) -> None:
    lab.upstreams["ollama-a"].gate.release.set()
    payload = {"model": "gemma3:270m", "stream": True, "stream_options": {"include_usage": True}}
    before = metered.metrics()
    resp = post(metered, ca, "/openai/v1/chat/completions", lab.keys.alice, payload)
    usage = [e for e in resp.body.split(b"\n\n") if b'"usage"' in e]
    assert len(usage) == 1
    assert json.loads(usage[0][6:])["usage"]["completion_tokens"] == 5
    after = metered.metrics_after(before, "alice", "gemma3:270m")
    assert (
        tokens(after, "alice", "gemma3:270m", "completion")
        - tokens(before, "alice", "gemma3:270m", "completion")
        == 5
    )


def test_policy_rejections_are_counted_and_never_reach_ollama(
    metered: Metered, ca: Path, lab: Lab
) -> None:
    before = metered.metrics()
    resp = post(metered, ca, "/api/generate", lab.keys.scoped, {"model": "llama3:8b"})
    assert resp.status == 403
    after = metered.metrics_after(before, "scoped", "llama3:8b")
    assert (
        requests_of(after, "scoped", "llama3:8b", 403)
        == requests_of(before, "scoped", "llama3:8b", 403) + 1
    )
    assert tokens(after, "scoped", "llama3:8b", "prompt") == 0


def test_the_budget_key_gets_429_with_retry_after_once_spent(
    metered: Metered, ca: Path, lab: Lab
) -> None:
    lab.upstreams["ollama-a"].gate.release.set()
    # 30 tokens a day, 12 per answer: the third request starts under the budget and finishes
    statuses = [
        post(
            metered, ca, "/api/generate", lab.keys.budget, {"model": "gemma3:270m", "stream": False}
        ).status
        for _ in range(3)
    ]
    assert statuses == [200, 200, 200]
    before = metered.metrics_when('edgeai_llm_budget_used_tokens{key="budget",per="day"}', 36)
    over = post(metered, ca, "/api/generate", lab.keys.budget, {"model": "gemma3:270m"})
    assert over.status == 429
    m = metered.metrics_after(before, "budget", "gemma3:270m")
    assert requests_of(m, "budget", "gemma3:270m", 429) == 1
    error = over.json()["error"]
    assert error["type"] == "token_budget_exceeded"
    assert error["budget"] == {
        "tokens": 30, "per": "day", "used": 36, "resets_at": error["budget"]["resets_at"]
    }  # fmt: skip
    retry = int(over.headers["Retry-After"])
    midnight = (int(time.time()) // 86400 + 1) * 86400
    assert abs(retry - (midnight - time.time())) < 5
    assert m['edgeai_llm_budget_used_tokens{key="budget",per="day"}'] == 36
    assert m['edgeai_llm_budget_tokens{key="budget",per="day"}'] == 30


def test_latency_histograms_per_model(metered: Metered, ca: Path, lab: Lab) -> None:
    upstream = lab.upstreams["ollama-a"]
    upstream.reset()  # a new gate: the stream waits after its first chunk until released
    gate = upstream.gate

    def release_later() -> None:  # 0.3 s after the first chunk left, however slow the machine
        if gate.first_sent.wait(20):
            time.sleep(0.3)
        gate.release.set()

    threading.Thread(target=release_later, daemon=True).start()
    before = metered.metrics()
    post(metered, ca, "/api/generate", lab.keys.alice, {"model": "hist:1b", "stream": True})
    m = metered.metrics_after(before, "alice", "hist:1b")
    for name in ("time_to_first_token_seconds", "request_duration_seconds", "queue_seconds"):
        assert m[f'edgeai_llm_{name}_count{{model="hist:1b"}}'] == 1, name
        assert m[f'edgeai_llm_{name}_bucket{{model="hist:1b",le="+Inf"}}'] == 1
    assert m['edgeai_llm_tokens_per_second_count{model="hist:1b"}'] == 1
    # the first token came at once, the other four 0.3 s later: under 20 tokens/s
    assert m['edgeai_llm_time_to_first_token_seconds_bucket{model="hist:1b",le="0.25"}'] == 1
    assert m['edgeai_llm_tokens_per_second_bucket{model="hist:1b",le="20"}'] == 1


def test_onnx_requests_are_not_metered(metered: Metered, ca: Path, lab: Lab) -> None:
    before = metered.metrics()
    headers = {"Authorization": f"Bearer {lab.keys.alice}"}
    assert request(metered.scenario.port, "GET", "/v2/models", ca=ca, headers=headers).status == 200
    assert metered.metrics() == before


def saved_when(metered: Metered, done: Callable[[dict], bool], what: str) -> dict:
    """The gateway's saved file once done(its content) holds (gw-meter saves every second)."""
    state = metered.scenario.root / "state" / "llm-usage.json"
    for _ in range(100):
        if state.exists() and done(saved := json.loads(state.read_text())):
            return saved
        time.sleep(0.1)
    raise AssertionError(f"{what} was not saved in {state} within 10 s")


def test_counters_survive_a_restart(metered: Metered, ca: Path, lab: Lab) -> None:
    lab.upstreams["ollama-a"].gate.release.set()
    assert (
        post(
            metered, ca, "/api/generate", lab.keys.alice, {"model": "keep:1b", "stream": False}
        ).status
        == 200
    )
    metered.metrics_when(
        'edgeai_llm_tokens_total{key="alice",model="keep:1b",kind="completion"}', 5
    )
    saved_when(metered, lambda saved: any(re.search("keep:1b", k) for k in saved), "keep:1b")
    docker("restart", metered.name)
    metered.wait()
    after = metered.metrics()
    assert tokens(after, "alice", "keep:1b", "completion") == 5
    assert after['edgeai_llm_budget_used_tokens{key="budget",per="day"}'] == 36
    # and the budget still holds
    over = post(metered, ca, "/api/generate", lab.keys.budget, {"model": "gemma3:270m"})
    assert over.status == 429


def test_every_worker_has_every_restored_count_from_its_first_request(
    metered: Metered, ca: Path, lab: Lab
) -> None:
    """After a start, scrapes that reach both workers at the same moment all show every saved
    count: none goes on while the other worker is still reading them back, and none stops at
    the 1,024 entries njs's items() returns unless told more. 6,000 more saved series make
    reading them back take long enough for the scrapes to meet it."""
    state = metered.scenario.root / "state" / "llm-usage.json"
    docker("stop", metered.name)  # no save of its own between the read and the write below
    saved = json.loads(state.read_text())
    assert saved[SEP.join(["t", "alice", "keep:1b", "completion"])] == 5  # the test before
    filler = {SEP.join(["t", f"app-{i}", "filler:1b", "prompt"]): 1 for i in range(6000)}
    state.write_text(json.dumps(saved | filler))

    def scrape(barrier: threading.Barrier, seen: list[tuple[float, int]]) -> None:
        barrier.wait()
        page = metered.metrics()
        apps = sum(1 for series in page if 'model="filler:1b"' in series)
        seen.append((tokens(page, "alice", "keep:1b", "completion"), apps))

    for start in ("start", "restart", "restart"):
        docker(start, metered.name)
        metered.wait()  # /healthz, which reads no count
        barrier = threading.Barrier(16)
        seen: list[tuple[float, int]] = []
        threads = [threading.Thread(target=scrape, args=(barrier, seen)) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(seen) == {(5, 6000)}, seen
    # and the next save holds every series too
    lab.upstreams["ollama-a"].gate.release.set()
    body = {"model": "keep:1b", "stream": False}
    assert post(metered, ca, "/api/generate", lab.keys.alice, body).status == 200
    alice = SEP.join(["t", "alice", "keep:1b", "completion"])
    now = saved_when(metered, lambda saved: saved.get(alice) == 10, "the second keep:1b answer")
    assert sum(1 for k in now if k.split(SEP)[2:3] == ["filler:1b"]) == 6000
