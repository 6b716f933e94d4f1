"""The exporters on the edge host (roles/exporters): healthy and locked down, each serving what
Prometheus will scrape, probes through the gateway succeeding, and the file_sd fragments listing
them. The exporters are queried from where Prometheus scrapes them (`docker exec` into the
Prometheus container, which joins edge_mon, edge_scrape and edge_probe)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest
import requests
import yaml
from appliance_lab import CA, SECRETS, gateway_url

URL = gateway_url()
TARGETS = "/opt/edgeai/prometheus/targets"
EXPORTERS = ("node-exporter", "nginx-exporter", "mtail", "blackbox-exporter")
ROUTES = {
    "health": "/healthz",
    "onnx_v2": "/v2/health/ready",
    "onnx_v1": "/v1/models",
    "ollama": "/api/version",
    "openai": "/openai/v1/models",
    "grafana": "/grafana/api/health",
    "prometheus": "/prometheus/-/healthy",
}


def inspect(host, name: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


def from_mon(host, url: str) -> str:
    """GET a URL from inside the Prometheus container, the one client of every exporter."""
    return host.check_output(f"docker exec prometheus wget -q -O - '{url}'")


def metric(text: str, name: str, /, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if series.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def fragment(host, job: str) -> list[dict]:
    return yaml.safe_load(host.file(f"{TARGETS}/{job}.yml").content_string)


def mon_gateway(host) -> str:
    network = json.loads(host.check_output("docker network inspect edge_mon"))[0]
    return network["IPAM"]["Config"][0]["Gateway"]


@pytest.fixture(scope="module", autouse=True)
def exporters_healthy(host) -> None:
    deadline = time.monotonic() + 120
    while True:
        states = {n: inspect(host, n)["State"].get("Health", {}).get("Status") for n in EXPORTERS}
        if all(s == "healthy" for s in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert all(s == "healthy" for s in states.values()), states


@pytest.mark.parametrize("name", EXPORTERS)
def test_exporter_is_unprivileged(host, name: str) -> None:
    container = inspect(host, name)
    config = container["HostConfig"]
    assert config["Privileged"] is False
    assert "ALL" in config["CapDrop"]
    assert not config["CapAdd"]
    assert "no-new-privileges:true" in (config["SecurityOpt"] or [])
    assert config["ReadonlyRootfs"] is True
    assert config["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["Config"]["User"].split(":")[0] not in ("", "0", "root")
    assert container["Config"]["Labels"]["org.edgeai.role"] == "exporters"
    if name == "blackbox-exporter":
        # its own network with Prometheus and the gateway: /probe sends the probe's credentials
        assert set(container["NetworkSettings"]["Networks"]) == {"edge_probe"}
    elif name != "node-exporter":
        assert set(container["NetworkSettings"]["Networks"]) == {"edge_mon"}
    assert config["Memory"] > 0


def test_cadvisor_is_off_in_the_lab(host) -> None:
    assert host.run("docker inspect cadvisor").rc != 0
    assert not host.file(f"{TARGETS}/cadvisor.yml").exists


def test_node_exporter_serves_host_metrics_to_the_monitoring_network(host) -> None:
    address = mon_gateway(host)
    config = inspect(host, "node-exporter")["HostConfig"]
    assert config["NetworkMode"] == "host"
    assert config["PidMode"] == "host"
    text = from_mon(host, f"http://{address}:9100/metrics")
    assert metric(text, "node_cpu_seconds_total") is not None
    # the edge host's own filesystems and interfaces (its Docker bridges), not a container's
    assert metric(text, "node_filesystem_avail_bytes", mountpoint="/var/lib/docker") is not None
    assert re.search(r'^node_network_receive_bytes_total\{device="br-', text, re.M)
    for collector in ("cpu", "meminfo", "filesystem", "netdev", "loadavg", "textfile"):
        assert metric(text, "node_scrape_collector_success", collector=collector) == 1, collector
    assert metric(text, "node_textfile_scrape_error") == 0
    # not on the host's other addresses
    assert not host.socket("tcp://0.0.0.0:9100").is_listening


def test_node_exporter_reads_the_textfile_directory(host) -> None:
    address = mon_gateway(host)
    path = "/var/lib/edgeai/textfile/molecule_exporters_test.prom"
    line = 'edgeai_molecule_textfile_probe{name="x"} 42'
    host.check_output(f"printf '%s\\n' '{line}' > {path}.tmp && mv {path}.tmp {path}")
    try:
        text = from_mon(host, f"http://{address}:9100/metrics")
        assert metric(text, "edgeai_molecule_textfile_probe", name="x") == 42
    finally:
        host.run(f"rm -f {path}")
    mounts = {m["Destination"]: m for m in inspect(host, "node-exporter")["Mounts"]}
    assert mounts["/var/lib/edgeai/textfile"]["RW"] is False
    assert mounts["/host"]["RW"] is False


def test_nginx_exporter_reads_the_gateways_stub_status(host) -> None:
    text = from_mon(host, "http://nginx-exporter:9113/metrics")
    assert metric(text, "nginx_up") == 1
    assert (metric(text, "nginx_connections_accepted") or 0) >= 1


def test_mtail_counts_gateway_requests_by_route_status_class_and_client(host) -> None:
    def counts() -> tuple[float, float]:
        text = from_mon(host, "http://mtail:3903/metrics")
        ok = metric(text, "edgeai_gateway_requests_total",
                    route="onnx_v2", status_class="2xx", client="lab-user")  # fmt: skip
        denied = metric(text, "edgeai_gateway_requests_total",
                        route="onnx_v1", status_class="4xx", client="")  # fmt: skip
        return ok or 0, denied or 0

    before = counts()
    user = {"Authorization": f"Bearer {SECRETS['user_key']}"}
    for _ in range(3):
        assert requests.get(URL + "/v2/health/ready", headers=user, verify=CA, timeout=30).ok
    assert requests.get(URL + "/v1/models", verify=CA, timeout=30).status_code == 401
    deadline = time.monotonic() + 30
    while counts()[0] < before[0] + 3 or counts()[1] < before[1] + 1:
        assert time.monotonic() < deadline, (before, counts())
        time.sleep(1)
    text = from_mon(host, "http://mtail:3903/metrics")
    assert (metric(text, "edgeai_gateway_request_duration_seconds_count",
                   route="onnx_v2", client="lab-user") or 0) >= 3  # fmt: skip
    assert (metric(text, "edgeai_gateway_upstream_header_duration_seconds_count",
                   route="onnx_v2") or 0) >= 3  # fmt: skip


def probe(host, path: str, module: str) -> str:
    target = urllib.parse.quote(f"https://gateway:30080{path}", safe="")
    return from_mon(host, f"http://blackbox-exporter:9115/probe?module={module}&target={target}")


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_blackbox_probes_each_route_through_the_gateway(host, route: str) -> None:
    groups = {g["labels"]["route"]: g for g in fragment(host, "blackbox")}
    labels = groups[route]["labels"]
    assert labels["__param_target"] == f"https://gateway:30080{ROUTES[route]}"
    text = probe(host, ROUTES[route], labels["__param_module"])
    # the gateway's certificate verified against the lab CA, its expiry reported
    assert (metric(text, "probe_ssl_earliest_cert_expiry") or 0) > time.time() + 86400
    upstream = {"grafana": "grafana", "prometheus": "prometheus"}.get(route)
    if upstream and host.run(f"docker inspect {upstream}").rc != 0:
        # no Grafana/Prometheus in this converge: the gateway accepted the probe's credentials
        # (no 401) and reports the missing upstream
        assert metric(text, "probe_http_status_code") == 502, text
    else:
        assert metric(text, "probe_success") == 1, text
        assert metric(text, "probe_http_status_code") == 200


def test_a_probe_without_the_key_is_refused(host) -> None:
    text = probe(host, "/v1/models", "gateway_anonymous")
    assert metric(text, "probe_success") == 0
    assert metric(text, "probe_http_status_code") == 401


def test_probe_secrets_are_files_readable_by_the_exporter_only(host) -> None:
    for name in ("api_key", "prometheus_password"):
        secret = host.file(f"/opt/edgeai/exporters/blackbox/secrets/{name}")
        assert secret.mode == 0o440
        assert secret.user == "root"
        assert secret.gid == 65534
    config = host.file("/opt/edgeai/exporters/blackbox/config.yml").content_string
    assert SECRETS["probe_key"] not in config
    assert SECRETS["prometheus_password"] not in config


def test_fragments_list_each_job(host) -> None:
    files = set(host.check_output(f"ls {TARGETS}").split())
    assert {
        "node.yml",
        "gateway.yml",
        "gateway_log.yml",
        "blackbox.yml",
        "onnx_service.yml",
    } <= files
    for job in ("node", "gateway", "gateway_log", "blackbox", "onnx_service"):
        assert {g["labels"]["job"] for g in fragment(host, job)} == {job}
        assert host.file(f"{TARGETS}/{job}.yml").mode == 0o644
    assert fragment(host, "gateway")[0]["targets"] == ["nginx-exporter:9113"]
    assert fragment(host, "gateway_log")[0]["targets"] == ["mtail:3903"]
    assert fragment(host, "node")[0]["targets"] == [f"{mon_gateway(host)}:9100"]
    assert len(fragment(host, "blackbox")) == len(ROUTES)


def test_onnx_service_replicas_are_listed_and_scrapable_by_prometheus(host) -> None:
    targets = [t for g in fragment(host, "onnx_service") for t in g["targets"]]
    assert targets
    assert "onnx-service:8001" in targets
    for target in targets:
        assert "# TYPE" in from_mon(host, f"http://{target}/metrics")


def test_rotated_access_log_keeps_mtail_counting(host) -> None:
    log = "/var/log/edgeai/gateway/access.log"
    assert host.file(log).exists
    host.check_output("logrotate --force /etc/logrotate.d/edgeai-gateway")
    assert host.file(log + ".1").exists

    def count() -> float:
        text = from_mon(host, "http://mtail:3903/metrics")
        return metric(text, "edgeai_gateway_requests_total",
                      route="health", status_class="2xx", client="") or 0  # fmt: skip

    before = count()
    deadline = time.monotonic() + 30
    while True:
        # nginx reopened its log (USR1 from logrotate's postrotate): new lines land in the new file
        requests.get(URL + "/healthz", verify=CA, timeout=30)
        if count() > before and '"route":"health"' in host.file(log).content_string:
            break
        assert time.monotonic() < deadline, "mtail did not follow the rotated log"
        time.sleep(2)
