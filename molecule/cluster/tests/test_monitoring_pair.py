"""HA monitoring (issue 16 item 5): two Prometheus servers scrape every host, an Alertmanager
cluster delivers each alert once, either half of the pair can stop."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from cluster_lab import (
    ADDRESS,
    HOSTS,
    MONITORING,
    RELAY_PORT,
    firing,
    http_get_from,
    on_host,
    prometheus_query,
    wait_for,
    webhook_sink,
)

# How long a second, duplicate notification gets to show up after the first (the Alertmanagers'
# peer timeout is 15 s per position; the lab's group_wait is 5 s).
DUPLICATE_WINDOW = 45


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
    config = on_host(
        prometheus_host, "docker", "exec", "prometheus", "wget", "-q", "-O", "-",
        "http://127.0.0.1:9090/prometheus/api/v1/status/config",
    )  # fmt: skip
    assert f"replica: {prometheus_host}" in config


def test_the_relay_answers_peers_only() -> None:
    """The model-only host's relay: a peer reads its targets list; this machine (not a peer, on
    the same network) does not get through the host's firewall."""
    target = HOSTS[2]
    url = f"http://{ADDRESS[target]}:{RELAY_PORT}/targets.json"
    assert http_get_from(HOSTS[0], url) == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=3)


def test_one_prometheus_stopped_the_other_still_scrapes_and_alerts_once() -> None:
    """Stop a's Prometheus: b still scrapes a's targets; a target that goes down raises one
    notification at the webhook, not one per Prometheus or per Alertmanager."""
    stopped, other = MONITORING
    since = time.time()
    with webhook_sink() as payloads:
        on_host(stopped, "docker", "stop", "prometheus")
        on_host(HOSTS[2], "docker", "stop", "ollama-exporter")
        try:
            # b scrapes a's node exporter through a's relay, fresh samples after the stop
            time.sleep(20)
            assert stopped in _hosts_up(other)
            wait_for(
                "TargetDown of the model-only host's Ollama exporter reached the webhook",
                lambda: firing(
                    payloads(), since, alertname="TargetDown", job="ollama", host=HOSTS[2]
                ),
                240,
            )
            time.sleep(DUPLICATE_WINDOW)
            delivered = firing(payloads(), since, alertname="TargetDown", job="ollama")
            assert len(delivered) == 1, delivered
        finally:
            on_host(HOSTS[2], "docker", "start", "ollama-exporter")
            on_host(stopped, "docker", "start", "prometheus")
    wait_for("a's Prometheus is back", lambda: _hosts_up(stopped) == set(HOSTS), 180)


def test_one_alertmanager_stopped_the_alert_still_arrives_once() -> None:
    """Both Prometheus servers up and firing, b's Alertmanager stopped: a's delivers, once."""
    stopped = MONITORING[1]
    since = time.time()
    with webhook_sink() as payloads:
        on_host(stopped, "docker", "stop", "alertmanager")
        on_host(HOSTS[2], "docker", "stop", "node-exporter")
        try:
            wait_for(
                "TargetDown of the model-only host's node exporter reached the webhook",
                lambda: firing(
                    payloads(), since, alertname="TargetDown", job="node", host=HOSTS[2]
                ),
                240,
            )
            time.sleep(DUPLICATE_WINDOW)
            delivered = firing(payloads(), since, alertname="TargetDown", job="node")
            assert len(delivered) == 1, delivered
        finally:
            on_host(HOSTS[2], "docker", "start", "node-exporter")
            on_host(stopped, "docker", "start", "alertmanager")


def _cluster(host: str) -> dict:
    status = on_host(
        host, "docker", "exec", "alertmanager", "wget", "-q", "-O", "-",
        "http://127.0.0.1:9093/api/v2/status",
    )  # fmt: skip
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
