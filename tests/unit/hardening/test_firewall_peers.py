"""The host firewall's peer rules (roles/hardening/templates/firewall.nft.j2): on a site of
several hosts, the peers' addresses and nothing else reach the peer ports; a single host's
ruleset has no such rule. Rendered as Ansible renders it (trim_blocks) with the role's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles/hardening"


def _render(**overrides: Any) -> str:
    variables = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    variables.update(overrides, ansible_managed="test")
    template = (ROLE / "templates/firewall.nft.j2").read_text()
    return (
        jinja2.Environment(trim_blocks=True, autoescape=False)
        .from_string(template)
        .render(**variables)
    )


def test_a_single_host_opens_nothing_to_peers() -> None:
    text = _render()
    assert "peers" not in text
    assert _render(hardening_peer_addresses=[], hardening_peer_ports=[9464]) == text


def test_peers_and_only_peers_reach_the_peer_ports() -> None:
    text = _render(
        hardening_peer_addresses=["10.20.0.12", "10.20.0.13"], hardening_peer_ports=[9464, 9094]
    )
    forward = text.split("chain forward")[1]
    for peer in ("10.20.0.12", "10.20.0.13"):
        assert (
            f"ct status dnat ip saddr {peer} meta l4proto {{ tcp, udp }} "
            "ct original proto-dst { 9464, 9094 } accept" in forward
        )
        # the containers (Prometheus, Alertmanager) reach the same ports on the peers
        assert (
            f'iifname "br-*" ip daddr {peer} meta l4proto {{ tcp, udp }} '
            "th dport { 9464, 9094 } accept" in forward
        )
    # the peer rules come before the drop of everything else from outside
    assert forward.index("site's peers only") < forward.index('oifname "br-*" drop')
    # the gateway's port stays open to everyone, the peer ports are not in that rule
    assert "ct original proto-dst { 30080 } accept" in forward
