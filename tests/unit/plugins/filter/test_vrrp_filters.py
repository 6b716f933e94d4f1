"""edgeai.appliance.vrrp_*: the keepalived role's virtual address, peers and priorities."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.vrrp import (
    vrrp_firewall_peers,
    vrrp_peers,
    vrrp_priority,
    vrrp_vip,
)


@pytest.mark.parametrize(
    ("value", "normal"),
    [
        ("192.0.2.10/24", "192.0.2.10/24"),
        (" 10.1.2.3/16 ", "10.1.2.3/16"),
        ("10.0.0.1/32", "10.0.0.1/32"),
    ],
)
def test_vip_is_an_address_with_its_prefix(value: str, normal: str) -> None:
    assert vrrp_vip(value) == normal


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "with its prefix length"),
        ("192.0.2.10", "with its prefix length"),
        ("192.0.2.300/24", "not an IPv4 address/prefix"),
        ("192.0.2.10/33", "not an IPv4 address/prefix"),
        ("2001:db8::1/64", "not an IPv4 address/prefix"),
        ("192.0.2.0/24", "network or broadcast"),
        ("192.0.2.255/24", "network or broadcast"),
        ("127.0.0.5/8", "cannot be a virtual address"),
        ("gateway.example/24", "not an IPv4 address/prefix"),
    ],
)
def test_a_bad_vip_fails_naming_the_variable(value: str, why: str) -> None:
    with pytest.raises(AnsibleFilterError, match=rf"^keepalived_vip: .*{why}"):
        vrrp_vip(value)


def test_peers_take_the_variable_else_the_default_ipv4_address() -> None:
    hostvars = {
        "gw1": {"keepalived_address": "10.0.0.11", "ansible_facts": {}},
        "gw2": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.12"}}},
        "gw3": {
            "keepalived_address": "",
            "ansible_facts": {"default_ipv4": {"address": "10.0.0.13"}},
        },
    }
    assert vrrp_peers(["gw1", "gw2", "gw3"], hostvars) == {
        "gw1": "10.0.0.11",
        "gw2": "10.0.0.12",
        "gw3": "10.0.0.13",
    }


def test_a_peer_without_an_address_fails_naming_it() -> None:
    hostvars = {"gw1": {"keepalived_address": "10.0.0.11"}, "gw2": {"ansible_facts": {}}}
    with pytest.raises(AnsibleFilterError, match=r"^keepalived_address: gw2 has none"):
        vrrp_peers(["gw1", "gw2"], hostvars)


def test_two_peers_with_one_address_fail() -> None:
    hostvars = {
        "gw1": {"keepalived_address": "10.0.0.11"},
        "gw2": {"keepalived_address": "10.0.0.11"},
    }
    with pytest.raises(AnsibleFilterError, match=r"gw1 and gw2 both have the address 10\.0\.0\.11"):
        vrrp_peers(["gw1", "gw2"], hostvars)


def test_a_malformed_peer_address_fails() -> None:
    with pytest.raises(AnsibleFilterError, match=r"'10\.0\.0' of gw1 is not an IPv4 address"):
        vrrp_peers(["gw1"], {"gw1": {"keepalived_address": "10.0.0"}})


def test_priorities_follow_the_inventory_order_unless_set() -> None:
    hosts = ["gw1", "gw2", "gw3"]
    assert [vrrp_priority(hosts, h) for h in hosts] == [250, 240, 230]
    assert vrrp_priority(hosts, "gw3", 99) == 99
    assert vrrp_priority([f"h{i}" for i in range(40)], "h39") == 1
    with pytest.raises(AnsibleFilterError, match=r"keepalived_priority: 255 of gw1"):
        vrrp_priority(hosts, "gw1", 255)
    with pytest.raises(AnsibleFilterError, match=r"gw9 is not one of gw1, gw2, gw3"):
        vrrp_priority(hosts, "gw9")


def test_the_firewall_admits_the_other_peers_of_a_shared_vip_only() -> None:
    hostvars = {
        h: {"keepalived_address": f"10.0.0.1{i}"} for i, h in enumerate(["gw1", "gw2", "gw3"])
    }
    assert vrrp_firewall_peers(["gw1", "gw2", "gw3"], hostvars, "gw2") == ["10.0.0.10", "10.0.0.12"]
    # not a member, or a group of one: no VIP, no VRRP rule (the firewall stays as it was)
    assert vrrp_firewall_peers(["gw1", "gw2"], hostvars, "gw3") == []
    assert vrrp_firewall_peers(["gw1"], hostvars, "gw1") == []
    assert vrrp_firewall_peers([], hostvars, "gw1") == []
