"""keepalived.conf as the role renders it for a gateway group, and the inventories it refuses.

Each case is one ansible-playbook run of the role's own preflight and render tasks (render.py).
That the rendered file is a configuration keepalived accepts, and does what it says, is proven by
the Docker test next to this one (keepalived --config-test, and three peers moving the VIP).
"""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from .render import Rendered, render

SECRET = "Vr9:pw_x"
HOSTS = {
    "gw1": {"keepalived_address": "192.0.2.11"},
    "gw2": {"keepalived_address": "192.0.2.12"},
    "gw3": {"keepalived_address": "192.0.2.13"},
}
GROUP = {
    "keepalived_vip": "192.0.2.200/24",
    "keepalived_auth_pass": SECRET,
    "keepalived_interface": "eth1",
}


def _instance(config: str) -> str:
    return config[config.index("vrrp_instance gateway_vip {") :]


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    result = render(tmp_path_factory.mktemp("three"), HOSTS, GROUP, "--diff", "-v")
    assert result.returncode == 0, result.output
    return result


def test_each_host_sends_to_the_other_two_from_its_own_address(three: Rendered) -> None:
    for host, variables in HOSTS.items():
        instance = _instance(three.config(host))
        assert f"unicast_src_ip {variables['keepalived_address']}\n" in instance
        peers = re.search(r"unicast_peer \{\n(.*?)\n\s*\}", instance, re.S)
        assert peers is not None
        assert peers.group(1).split() == [
            v["keepalived_address"] for h, v in HOSTS.items() if h != host
        ]
        assert "    virtual_ipaddress {\n        192.0.2.200/24 dev eth1\n    }" in instance
        assert "    interface eth1\n" in instance


def test_every_host_starts_backup_without_preemption_in_inventory_order(three: Rendered) -> None:
    priorities = []
    for host in HOSTS:
        instance = _instance(three.config(host))
        assert "    state BACKUP\n    nopreempt\n" in instance
        assert "MASTER" not in instance
        priorities.append(int(re.search(r"\n    priority (\d+)\n", instance).group(1)))
    assert priorities == [250, 240, 230]


def test_the_health_check_follows_the_local_gateway(three: Rendered) -> None:
    config = three.config("gw1")
    script = re.search(r'vrrp_script gateway_healthy \{\n    script "([^"]+)"', config)
    assert script is not None
    # the role's default: this host's gateway on its published port (gateway_port)
    assert script.group(1).split()[0] == "/usr/bin/curl"
    assert script.group(1).endswith(" https://127.0.0.1:30080/healthz")
    assert "--fail" in script.group(1).split()
    assert "track_script {\n        gateway_healthy\n    }" in _instance(config)
    assert "    fall 2\n    rise 2\n" in config
    assert "vrrp_garp_master_delay 1\n" in config


def test_the_secret_is_only_in_the_root_only_auth_file(three: Rendered) -> None:
    # the run had --diff and -v: the rendered keepalived.conf is in the output, the secret is not
    assert "unicast_src_ip 192.0.2.11" in three.output
    assert SECRET not in three.output
    for host in HOSTS:
        staging = three.staging(host)
        assert SECRET not in three.config(host)
        assert "include /etc/keepalived/auth.conf" in three.config(host)
        auth = staging / "auth.conf"
        assert f"auth_pass {SECRET}\n" in auth.read_text()
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600
        assert stat.S_IMODE((staging / "keepalived.conf").stat().st_mode) == 0o600
        assert stat.S_IMODE(staging.stat().st_mode) == 0o700


def test_a_rerun_changes_nothing(three: Rendered) -> None:
    again = render(three.root, HOSTS, GROUP)
    assert again.returncode == 0, again.output
    assert re.findall(r"changed=(\d+)", again.output) == ["0", "0", "0"]


