"""The appliance containers on the edge host: healthy, unprivileged, only the gateway public."""

from __future__ import annotations

import json
import time

import pytest


def _appliance_containers(host) -> list[dict]:
    ids = host.check_output("docker ps -aq --filter label=org.edgeai.appliance=true").split()
    return json.loads(host.check_output(f"docker inspect {' '.join(ids)}")) if ids else []


def test_the_appliance_runs(host) -> None:
    names = {c["Name"].lstrip("/") for c in _appliance_containers(host)}
    assert {"gateway", "onnx-service", "ollama"} <= names


def test_every_container_is_healthy(host) -> None:
    deadline = time.monotonic() + 120
    while True:
        states = {
            c["Name"].lstrip("/"): c["State"].get("Health", {}).get("Status", "none")
            for c in _appliance_containers(host)
        }
        if all(state == "healthy" for state in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert states
    assert all(state == "healthy" for state in states.values()), states


@pytest.mark.parametrize(
    "check", ["privileged", "no-new-privileges", "caps", "restart", "readonly", "role-label"]
)
def test_every_container_is_locked_down(host, check: str) -> None:
    for container in _appliance_containers(host):
        config = container["HostConfig"]
        name = container["Name"]
        if check == "privileged":
            assert config["Privileged"] is False, name
        elif check == "no-new-privileges":
            # one spelling everywhere (edgeai.appliance.container_baseline)
            assert "no-new-privileges:true" in (config["SecurityOpt"] or []), name
        elif check == "caps":
            assert "ALL" in (config["CapDrop"] or []), name
            assert not config["CapAdd"], name
        elif check == "restart":
            assert config["RestartPolicy"]["Name"] in ("unless-stopped", "always"), name
        elif check == "role-label":
            assert container["Config"]["Labels"].get("org.edgeai.role"), name
        else:
            assert config["ReadonlyRootfs"] is True, name


def test_only_the_gateway_and_ssh_listen_beyond_loopback(host) -> None:
    listeners = host.check_output("ss -tlnH").splitlines()
    # node_exporter (host network) listens on the edge_mon bridge address only (roles/exporters)
    mon = json.loads(host.check_output("docker network inspect edge_mon"))[0]
    node_exporter = (mon["IPAM"]["Config"][0]["Gateway"], "9100")
    public = []
    for line in listeners:
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        if (address, port) == node_exporter:
            continue
        if address not in ("127.0.0.1", "[::1]", "127.0.0.11") and not address.startswith("127."):
            public.append((address, port))
    assert public, listeners
    assert {port for _, port in public} == {"30080", "22"}, public


def test_service_host_ports_are_on_loopback_only(host) -> None:
    assert host.socket("tcp://127.0.0.1:8001").is_listening
    assert host.socket("tcp://127.0.0.1:11435").is_listening
    assert not host.socket("tcp://0.0.0.0:8001").is_listening
    assert not host.socket("tcp://0.0.0.0:11435").is_listening


def test_every_container_has_a_memory_limit(host) -> None:
    """A memory limit per container (a variable per role): one container's OOM stays its own."""
    limits = {c["Name"].lstrip("/"): c["HostConfig"]["Memory"] for c in _appliance_containers(host)}
    assert limits
    assert all(limit > 0 for limit in limits.values()), limits
    meminfo = host.file("/proc/meminfo").content_string
    total = next(int(line.split()[1]) for line in meminfo.splitlines() if "MemTotal" in line)
    assert all(limit < total * 1024 for limit in limits.values()), (limits, total)


def oom_kills(host, pid: int) -> int:
    """The OOM kills counted in a process's memory cgroup (cgroup v1 or v2)."""
    for line in host.file(f"/proc/{pid}/cgroup").content_string.splitlines():
        number, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            events = host.file(f"/sys/fs/cgroup/memory{path}/memory.oom_control").content_string
            break
        if number == "0" and controllers == "":
            unified = path
    else:
        events = host.file(f"/sys/fs/cgroup{unified}/memory.events").content_string
    return int(dict(line.split() for line in events.splitlines())["oom_kill"])


def test_a_container_past_its_limit_is_stopped_alone(host) -> None:
    """A process in the Ollama exporter (64 MiB) allocates 160 MiB: the kernel kills it inside
    that container's cgroup, the exporter and everything else keep running."""
    exporter = json.loads(host.check_output("docker inspect ollama-exporter"))[0]
    assert exporter["HostConfig"]["Memory"] <= 64 * 1024 * 1024
    started = {c["Name"]: c["State"]["StartedAt"] for c in _appliance_containers(host)}
    hog = host.run(
        "docker exec ollama-exporter python3 -c 'b = bytearray(160 * 1024 * 1024); print(len(b))'"
    )
    assert hog.rc == 137, (hog.rc, hog.stdout, hog.stderr)  # SIGKILL from the OOM killer
    assert oom_kills(host, exporter["State"]["Pid"]) >= 1
    after = {c["Name"]: c["State"] for c in _appliance_containers(host)}
    assert all(state["Running"] for state in after.values()), after
    assert {name: state["StartedAt"] for name, state in after.items()} == started
