"""The gateways' virtual IP (issue 16 items 2 and 6), from a client's side on this machine: the
VIP answers with the site's certificate; a steady stream of OIP infer requests survives the
holder host's stop (the longest gap and the connections the move cut are measured and printed; a
cut request is retried by the client within the 3 s failover goal, and none may fail); the host
that comes back rejoins without a converge and does not take the VIP back (no flap)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests
from cluster_lab import (
    CA,
    GATEWAYS,
    HOSTS,
    SECRETS,
    URL,
    USER,
    holder,
    infer,
    run,
    running,
    vrrp_log,
    wait_for,
)

# How long a client retries an idempotent request whose connection was lost: the failover goal
RETRY_BUDGET = 3.0


@dataclass
class Stream:
    """A client that sends OIP infer requests through the VIP, one after the other. A request
    whose connection fails (a TLS handshake or a keep-alive connection cut where the VIP left)
    is retried on a new connection for up to RETRY_BUDGET seconds, as a client of an idempotent
    API does; ``cut`` counts those first attempts, ``failed`` what no retry saved."""

    ok: list[float] = field(default_factory=list)
    failed: list[float] = field(default_factory=list)
    cut: list[float] = field(default_factory=list)
    # what the client saw of each failure: the status, or the exception and its innermost reason
    seen: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                answer = infer(session, timeout=2)
            except requests.RequestException as error:
                self.cut.append(now)
                self.seen.append(_reason(error))
                session = requests.Session()
                answer, now = self.retry(session, now)
                if answer is None:
                    self.failed.append(now)
                    continue
            if answer.status_code == 200:
                self.ok.append(now)
            else:
                self.failed.append(now)
                self.seen.append(f"HTTP {answer.status_code}")

    def retry(
        self, session: requests.Session, since: float
    ) -> tuple[requests.Response | None, float]:
        """The answer of the first retry that got one, and when that retry was sent."""
        while time.monotonic() - since < RETRY_BUDGET:
            time.sleep(0.05)
            sent = time.monotonic()
            try:
                return infer(session, timeout=2), sent
            except requests.RequestException as error:
                self.seen.append(f"retry: {_reason(error)}")
        return None, since

    def longest_gap(self) -> float:
        return max((b - a for a, b in zip(self.ok, self.ok[1:], strict=False)), default=0.0)


def _reason(error: requests.RequestException) -> str:
    reason = str(error).rsplit(":", 1)[-1].strip(" ')\"")[:60]
    return f"{type(error).__name__} ({reason})"


def test_the_vip_serves_with_the_site_certificate() -> None:
    wait_for("one gateway holds the VIP", holder, 60)
    answer = requests.get(f"{URL}/healthz", verify=CA, timeout=5)
    assert answer.status_code == 200
    models = requests.get(f"{URL}/v2/models/magika", headers=USER, verify=CA, timeout=5)
    assert models.status_code == 200, models.text


def test_the_vip_moves_when_its_host_stops_and_stays_when_it_returns() -> None:
    first = wait_for("one gateway holds the VIP", holder, 60) is not None and holder()
    assert first
    survivor = next(h for h in GATEWAYS if h != first)
    stream = Stream()
    client = threading.Thread(target=stream.run, daemon=True)
    client.start()
    try:
        time.sleep(5)
        assert stream.ok, "no request went through before the stop"
        stopped_at = time.monotonic()
        run("docker", "stop", "--time", "5", first)
        wait_for(f"the VIP moved to {survivor}", lambda: holder() == survivor, 60, step=0.5)
        time.sleep(10)
    finally:
        stream.stop.set()
        client.join(timeout=10)
    after = [t for t in stream.ok if t > stopped_at]
    assert after, "no request went through after the VIP moved"
    gap = stream.longest_gap()
    cut = [f"{t - stopped_at:+.2f} s" for t in stream.cut if t > stopped_at]
    print(
        f"VIP failover {first} -> {survivor}: longest gap between two successes {gap:.2f} s, "
        f"{len(stream.ok)} succeeded, {len(cut)} connections cut and retried {cut}, "
        f"{len(stream.failed)} failed; what the client saw: {stream.seen}; "
        f"{survivor}'s keepalived: {vrrp_log(survivor)}"
    )
    # a request in flight where the VIP left loses its connection (no gateway can retry it); a
    # client's retry within the failover goal serves it, and nothing else may fail
    assert not stream.failed, f"{len(stream.failed)} requests failed: {stream.seen}"
    # the host comes back: its containers restart by themselves (no converge); it stays a backup
    run("docker", "start", first)
    for name in ("gateway", "keepalived"):
        wait_for(f"{first}'s {name} runs again", lambda n=name: running(first, n), 300, step=5)
    time.sleep(15)
    assert holder() == survivor, "the returning host took the VIP back (preemption)"
    assert requests.get(f"{URL}/healthz", verify=CA, timeout=5).status_code == 200


def test_the_prometheus_route_through_the_vip_sees_every_host() -> None:
    """/prometheus/ behind the gateway that holds the VIP: a client sees the whole site."""
    answer = requests.get(
        f"{URL}/prometheus/api/v1/query", params={"query": "count by (host) (up)"},
        auth=("lab", SECRETS["prometheus_password"]), verify=CA, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    hosts = {r["metric"].get("host") for r in answer.json()["data"]["result"]}
    assert hosts == set(HOSTS), hosts
