"""Who can reach what inside the edge host (issue #14 item 8).

The model servers' APIs have no authentication of their own (the gateway's admin check is the only
one), and the blackbox exporter sends the probe key or the Prometheus password to whatever target a
/probe request names. So: only the gateway reaches Ollama and onnx_service (edge_back), only
Prometheus scrapes onnx_service (edge_scrape), only Prometheus asks the blackbox exporter to probe
(edge_probe). A throwaway container on a network plays a compromised container there (Grafana on
edge_mon); a container on edge_back is the control that the probe itself works. Each service with
a loopback host port has a non-internal network of its own for it (edge_host_<service>): a
container there reaches that service and no other one (before, one edge_host linked them all).
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from appliance_lab import IMAGES, PROBE, SECRETS

PYTHON_IMAGE = IMAGES["images"]["python"]


def addresses(host, container: str) -> list[str]:
    networks = json.loads(host.check_output(f"docker inspect {container}"))[0]["NetworkSettings"]
    return [n["IPAddress"] for n in networks["Networks"].values() if n["IPAddress"]]


def reach(host, network: str, targets: list[str]) -> list[str]:
    command = f"python3 -c {shlex.quote(PROBE)} {' '.join(targets)}"
    out = host.check_output(
        f"docker run --rm --network {network} --cap-drop ALL {PYTHON_IMAGE} {command}"
    )
    return out.split()


SERVICES = {"onnx-service": 8001, "ollama": 11434, "blackbox-exporter": 9115}


def targets_of(host, names: dict[str, int]) -> list[str]:
    """Each service by name and by every address it has on any network."""
    out = []
    for name, port in names.items():
        out.append(f"{name}:{port}")
        out += [f"{ip}:{port}" for ip in addresses(host, name)]
    return out


def test_the_control_a_container_on_edge_back_reaches_the_model_servers(host) -> None:
    assert reach(host, "edge_back", ["onnx-service:8001", "ollama:11434"]) == ["open", "open"]


def test_the_monitoring_network_reaches_no_unauthenticated_api(host) -> None:
    targets = targets_of(host, SERVICES)
    results = reach(host, "edge_mon", targets)
    opened = [t for t, r in zip(targets, results, strict=True) if r in ("open", "refused")]
    assert opened == [], dict(zip(targets, results, strict=True))


def test_the_blackbox_exporter_cannot_be_sent_to_an_attackers_listener(host) -> None:
    """A listener on edge_mon asks the blackbox exporter to probe it with the key module; before,
    the exporter sat on edge_mon and sent `Authorization: Bearer <probe key>` in clear."""
    script = """
import socket, threading, urllib.request
server = socket.create_server(("0.0.0.0", 18099))
server.settimeout(6)
me = socket.gethostbyname(socket.gethostname())
got = []
def serve():
    try:
        conn, _ = server.accept()
        got.append(conn.recv(4096).decode(errors="replace"))
    except OSError:
        pass
threading.Thread(target=serve, daemon=True).start()
url = ("http://blackbox-exporter:9115/probe?module=gateway_api_key&target=http://" + me + ":18099/")
try:
    urllib.request.urlopen(url, timeout=5).read()
    print("asked")
except Exception as error:
    print("refused:", type(error).__name__)
import time; time.sleep(2)  # the exporter probes while it answers: it would have come by now
print("received:", repr(got))
"""
    for network in ("edge_mon", "edge_scrape", "edge_back"):
        out = host.check_output(
            f"docker run --rm --network {network} {PYTHON_IMAGE} python3 -c {shlex.quote(script)}"
        )
        assert "refused:" in out, (network, out)
        assert "received: []" in out, (network, out)
        assert SECRETS["probe_key"] not in out


# The services that publish a loopback host port, with the port of their API in the container.
HOST_PORT_SERVICES = {"ollama": 11434, "onnx-service": 8001, "prometheus": 9090, "grafana": 3000}


def host_networks(host, container: str) -> list[str]:
    """The container's non-internal networks other than the gateway's edge_front."""
    networks = json.loads(host.check_output(f"docker inspect {container}"))[0]["NetworkSettings"]
    out = []
    for name in networks["Networks"]:
        details = json.loads(host.check_output(f"docker network inspect {name}"))[0]
        if not details["Internal"] and name != "edge_front":
            out.append(name)
    return out


@pytest.mark.parametrize("service", HOST_PORT_SERVICES)
def test_a_service_host_port_network_holds_that_service_alone(host, service: str) -> None:
    own = host_networks(host, service)
    assert own, f"{service} publishes a host port: it needs a non-internal network"
    replica = re.compile(rf"^{re.escape(service)}(-[0-9]+)?$")
    for network in own:
        details = json.loads(host.check_output(f"docker network inspect {network}"))[0]
        members = sorted(c["Name"] for c in details["Containers"].values())
        assert all(replica.match(m) for m in members), (network, members)


@pytest.mark.parametrize("service", HOST_PORT_SERVICES)
def test_a_service_host_port_network_reaches_no_other_service(host, service: str) -> None:
    """A throwaway container on the network that carries a service's host port plays that service
    compromised: it reaches the service itself (the control), and none of the other services'
    APIs by name or by any address they have."""
    port = HOST_PORT_SERVICES[service]
    others = {name: p for name, p in HOST_PORT_SERVICES.items() if name != service}
    targets = targets_of(host, others)
    for network in host_networks(host, service):
        assert reach(host, network, [f"{service}:{port}"]) == ["open"], network
        results = reach(host, network, targets)
        opened = [t for t, r in zip(targets, results, strict=True) if r in ("open", "refused")]
        assert opened == [], (network, dict(zip(targets, results, strict=True)))
