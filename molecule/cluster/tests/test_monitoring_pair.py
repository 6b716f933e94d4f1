"""HA monitoring (issue 16 item 5): two Prometheus servers scrape every host, an Alertmanager
cluster delivers each alert once, either half of the pair can stop."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cluster_lab import (
    ADDRESS,
    HOSTS,
    MONITORING,
    RELAY_PORT,
    Payloads,
    firing,
    get_inside,
    http_get_from,
    on_host,
    prometheus_query,
    wait_for,
)

# How long a second, duplicate notification gets to show up after the first (the Alertmanagers'
# peer timeout is 15 s per position; the lab's group_wait is 5 s).
DUPLICATE_WINDOW = 45
# How long a new alert may take to reach the receiver: TargetDown holds 10 s, rules run every 5 s,
# group_wait 5 s, then the group's next tick (inventories/lab-cluster: group_interval 30 s) and the
# peer wait of 15 s per position: about a minute; three leave room for a busy machine.
DELIVERY_WAIT = 180
# How long the receiver may take to hear that the previous outage of a target is over (the next
# group_interval tick after Prometheus resolves the alert).
RESOLVE_WAIT = 120


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
    # (an earlier test restarts that host: its service answers a scrape after its exporter does)
    def onnx_up() -> bool:
        series = prometheus_query(prometheus_host, f'up{{job="onnx_service", host="{HOSTS[2]}"}}')
        return bool(series) and all(r["value"][1] == "1" for r in series)

    wait_for(f"{prometheus_host}'s Prometheus scrapes {HOSTS[2]}'s ONNX service", onnx_up, 120)


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


def _told(payloads: list[dict[str, Any]], job: str) -> str | None:
    """What the receiver was last told about TargetDown of the model-only host's `job`."""
    told = None
    for payload in payloads:  # in the order received
        for alert in payload.get("alerts", []):
            labels = alert["labels"]
            if (labels.get("alertname"), labels.get("job"), labels.get("host")) == (
                "TargetDown", job, HOSTS[2]
            ):  # fmt: skip
                told = alert["status"]
    return told


def settled(payloads: Payloads, job: str) -> None:
    """Wait until the receiver knows the target's last outage is over (or never heard of one).

    Alertmanager does not notify an alert again while its notification log says the receiver
    already has it firing (prometheus/alertmanager notify/dedup_stage.go, DedupStage.needsUpdate:
    same firing set, repeat_interval not elapsed). An alert that fires again before its
    resolution was delivered replaces the resolved one in its group (provider/mem/mem.go, Put:
    no overlap, no merge), so that resolution is never sent and the new outage is never notified
    (the repeat interval is 4 h). A test that stops a target starts from a receiver that was
    told the previous outage ended."""
    took = wait_for(
        f"the receiver was told that TargetDown of the model-only host's {job} ended",
        lambda: _told(payloads(), job) != "firing",
        RESOLVE_WAIT,
    )
    print(f"\n{job}: the receiver knew the previous outage ended after {took:.0f} s")


def _content(payload: dict[str, Any]) -> str:
    """A notification's alerts, by status and labels: the same group notified twice."""
    alerts = sorted((a["status"], sorted(a["labels"].items())) for a in payload["alerts"])
    return json.dumps([payload.get("groupKey"), alerts])


def assert_alerted_once(payloads: Payloads, since: float, job: str) -> None:
    """TargetDown of the model-only host's `job` reaches the receiver, and no notification of it
    twice: Alertmanager notifies a group again when its alerts change (another alert of the job
    resolved, say), but the pair must not both send the same one."""
    try:
        wait_for(
            f"TargetDown of the model-only host's {job} exporter reached the webhook",
            lambda: firing(payloads(), since, alertname="TargetDown", job=job, host=HOSTS[2]),
            DELIVERY_WAIT,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_alerting_state(job)}\npayloads: {payloads()}") from None
    took = time.time() - since
    print(f"{job}: TargetDown reached the receiver {took:.0f} s after the target stopped")
    time.sleep(DUPLICATE_WINDOW)
    delivered = firing(payloads(), since, alertname="TargetDown", job=job, host=HOSTS[2])
    copies = Counter(_content(p) for p in delivered)
    sent_twice = [p for p in delivered if copies[_content(p)] > 1]
    assert not sent_twice, (
        "the same notification reached the receiver more than once: "
        + "; ".join(f"{p.get('externalURL')}: {_content(p)}" for p in sent_twice)
    )


def test_one_prometheus_stopped_the_other_still_scrapes_and_alerts_once(
    alert_receiver: Payloads,
) -> None:
    """Stop a's Prometheus: b still scrapes a's targets; a target that goes down raises one
    notification at the webhook, not one per Prometheus or per Alertmanager."""
    stopped, other = MONITORING
    settled(alert_receiver, "ollama")
    since = time.time()
    with stopped_on(stopped, "prometheus"), stopped_on(HOSTS[2], "ollama-exporter"):
        # b scrapes a's node exporter through a's relay, fresh samples after the stop
        time.sleep(20)
        assert stopped in _hosts_up(other)
        assert_alerted_once(alert_receiver, since, "ollama")
    wait_for("a's Prometheus is back", lambda: _hosts_up(stopped) == set(HOSTS), 180)


def test_one_alertmanager_stopped_the_alert_still_arrives_once(alert_receiver: Payloads) -> None:
    """Both Prometheus servers up and firing, b's Alertmanager stopped: a's delivers, once."""
    settled(alert_receiver, "node")
    since = time.time()
    with stopped_on(MONITORING[1], "alertmanager"), stopped_on(HOSTS[2], "node-exporter"):
        assert_alerted_once(alert_receiver, since, "node")


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
