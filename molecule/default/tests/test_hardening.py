"""The host firewall seen from outside the edge host: only the gateway and SSH get through.

"Outside" is a throwaway container on the lab network (the edge host's LAN). Docker publishes
ports with DNAT before the host's INPUT chain, so a naive host firewall lets a container port
published on 0.0.0.0 through; the appliance's forward chain must not.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest
from appliance_lab import IMAGES, INSTANCE, PROBE

PYTHON_IMAGE = IMAGES["images"]["python"]
NETWORK = os.environ["EDGEAI_LAB_NETWORK"]


def edge_ip() -> str:
    """The edge host's address on the lab network, asked each time: test_faults restarts the
    host, and Docker gives it another address when its old one was taken meanwhile."""
    networks = subprocess.run(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", INSTANCE],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return str(json.loads(networks)[NETWORK]["IPAddress"])


HOST_GET = (
    "python3 -c 'import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).status)' {}"
)
HOST_LISTENER_PORT = 18090
PUBLISHED_PORT = 18091


def outside(ports: list[int]) -> list[str]:
    """Connect from another machine on the edge host's LAN: open, refused (RST) or dropped."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", NETWORK, PYTHON_IMAGE,
         "python3", "-c", PROBE, *(f"{edge_ip()}:{port}" for port in ports)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return result.stdout.split()