def test_preemption_and_priorities_from_variables(tmp_path: Path) -> None:
    hosts = {**HOSTS, "gw3": {**HOSTS["gw3"], "keepalived_priority": 99}}
    result = render(tmp_path, hosts, {**GROUP, "keepalived_preempt": True})
    assert result.returncode == 0, result.output
    assert "nopreempt" not in result.config("gw1")
    assert "    state BACKUP\n" in result.config("gw1")
    assert "\n    priority 99\n" in result.config("gw3")


def _default_route() -> tuple[str, str]:
    """This machine's default-route interface and its IPv4 address."""
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=True
    ).stdout.split()
    device = route[route.index("dev") + 1]
    addr = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return device, addr[addr.index("inet") + 1].split("/")[0]


def test_a_peer_outside_the_batch_is_asked_for_its_default_address(tmp_path: Path) -> None:
    # gw2 has no keepalived_address and is not in this run (a rolling batch, --limit): the
    # preflight gathers its facts (here it is this machine) for its default IPv4 address
    device, address = _default_route()
    hosts = {"gw1": {"keepalived_address": "192.0.2.11"}, "gw2": {}}
    result = render(tmp_path, hosts, GROUP, "--limit", "gw1")
    assert result.returncode == 0, result.output
    instance = _instance(result.config("gw1"))
    assert f"unicast_peer {{\n        {address}\n    }}" in instance
    # and a host in the run without an interface takes its default-route interface
    result = render(tmp_path / "iface", hosts, {**GROUP, "keepalived_interface": ""},
                    "--limit", "gw2", "-e", "keepalived_test_gather_facts=true")  # fmt: skip
    assert result.returncode == 0, result.output
    instance = _instance(result.config("gw2"))
    assert f"    interface {device}\n" in instance
    assert f"unicast_src_ip {address}\n" in instance


def test_a_host_without_an_address_or_facts_fails_naming_the_variable(tmp_path: Path) -> None:
    hosts = {"gw1": {}, "gw2": {"keepalived_address": "192.0.2.12"}}
    out = _fails(tmp_path, hosts, GROUP)
    assert "keepalived_address: gw1 has none" in out


def _fails(tmp_path: Path, hosts: dict, group: dict) -> str:
    result = render(tmp_path, hosts, group)
    assert result.returncode != 0, result.output
    assert SECRET not in result.output
    return " ".join(result.output.split())


def test_no_secret_fails_naming_the_variable(tmp_path: Path) -> None:
    group = {k: v for k, v in GROUP.items() if k != "keepalived_auth_pass"}
    out = _fails(tmp_path, HOSTS, group)
    assert "keepalived_auth_pass is empty or not 6 to 8 characters" in out
    assert "Ansible Vault" in out


@pytest.mark.parametrize("secret", ["abc", "nine-char", "has space", 'quo"te1', "dollar$1"])
def test_a_secret_keepalived_would_misread_fails(tmp_path: Path, secret: str) -> None:
    out = _fails(tmp_path, HOSTS, {**GROUP, "keepalived_auth_pass": secret})
    assert "keepalived_auth_pass is empty or not 6 to 8 characters" in out


def test_hosts_with_different_secrets_fail(tmp_path: Path) -> None:
    hosts = {**HOSTS, "gw2": {**HOSTS["gw2"], "keepalived_auth_pass": "other-pw"}}
    out = _fails(tmp_path, hosts, GROUP)
    assert "keepalived_auth_pass differs between the hosts of gateway" in out
    assert "other-pw" not in out


@pytest.mark.parametrize(
    ("vip", "message"),
    [
        ("192.0.2.200", "keepalived_vip: '192.0.2.200' must be an IPv4 address with its prefix"),
        ("", "keepalived_vip: '' must be an IPv4 address with its prefix"),
        ("192.0.2.12/24", "keepalived_vip must not be any host's own address"),
    ],
)
def test_a_bad_vip_fails_naming_the_variable(tmp_path: Path, vip: str, message: str) -> None:
    assert message in _fails(tmp_path, HOSTS, {**GROUP, "keepalived_vip": vip})
