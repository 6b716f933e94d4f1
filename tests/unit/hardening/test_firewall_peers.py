"""The host firewall's peer rules beyond the gateway's mTLS port (test_hardening_firewall.py
covers that): UDP peer ports (Alertmanager's gossip), and the containers' way to the same ports on
the peers. Rendered as Ansible renders it (trim_blocks) from the role's template."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2

ROLE = Path(__file__).resolve().parents[3] / "roles/hardening"
BASE: dict[str, Any] = {
    "ansible_managed": "test",
    "hardening_ssh_port": 22,
    "hardening_allowed_tcp_ports": [],
    "hardening_allowed_udp_ports": [],
    "hardening_published_ports": [30080],
    "hardening_trusted_networks": [],
    "hardening_container_interfaces": ["docker0", "br-*"],
    "hardening_container_egress": False,
    "hardening_container_egress_allowed": [],
    "__hardening_vrrp_peers": [],
}


def _render(**overrides: Any) -> str:
    env = jinja2.Environment(trim_blocks=True, autoescape=False)
    # Ansible's `search` test, which the template uses
    env.tests["search"] = lambda value, pattern: re.search(pattern, value) is not None
    return env.from_string((ROLE / "templates/firewall.nft.j2").read_text()).render(
        **{**BASE, **overrides}
    )


def test_a_single_host_opens_nothing_to_peers() -> None:
    text = _render(
        hardening_peer_addresses=[], hardening_peer_ports=[], hardening_peer_udp_ports=[]
    )
    assert "peer" not in text
    # no peers: no rule even with ports
    assert "peer" not in _render(
        hardening_peer_addresses=[], hardening_peer_ports=[30443], hardening_peer_udp_ports=[9094]
    )


def test_udp_peer_ports_and_the_containers_way_to_the_peers() -> None:
    text = _render(
        hardening_peer_addresses=["10.20.0.12", "10.20.0.13"],
        hardening_peer_ports=[30443, 9464, 9094],
        hardening_peer_udp_ports=[9094],
    )
    forward = text.split("chain forward")[1]
    assert (
        "ip saddr { 10.20.0.12, 10.20.0.13 } ct status dnat meta l4proto udp "
        "ct original proto-dst { 9094 } accept" in forward
    )
    # Prometheus, Alertmanager and the gateway reach the same ports on the peers, nothing else
    assert (
        'iifname "br-*" ip daddr { 10.20.0.12, 10.20.0.13 } tcp dport { 30443, 9464, 9094 } accept'
        in forward
    )
    assert 'iifname "br-*" ip daddr { 10.20.0.12, 10.20.0.13 } udp dport { 9094 } accept' in forward
    assert forward.index("to the peer ports") < forward.index('iifname "br-*" drop')
    assert forward.index("(UDP), for the other hosts") < forward.index('oifname "br-*" drop')