@pytest.fixture(scope="module")
def listeners(host) -> Iterator[None]:
    """A host process on every address and a container port Docker publishes on 0.0.0.0."""
    with host.sudo():
        host.run(
            f"docker rm -f fw-probe >/dev/null 2>&1; pkill -f 'http.server {HOST_LISTENER_PORT}'"
        )
        host.check_output(
            f"nohup python3 -m http.server {HOST_LISTENER_PORT} --bind 0.0.0.0 "
            ">/dev/null 2>&1 & echo started"
        )
        image = host.check_output(
            "docker images --format '{{.Repository}}:{{.Tag}}' | grep /python: | head -1"
        )
        host.check_output(
            f"docker run -d --name fw-probe -p 0.0.0.0:{PUBLISHED_PORT}:8000 {image} "
            "python3 -m http.server 8000"
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = host.run(
                HOST_GET.format(f"http://127.0.0.1:{PUBLISHED_PORT}/")
                + " && "
                + HOST_GET.format(f"http://127.0.0.1:{HOST_LISTENER_PORT}/")
            )
            if ready.rc == 0:
                break
            time.sleep(1)
        yield
        host.run("docker rm -f fw-probe")
        host.run(f"pkill -f 'http.server {HOST_LISTENER_PORT}'")


def test_the_gateway_and_ssh_are_reachable_from_outside(listeners) -> None:
    assert outside([30080, 22]) == ["open", "open"]


def test_other_ports_are_dropped_from_outside_but_work_on_the_host(host, listeners) -> None:
    # Both listen on every address and answer on the host itself ...
    local = host.run(
        HOST_GET.format(f"http://{edge_ip()}:{HOST_LISTENER_PORT}/")
        + " && "
        + HOST_GET.format(f"http://127.0.0.1:{PUBLISHED_PORT}/")
    )
    assert local.stdout.split() == ["200", "200"], local.stderr
    # ... and the firewall drops them (no RST: "dropped", not "refused") for everyone else,
    # including the port Docker published on 0.0.0.0.
    assert outside([HOST_LISTENER_PORT, PUBLISHED_PORT, 9090]) == ["dropped"] * 3


def test_containers_cannot_reach_the_outside(host) -> None:
    """A container on the non-internal edge_front network tries the lab network's registry."""
    registry = IMAGES["registry"]
    registry_host, registry_port = registry.rsplit(":", 1)
    networks = subprocess.run(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", registry_host],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    registry_ip = json.loads(networks)[NETWORK]["IPAddress"]
    # the edge host itself reaches it (images are pulled by the engine on the host) ...
    reached = host.run(HOST_GET.format(f"http://{registry_ip}:{registry_port}/v2/"))
    assert reached.rc == 0, reached.stderr
    # ... a container does not
    image = host.check_output(
        "docker images --format '{{.Repository}}:{{.Tag}}' | grep /python: | head -1"
    )
    connect = f'socket.create_connection(("{registry_ip}", {registry_port}), timeout=3)'
    probe = host.run(
        f"docker run --rm --network edge_front {image} python3 -c 'import socket; {connect}'"
    )
    assert probe.rc != 0
    assert "timed out" in probe.stderr or "TimeoutError" in probe.stderr, probe.stderr


EGRESS_ALLOWED_PORT = 18093  # inventories/lab: hardening_container_egress_allowed
EGRESS_OTHER_PORT = 18094
LISTEN = """
import socket, sys, threading
def serve(port):
    server = socket.create_server(("0.0.0.0", port))
    while True:
        server.accept()[0].close()
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),)).start()
"""


def test_containers_reach_only_the_allowed_egress_destinations(host) -> None:
    """A listener on the lab network; a container inside the edge host gets to its allowed port."""
    listener = subprocess.run(
        ["docker", "run", "-d", "--rm", "--network", NETWORK, PYTHON_IMAGE,
         "python3", "-c", LISTEN, str(EGRESS_ALLOWED_PORT), str(EGRESS_OTHER_PORT)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        networks = subprocess.run(
            ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", listener],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        address = json.loads(networks)[NETWORK]["IPAddress"]
        probe = f"python3 -c {shlex.quote(PROBE)} {address}:{EGRESS_ALLOWED_PORT} "
        probe += f"{address}:{EGRESS_OTHER_PORT}"
        image = host.check_output(
            "docker images --format '{{.Repository}}:{{.Tag}}' | grep /python: | head -1"
        )
        # the edge host itself reaches both ports (the listener is up) ...
        deadline = time.monotonic() + 30
        while host.run(probe).stdout.split() != ["open", "open"]:
            assert time.monotonic() < deadline, "the listener on the lab network did not come up"
            time.sleep(1)
        # ... a container only the allowed one
        in_container = host.check_output(f"docker run --rm --network edge_front {image} {probe}")
        assert in_container.split() == ["open", "dropped"]
    finally:
        subprocess.run(["docker", "rm", "-f", listener], capture_output=True, check=False)


def test_firewall_is_loaded_by_its_unit_with_a_drop_policy(host) -> None:
    assert host.service("edgeai-firewall").is_enabled
    with host.sudo():
        ruleset = host.check_output("nft list table inet edgeai")
    assert "hook input priority filter; policy drop;" in ruleset
    assert "ct original proto-dst 30080 accept" in ruleset


def test_ssh_drop_in_is_in_force(host) -> None:
    drop_in = host.file("/etc/ssh/sshd_config.d/10-edgeai.conf")
    assert drop_in.exists
    with host.sudo():
        effective = host.check_output("sshd -T").lower().splitlines()
    assert "passwordauthentication no" in effective
    assert "permitrootlogin without-password" in effective or (
        "permitrootlogin prohibit-password" in effective
    )
    assert "x11forwarding no" in effective


def test_kernel_settings_file_and_security_updates(host) -> None:
    sysctl = host.file("/etc/sysctl.d/90-edgeai.conf")
    assert sysctl.contains("^net.ipv4.tcp_syncookies = 1$")
    assert host.package("unattended-upgrades").is_installed
    config = host.check_output("apt-config dump Unattended-Upgrade::Allowed-Origins")
    origins = [line for line in config.splitlines() if "Allowed-Origins::" in line]
    assert origins, config
    assert all("-security" in line for line in origins), origins
    assert not host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern").count(
        "Origins-Pattern::"
    )


def test_without_the_table_dockers_published_port_would_be_open(host, listeners) -> None:
    """The control: Docker's DNAT lets the published port through unless our chain drops it."""
    with host.sudo():
        host.check_output("systemctl stop edgeai-firewall")
        try:
            assert outside([PUBLISHED_PORT]) == ["open"]
        finally:
            host.check_output("systemctl start edgeai-firewall")
    assert outside([PUBLISHED_PORT]) == ["dropped"]
