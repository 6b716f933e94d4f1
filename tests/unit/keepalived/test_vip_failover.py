"""The keepalived role on real keepalived containers: one holder, failover on health, no take-back.

The role itself (site.yml's entry point: argument specs, preflight, image, the configuration
checked by `keepalived --config-test` in the image, the container, the reload handler) converges
three gateway hosts of a test inventory on this machine's Docker engine, with the lab's keepalived
image (Debian's keepalived). Only the network differs from a device: instead of the host's network
each peer joins the network namespace of a "node" container on a user-defined bridge of this test
(a random /24 in 172.29.0.0/16 whose `--ip-range` leaves the upper half, and so the VIP, to nobody
else). In the same namespace a python http server stands for the gateway: /healthz for the peer's
check, /name to tell from this machine who answered through the VIP.

Failover time is measured from this machine through the bridge: the last answer through the VIP
before the holder's gateway stops, to the first answer after (from the new holder), three times.
`make integration` runs it; the numbers are printed (pytest -s) and recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from ansible_run import ansible_playbook, playbook_env
from docker_run import docker, docker_ready

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[3]
ROLE_VARS = yaml.safe_load((REPO / "roles/keepalived/vars/main.yml").read_text())
KEEPALIVED_IMAGE = os.environ.get("KEEPALIVED_TEST_IMAGE", "")
PYTHON_IMAGE = os.environ.get("PYTHON_TEST_IMAGE", "")
SECRET = "vrrp-t3s"
HOSTS = ("gw1", "gw2", "gw3")
ALL_HOSTS = (*HOSTS, "gw4")
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "main.yml"
WEB_PORT = 8080
# generous: failover is measured, not asserted against a goal (the CPU is shared)
TIMEOUT = 30.0
CHECK_FAILED = "VRRP_Script(gateway_healthy) failed"
CHECK_PASSED = "VRRP_Script(gateway_healthy) succeeded"
# what keepalived 2.2.7 logs for an advertisement with another simple password
INVALID_PASSWORD = "received an invalid passwd!"


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 172.29.0.0/16 that no Docker network uses."""
    used = []
    for network in docker("network", "ls", "-q").stdout.split():
        inspect = docker(
            "network", "inspect", network, "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            check=False,
        )  # fmt: skip
        used += [ipaddress.ip_network(s) for s in inspect.stdout.split() if "." in s]
    candidates = list(ipaddress.IPv4Network("172.29.0.0/16").subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError("no free /24 in 172.29.0.0/16")


@dataclass
class Lab:
    name: str
    root: Path
    subnet: ipaddress.IPv4Network
    addresses: dict[str, str]
    vip: str
    started: list[str] = field(default_factory=list)

    def node(self, host: str) -> str:
        """The container whose network namespace stands for the host's network."""
        return f"{self.name}-{host}"

    def keepalived(self, host: str) -> str:
        return f"{self.name}-{host}-keepalived"

    def web(self, host: str) -> str:
        return f"{self.name}-{host}-web"

    def start_node(self, host: str) -> None:
        site = self.root / "web" / host
        site.mkdir(parents=True, exist_ok=True)
        (site / "healthz").write_text("ok\n")
        (site / "name").write_text(host)
        docker(
            "run", "-d", "--name", self.node(host), "--network", self.name,
            "--ip", self.addresses[host], "--read-only", "--cap-drop", "ALL",
            PYTHON_IMAGE, "sleep", "infinity",
        )  # fmt: skip
        self.started.append(self.node(host))
        self.start_web(host)

    def start_web(self, host: str) -> None:
        site = self.root / "web" / host
        docker(
            "run", "-d", "--name", self.web(host), "--network", f"container:{self.node(host)}",
            "--read-only", "--user", "65534:65534", "--cap-drop", "ALL",
            "--mount", f"type=bind,source={site},target=/srv,readonly",
            PYTHON_IMAGE, "python3", "-m", "http.server", "--directory", "/srv", str(WEB_PORT),
        )  # fmt: skip
        self.started.append(self.web(host))

    def converge(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The keepalived role (site.yml's entry point) on the inventory's gateway hosts."""
        return ansible_playbook(
            ["-i", str(self.root / "inventory.json"), "-e", f"@{self.root / 'vars.json'}",
             *args, str(PLAYBOOK)],
            playbook_env(self.root),
            timeout=600,
        )  # fmt: skip

    def holders(self, hosts: tuple[str, ...] = HOSTS) -> list[str]:
        """The peers whose interface carries the VIP now."""
        found = []
        for host in hosts:
            result = docker("exec", self.keepalived(host), "ip", "-4", "-o", "addr", check=False)
            if f" {self.vip}/" in result.stdout:
                found.append(host)
        return found

    def wait_holders(self, want: int, hosts: tuple[str, ...] = HOSTS) -> list[str]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            holders = self.holders(hosts)
            if len(holders) == want:
                return holders
            time.sleep(0.2)
        pytest.fail(f"expected {want} holder(s) of {self.vip} among {hosts}, saw {holders}")

    def log(self, host: str) -> str:
        result = docker("logs", self.keepalived(host), check=False)
        return result.stdout + result.stderr


def ask_vip(vip: str, timeout: float = 0.3) -> str | None:
    """Who answers /name through the VIP from this machine (None: nobody)."""
    try:
        with urllib.request.urlopen(f"http://{vip}:{WEB_PORT}/name", timeout=timeout) as response:
            return response.read().decode()
    except OSError:
        return None


class Poller(threading.Thread):
    """Asks through the VIP every 50 ms and records (monotonic time, answer or None)."""

    def __init__(self, vip: str) -> None:
        super().__init__(daemon=True)
        self.vip = vip
        self.samples: list[tuple[float, str | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append((time.monotonic(), ask_vip(self.vip)))
            time.sleep(0.05)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    assert KEEPALIVED_IMAGE, "run through `make integration` (it exports the lab image refs)"
    assert PYTHON_IMAGE, "run through `make integration` (it exports the lab image refs)"
    assert docker_ready(KEEPALIVED_IMAGE, PYTHON_IMAGE), "needs the lab images (make images)"
    name = f"edgeai-vip-{os.getpid()}-{random.randrange(16**4):04x}"
    subnet = _free_subnet()
    base = subnet.network_address
    # Docker hands out the lower half only; the peers take fixed addresses there, the VIP is above
    ip_range = ipaddress.IPv4Network((base, 25))
    addresses = {host: str(base + 11 + i) for i, host in enumerate(ALL_HOSTS)}
    vip = str(base + 200)
    root = Path(tempfile.mkdtemp(prefix="edgeai-vip-"))
    lab = Lab(name, root, subnet, addresses, vip)
    # gw4 is a fourth host of the group that only the wrong-secret test converges
    inventory = {
        "all": {
            "vars": {"ansible_python_interpreter": sys.executable},
            "children": {
                "gateway": {
                    "hosts": {h: {"keepalived_address": a} for h, a in addresses.items()},
                    "vars": {
                        "keepalived_vip": f"{vip}/{subnet.prefixlen}",
                        "keepalived_auth_pass": SECRET,
                        "keepalived_interface": "eth0",
                        "keepalived_check_url": f"http://127.0.0.1:{WEB_PORT}/healthz",
                    },
                }
            },
        }
    }
    (root / "inventory.json").write_text(json.dumps(inventory))
    # per host, as extra vars (they outrank the role's internal ones): names, directories, and the
    # network namespace of the host's node container instead of this machine's host network
    prefix = name
    (root / "vars.json").write_text(
        json.dumps(
            {
                "keepalived_image": KEEPALIVED_IMAGE,
                "keepalived_container_name": prefix + "-{{ inventory_hostname }}-keepalived",
                "keepalived_config_dir": f"{root}/config/{{{{ inventory_hostname }}}}",
                "__keepalived_network_mode": f"container:{prefix}-{{{{ inventory_hostname }}}}",
                # no systemd here: the host-shutdown handover unit is for the edge hosts
                "__keepalived_handover_unit": "",
            }
        )
    )
    docker("network", "create", "--subnet", str(subnet), "--ip-range", str(ip_range), name)
    try:
        for host in ALL_HOSTS:
            lab.started.append(lab.keepalived(host))
            lab.started.append(f"{lab.keepalived(host)}-configtest")
        for host in HOSTS:
            lab.start_node(host)
        yield lab
    finally:
        for container in reversed(lab.started):
            docker("rm", "-f", container, check=False)
        docker("network", "rm", name, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_the_role_converges_and_reruns_without_a_change(lab: Lab) -> None:
    limit = ("--limit", ",".join(HOSTS))
    # check mode on fresh hosts: reports what it would do, creates nothing
    dry = lab.converge(*limit, "--check", "--diff")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert SECRET not in dry.stdout + dry.stderr
    assert docker("inspect", lab.keepalived("gw1"), check=False).returncode != 0
    assert not (lab.root / "config").exists()
    first = lab.converge(*limit)
    assert first.returncode == 0, first.stdout + first.stderr
    assert SECRET not in first.stdout + first.stderr
    # the configuration was checked in the image before it landed
    assert "Check the staged configuration in a throwaway container" in first.stdout
    for host in HOSTS:
        info = json.loads(docker("inspect", lab.keepalived(host)).stdout)[0]
        config = info["HostConfig"]
        assert sorted(config["CapAdd"]) == sorted(ROLE_VARS["__keepalived_capabilities"])
        assert config["CapDrop"] == ["ALL"]
        assert config["ReadonlyRootfs"] is True
        assert config["SecurityOpt"] == ["no-new-privileges:true"]
        assert info["State"]["Running"] is True
        live = lab.root / "config" / host / "live"
        assert stat.S_IMODE((live / "auth.conf").stat().st_mode) == 0o600
    again = lab.converge(*limit)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.findall(r"changed=(\d+)", again.stdout) == ["0", "0", "0"], again.stdout
    check = lab.converge(*limit, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.findall(r"changed=(\d+)", check.stdout) == ["0", "0", "0"], check.stdout


def test_a_changed_setting_is_reloaded_without_a_restart(lab: Lab) -> None:
    started = {h: _started_at(lab.keepalived(h)) for h in HOSTS}
    result = lab.converge("--limit", ",".join(HOSTS), "-e", "keepalived_garp_master_repeat=2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Reload keepalived (SIGHUP)" in result.stdout
    for host in HOSTS:
        assert (
            "vrrp_garp_master_repeat 2"
            in (lab.root / "config" / host / "live" / "keepalived.conf").read_text()
        )
        assert _started_at(lab.keepalived(host)) == started[host]
        assert "Reloading" in lab.log(host)


def _started_at(container: str) -> str:
    return json.loads(docker("inspect", container).stdout)[0]["State"]["StartedAt"]


def test_the_vip_is_held_by_exactly_one_peer_and_answers(lab: Lab) -> None:
    [holder] = lab.wait_holders(1)
    deadline = time.monotonic() + TIMEOUT
    while ask_vip(lab.vip) != holder and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ask_vip(lab.vip) == holder
    # it stays one: nobody else takes it while the holder is healthy
    time.sleep(3)
    assert lab.holders() == [holder]


def test_a_failed_gateway_gives_up_the_vip_and_a_returning_one_does_not_take_it_back(
    lab: Lab,
) -> None:
    gaps = []
    for run in range(3):
        [holder] = lab.wait_holders(1)
        assert ask_vip(lab.vip) == holder
        failures = lab.log(holder).count(CHECK_FAILED)
        poller = Poller(lab.vip)
        poller.start()
        time.sleep(1)
        stopped_at = time.monotonic()
        docker("stop", "-t", "0", lab.web(holder))
        deadline = stopped_at + TIMEOUT
        while time.monotonic() < deadline:
            answers = [a for t, a in poller.samples if t > stopped_at and a not in (None, holder)]
            if answers:
                break
            time.sleep(0.1)
        poller.stopping.set()
        poller.join()
        before = [t for t, a in poller.samples if t <= stopped_at and a == holder]
        after = [(t, a) for t, a in poller.samples if t > stopped_at and a not in (None, holder)]
        assert after, f"run {run}: the VIP did not move from {holder} within {TIMEOUT} s"
        new_holder = after[0][1]
        gaps.append(after[0][0] - before[-1])
        assert lab.holders() == [new_holder]
        # it was the check that moved it: the holder saw its gateway fail
        assert lab.log(holder).count(CHECK_FAILED) > failures
        # the old holder's gateway comes back: its check passes again, and it stays BACKUP
        recovered = lab.log(holder).count(CHECK_PASSED)
        docker("start", lab.web(holder))
        deadline = time.monotonic() + TIMEOUT
        while lab.log(holder).count(CHECK_PASSED) <= recovered:
            assert time.monotonic() < deadline, f"run {run}: {holder}'s check did not recover"
            time.sleep(0.2)
        time.sleep(4)  # several advertisement intervals after its recovery
        assert lab.holders() == [new_holder], f"run {run}: {holder} took the VIP back"
        assert ask_vip(lab.vip) == new_holder
    print(f"\nVIP failover (last answer before -> first after), s: {[round(g, 2) for g in gaps]}")


def test_a_peer_with_another_secret_does_not_join(lab: Lab) -> None:
    lab.wait_holders(1)
    refused_before = {host: lab.log(host).count(INVALID_PASSWORD) for host in HOSTS}
    # gw4's inventory gives it another password (the preflight compares the hosts of one run) and
    # the highest priority: were its advertisements accepted, the holder would yield to it at once
    lab.start_node("gw4")
    result = lab.converge(
        "--limit", "gw4", "-e", "keepalived_auth_pass=wrongpw1", "-e", "keepalived_priority=254"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # gw4 accepts none of the group's advertisements, so it claims the address for itself (the
    # reason the role's preflight refuses an inventory whose hosts differ in the secret) ...
    deadline = time.monotonic() + TIMEOUT
    while lab.holders(("gw4",)) != ["gw4"]:
        assert time.monotonic() < deadline, "gw4 started no VRRP instance"
        time.sleep(0.2)
    time.sleep(3)
    # ... but the group refuses its advertisements: one of its own hosts holds the address and
    # none of them acts on gw4's priority. (Which one may change: keepalived restarts a master's
    # advertisement timer on every packet it receives, refused ones too, so a stray peer sending
    # at the same interval can hold back the master's advertisements until a backup takes over;
    # see the role's README.)
    logs = {host: lab.log(host) for host in HOSTS}
    detail = "\n".join(f"--- {host}\n{log}" for host, log in logs.items())
    assert len(lab.wait_holders(1)) == 1
    for host, log in logs.items():
        assert log.count(INVALID_PASSWORD) > refused_before[host], detail
        assert f"from {lab.addresses['gw4']}" not in log, detail
        assert "priority 254" not in log, detail
    assert INVALID_PASSWORD in lab.log("gw4")
