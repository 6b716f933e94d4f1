"""Prometheus and Alertmanager on the edge host: served through the gateway, scraping, alerting."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from appliance_lab import CA, SECRETS, gateway_url

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = gateway_url() + "/prometheus"
AUTH = ("lab", SECRETS["prometheus_password"])
GROUPS = {
    "edgeai-availability",
    "edgeai-gateway",
    "edgeai-models",
    "edgeai-host",
    "edgeai-containers",
    "edgeai-certificates",
}


def api(path: str) -> dict:
    response = requests.get(f"{PROMETHEUS}/api/v1/{path}", auth=AUTH, verify=CA, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s")
        time.sleep(3)


def target_health() -> dict[str, str]:
    return {t["labels"]["job"]: t["health"] for t in api("targets?state=active")["activeTargets"]}


def firing_target_down(job: str) -> list[dict]:
    return [
        a
        for a in api("alerts")["alerts"]
        if a["labels"]["alertname"] == "TargetDown"
        and a["labels"].get("job") == job
        and a["state"] == "firing"
    ]


def test_prometheus_is_healthy_under_prometheus_path_behind_basic_auth() -> None:
    healthy = requests.get(f"{PROMETHEUS}/-/healthy", auth=AUTH, verify=CA, timeout=30)
    assert healthy.status_code == 200
    assert "Healthy" in healthy.text
    anonymous = requests.get(f"{PROMETHEUS}/-/healthy", verify=CA, timeout=30)
    assert anonymous.status_code == 401
    flags = api("status/flags")
    assert flags["web.external-url"] == "https://127.0.0.1:30080/prometheus/"
    assert flags["storage.tsdb.retention.time"] == "1d"
    # Prometheus reads and reports size units as powers of two
    assert flags["storage.tsdb.retention.size"] == "256MiB"


def test_own_and_alertmanager_targets_are_up_with_fragment_labels() -> None:
    wait_for(
        "the prometheus and alertmanager targets were not up",
        lambda: {"prometheus": "up", "alertmanager": "up"}.items() <= target_health().items(),
    )
    targets = {t["labels"]["job"]: t for t in api("targets?state=active")["activeTargets"]}
    # the fragment's job and __metrics_path__ won over the generic job's defaults
    assert targets["prometheus"]["scrapeUrl"] == "http://prometheus:9090/prometheus/metrics"
    assert targets["prometheus"]["scrapePool"] == "edgeai"
    assert targets["alertmanager"]["scrapeUrl"] == "http://alertmanager:9093/metrics"


def test_rules_are_loaded() -> None:
    groups = {g["name"]: g for g in api("rules")["groups"]}
    assert set(groups) >= GROUPS
    for group in groups.values():
        for rule in group["rules"]:
            assert rule["health"] in ("ok", "unknown"), (rule["name"], rule.get("lastError"))


def test_the_disk_alerts_and_the_disk_panels_watch_the_same_disks_and_find_some() -> None:
    """One file-system filter for both (prometheus_alert_filesystem_exclude_fstypes), with data.

    The lab host's root is overlay (a container's), which the filter leaves out as no disk; the
    host's volumes and bind mounts lie on the machine's disk, so both still see file systems.
    """
    groups = api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"] if r["name"].startswith("HostDisk")]
    filters = {f for r in rules for f in re.findall(r'fstype!~"[^"]*"', r["query"])}
    assert len(rules) == 3, rules
    assert len(filters) == 1, rules
    [fs] = filters
    queries = json.loads((REPO / "tools/dashboards/queries.json").read_text())["queries"]
    panels = [q["promql"] for q in queries if "node_filesystem_" in q["promql"]]
    assert panels
    assert all(re.findall(r'fstype!~"[^"]*"', p) == [fs] * p.count("fstype") for p in panels)
    alerted = api("query?" + urlencode({"query": f"node_filesystem_avail_bytes{{{fs}}}"}))["result"]
    assert alerted, fs
    assert all(s["metric"]["mountpoint"] != "/" for s in alerted)  # the overlay root is left out
    for promql in panels:
        assert api("query?" + urlencode({"query": promql}))["result"], promql


def test_alertmanager_is_reachable_from_prometheus() -> None:
    wait_for(
        "Prometheus listed no active Alertmanager",
        lambda: bool(api("alertmanagers")["activeAlertmanagers"]),
    )
    [active] = api("alertmanagers")["activeAlertmanagers"]
    assert active["url"] == "http://alertmanager:9093/api/v2/alerts"


def test_the_lab_scrapes_every_15_seconds(host) -> None:
    config = host.file("/opt/edgeai/prometheus/live/prometheus.yml").content_string
    assert "scrape_interval: 15s" in config
    assert host.file("/opt/edgeai/prometheus/targets/prometheus.yml").mode == 0o644
    assert host.file("/var/lib/edgeai/prometheus").uid == 65534


def test_a_stopped_service_raises_target_down(host) -> None:
    host.check_output("docker stop alertmanager")
    try:
        # lab: 15 s scrapes, 5 s rule evaluation, `for: 10s`
        wait_for(
            "TargetDown for the stopped alertmanager did not fire",
            lambda: bool(firing_target_down("alertmanager")),
            timeout=150,
        )
        [alert] = firing_target_down("alertmanager")
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["instance"] == "alertmanager:9093"
    finally:
        host.check_output("docker start alertmanager")
    wait_for(
        "the alertmanager target did not come back",
        lambda: target_health().get("alertmanager") == "up",
    )
    wait_for("TargetDown did not clear", lambda: not firing_target_down("alertmanager"))


SINK_PORT = 18095  # inventories/lab: alertmanager_webhooks
SINK = f"""
import http.server
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        print(self.rfile.read(int(self.headers["Content-Length"])).decode(), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", {SINK_PORT}), Sink).serve_forever()
"""


def test_a_firing_alert_is_delivered_to_the_webhook(host) -> None:
    """The lab's webhook receiver is a sink on edge_mon; a stopped exporter's alert must get there.

    A job no other test stops: Alertmanager makes a new group for it and sends after group_wait.
    """
    image = host.check_output(
        "docker images --format '{{.Repository}}:{{.Tag}}' | grep /python: | head -1"
    )
    host.run("docker rm -f webhook-sink")
    host.check_output(
        f"docker run -d --name webhook-sink --network edge_mon --user 65534 {image} "
        f"python3 -c {shlex.quote(SINK)}"
    )

    def delivered() -> list[dict]:
        payloads = []
        for line in host.check_output("docker logs webhook-sink").splitlines():
            try:
                payloads.append(json.loads(line))
            except ValueError:
                continue
        return [
            p
            for p in payloads
            if any(
                a["status"] == "firing"
                and a["labels"].get("alertname") == "TargetDown"
                and a["labels"].get("job") == "ollama"
                for a in p.get("alerts", [])
            )
        ]

    host.check_output("docker stop ollama-exporter")
    try:
        wait_for("TargetDown for the Ollama exporter did not reach the webhook", delivered, 240)
        payload = delivered()[0]
        assert payload["version"] == "4"
        assert payload["receiver"] == "default"
        assert payload["status"] == "firing"
    finally:
        host.check_output("docker start ollama-exporter")
        host.run("docker rm -f webhook-sink")
