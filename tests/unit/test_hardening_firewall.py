"""The host firewall with several hosts: the gateway's mTLS port is open to the peers only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_run import ansible_playbook, playbook_env

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests/unit/playbooks/hardening_firewall.yml"


def render(tmp: Path, inventory: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp / "inventory.json"
    path.write_text(json.dumps(inventory))
    return ansible_playbook(
        ["-i", str(path), "-e", f"out_dir={tmp}", str(PLAYBOOK)], playbook_env(tmp), timeout=300
    )


def host(address: str | None = None, **extra: object) -> dict[str, object]:
    variables: dict[str, object] = {"ansible_python_interpreter": sys.executable, **extra}
    if address:
        variables["ansible_host"] = address
    return variables


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("firewall")
    inventory = {
        "all": {
            "children": {
                "edge": {
                    "hosts": {
                        "shop-01": host("10.20.0.11"),
                        # the peers reach it from another address than the inventory's
                        "shop-02": host("10.20.0.12", gateway_peer_address="192.168.50.12"),
                        "shop-03": host("fd00::13"),
                    },
                    "vars": {"gateway_peer_group": "edge"},
                },
                "solo": {"hosts": {"alone": host("10.30.0.1", gateway_peer_group="solo")}},
            }
        }
    }
    result = render(tmp, inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp


def peer_rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "for the other hosts of the site" in line]


def test_the_peer_port_is_open_to_the_other_hosts_only(rendered: Path) -> None:
    assert peer_rules((rendered / "shop-01.nft").read_text()) == [
        "ip saddr { 192.168.50.12 } ct status dnat meta l4proto tcp ct original proto-dst { 30443 }"
        ' accept comment "the peer ports, for the other hosts of the site only"',
        "ip6 saddr { fd00::13 } ct status dnat meta l4proto tcp ct original proto-dst { 30443 }"
        ' accept comment "the peer ports, for the other hosts of the site only"',
    ]
    rules = peer_rules((rendered / "shop-02.nft").read_text())
    assert [re.search(r"saddr \{ (.*?) \}", r).group(1) for r in rules] == [  # type: ignore[union-attr]
        "10.20.0.11",
        "fd00::13",
    ]
    # before the drop of everything else that goes to a container, never open to the world
    text = (rendered / "shop-03.nft").read_text()
    assert text.index("the peer ports,") < text.index('oifname "br-*" drop')
    assert "30443" not in text.split("chain forward", 1)[0]
    published = next(line for line in text.splitlines() if "published for the outside" in line)
    assert "30443" not in published


def test_one_host_alone_gets_no_peer_rule(rendered: Path) -> None:
    text = (rendered / "alone.nft").read_text()
    assert peer_rules(text) == []
    assert "30443" not in text


def test_a_peer_without_an_ip_address_fails_the_preflight(tmp_path: Path) -> None:
    inventory = {
        "all": {
            "children": {
                "edge": {
                    "hosts": {"a": host("10.0.0.1"), "b": host("shop-b")},
                    "vars": {"gateway_peer_group": "edge"},
                }
            }
        }
    }
    result = render(tmp_path, inventory)
    assert result.returncode != 0
    assert "hardening_peer_addresses IP addresses" in result.stdout
    assert "shop-b" in result.stdout


def test_nft_accepts_the_ruleset(rendered: Path) -> None:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(nft).exists():
        pytest.skip("needs nft (nftables)")
    for name in ("shop-01", "alone"):
        check = subprocess.run(
            [nft, "-c", "-f", str(rendered / f"{name}.nft")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr
