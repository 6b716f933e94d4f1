"""The hardening role's firewall lets VRRP in from the gateway group's peers, and only there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ansible_run import ansible_playbook, playbook_env

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "firewall.yml"


def _render(root: Path, inventory: dict) -> dict[str, str]:
    inventory["all"]["vars"] = {"ansible_python_interpreter": sys.executable}
    (root / "inventory.json").write_text(json.dumps(inventory))
    result = ansible_playbook(
        ["-i", str(root / "inventory.json"), "-e", f"firewall_test_root={root}", str(PLAYBOOK)],
        playbook_env(root),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {path.stem: path.read_text() for path in root.glob("*.nft")}


def _vrrp_lines(ruleset: str) -> list[str]:
    return [line.strip() for line in ruleset.splitlines() if "vrrp" in line]


def test_gateway_hosts_admit_vrrp_from_their_peers_only(tmp_path: Path) -> None:
    rulesets = _render(
        tmp_path,
        {
            "all": {
                "children": {
                    # the pools across hosts open a peer rule of their own: not this test's subject
                    "edge": {
                        "hosts": {"gw1": {}, "gw2": {}, "models": {}},
                        "vars": {"gateway_peer_port": 0},
                    },
                    "gateway": {
                        "hosts": {
                            "gw1": {"keepalived_address": "192.0.2.11"},
                            "gw2": {"keepalived_address": "192.0.2.12"},
                        }
                    },
                },
            }
        },
    )
    rule = 'ip saddr {} ip protocol vrrp accept comment "VRRP of the gateway group\'s virtual IP"'
    assert _vrrp_lines(rulesets["gw1"]) == [rule.format("192.0.2.12")]
    assert _vrrp_lines(rulesets["gw2"]) == [rule.format("192.0.2.11")]
    # a host outside the group gets no VRRP rule: the same ruleset as a single host
    assert _vrrp_lines(rulesets["models"]) == []
    assert rulesets["models"] == _single_host(tmp_path / "single")


def _single_host(root: Path) -> str:
    root.mkdir()
    return _render(root, {"all": {"children": {"edge": {"hosts": {"models": {}}}}}})["models"]


def test_a_group_of_one_shares_no_vip_and_gets_no_rule(tmp_path: Path) -> None:
    rulesets = _render(
        tmp_path,
        {
            "all": {
                "children": {"gateway": {"hosts": {"gw1": {"keepalived_address": "192.0.2.11"}}}}
            }
        },
    )
    assert _vrrp_lines(rulesets["gw1"]) == []
