"""HA monitoring (issue 16 item 5): two Prometheus servers scrape every host, an Alertmanager
cluster delivers each alert once, either half of the pair can stop."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cluster_lab import (
    ADDRESS,
    HOSTS,
    MONITORING,
    RELAY_PORT,
    firing,
    get_inside,
    http_get_from,
    on_host,
    prometheus_query,
    wait_for,
    webhook_sink,
)

# How long a second, duplicate notification gets to show up after the first (the Alertmanagers'
# peer timeout is 15 s per position; the lab's group_wait is 5 s).
DUPLICATE_WINDOW = 45
# How long a new alert may take to reach the webhook. Other tests stop the model-only host while no
# receiver listens; a group (alertname, job) that could not deliver keeps its resolved alerts
# (Alertmanager deletes them only after a notification succeeded, dispatch.go aggrGroup.flush), and
# a new alert of that group can wait for the group's next group_interval tick (5 min by default).
DELIVERY_WAIT = 360


def _hosts_up(prometheus_host: str, job: str = "node") -> set[str]:
    """The hosts whose `job` target that Prometheus scrapes; none while it (re)starts."""
    try:
        results = prometheus_query(prometheus_host, f'up{{job="{job}"}} == 1')
    except subprocess.CalledProcessError:
        return set()
    return {r["metric"].get("host", "") for r in results}


@pytest.mark.parametrize("prometheus_host", MONITORING)
def test_each_prometheus_scrapes_every_host(prometheus_host: str) -> None:
    wait_for(
        f"{prometheus_host}'s Prometheus scrapes the node exporter of every host",
        lambda: _hosts_up(prometheus_host) == set(HOSTS),
        120,
    )
    # the other hosts' services too, through their relays: the model-only host's ONNX service
    onnx = prometheus_query(prometheus_host, f'up{{job="onnx_service", host="{HOSTS[2]}"}}')
    assert onnx, onnx
    assert all(r["value"][1] == "1" for r in onnx), onnx


@pytest.mark.parametrize("prometheus_host", MONITORING)
def test_each_prometheus_names_its_replica(prometheus_host: str) -> None:
    config = get_inside(
        prometheus_host, "prometheus", "http://127.0.0.1:9090/prometheus/api/v1/status/config"
    )
    assert f"replica: {prometheus_host}" in config


def test_the_relay_answers_peers_only() -> None:
    """The model-only host's relay: a peer reads its targets list; this machine (not a peer, on
    the same network) does not get through the host's firewall."""
    target = HOSTS[2]
    url = f"http://{ADDRESS[target]}:{RELAY_PORT}/targets.json"
    assert http_get_from(HOSTS[0], url) == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=3)


@contextmanager
def stopped_on(host: str, container: str) -> Iterator[None]:
    on_host(host, "docker", "stop", container)
    try:
        yield
    finally:
        on_host(host, "docker", "start", container)


Payloads = Callable[[], list[dict[str, Any]]]


def _alerting_state(job: str) -> str:
    """What each monitoring host's Prometheus and Alertmanager hold for TargetDown of `job`: the
    evidence a failed delivery needs (which side lost the alert)."""
    out = []
    for host in MONITORING:
        try:
            alerts = prometheus_query(host, f'ALERTS{{alertname="TargetDown",job="{job}"}}')
            out.append(f"{host} Prometheus ALERTS: {[a['metric'] for a in alerts]}")
        except subprocess.CalledProcessError as error:
            out.append(f"{host} Prometheus: {error.stderr or error}")
        groups = get_inside(
            host, "alertmanager", "http://127.0.0.1:9093/api/v2/alerts/groups", check=False
        )
        out.append(f"{host} Alertmanager groups: {groups[:3000]}")
        logs = on_host(host, "sh", "-c", "docker logs --tail 30 alertmanager 2>&1", check=False)
        out.append(f"{host} Alertmanager log: {logs[-3000:]}")
    return "\n".join(out)


def assert_alerted_once(payloads: Payloads, since: float, job: str) -> None:
    """TargetDown of the model-only host's `job` reaches the webhook, and only once."""
    try:
        wait_for(
            f"TargetDown of the model-only host's {job} exporter reached the webhook",
            lambda: firing(payloads(), since, alertname="TargetDown", job=job, host=HOSTS[2]),
            DELIVERY_WAIT,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_alerting_state(job)}\npayloads: {payloads()}") from None
    time.sleep(DUPLICATE_WINDOW)
    delivered = firing(payloads(), since, alertname="TargetDown", job=job)
    assert len(delivered) == 1, delivered


def test_one_prometheus_stopped_the_other_still_scrapes_and_alerts_once() -> None:
    """Stop a's Prometheus: b still scrapes a's targets; a target that goes down raises one
    notification at the webhook, not one per Prometheus or per Alertmanager."""
    stopped, other = MONITORING
    since = time.time()
    with (
        webhook_sink() as payloads,
        stopped_on(stopped, "prometheus"),
        stopped_on(HOSTS[2], "ollama-exporter"),
    ):
        # b scrapes a's node exporter through a's relay, fresh samples after the stop
        time.sleep(20)
        assert stopped in _hosts_up(other)
        assert_alerted_once(payloads, since, "ollama")
    wait_for("a's Prometheus is back", lambda: _hosts_up(stopped) == set(HOSTS), 180)


def test_one_alertmanager_stopped_the_alert_still_arrives_once() -> None:
    """Both Prometheus servers up and firing, b's Alertmanager stopped: a's delivers, once."""
    since = time.time()
    with (
        webhook_sink() as payloads,
        stopped_on(MONITORING[1], "alertmanager"),
        stopped_on(HOSTS[2], "node-exporter"),
    ):
        assert_alerted_once(payloads, since, "node")


def _cluster(host: str) -> dict:
    status = get_inside(host, "alertmanager", "http://127.0.0.1:9093/api/v2/status")
    cluster: dict = json.loads(status)["cluster"]
    return cluster


@pytest.mark.parametrize("host", MONITORING)
def test_both_alertmanagers_form_one_cluster(host: str) -> None:
    """Each Alertmanager sees both peers (after a restart it settles first, then joins)."""
    wait_for(
        f"{host}'s Alertmanager is a ready member of a cluster of {len(MONITORING)}",
        lambda: (c := _cluster(host))["status"] == "ready" and len(c["peers"]) == len(MONITORING),
        120,
    )
