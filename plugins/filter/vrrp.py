# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the keepalived role: the virtual address, each VRRP peer's address and priority."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

# VRRP priorities: 255 is reserved for the address owner, 0 for "stepping down"
_TOP_PRIORITY = 250
_PRIORITY_STEP = 10


def vrrp_vip(value: Any, name: str = "keepalived_vip") -> str:
    """The virtual address as ``address/prefix`` (IPv4), checked; ``name`` starts the error."""
    text = str(value or "").strip()
    if "/" not in text:
        raise AnsibleFilterError(
            f"{name}: {text!r} must be an IPv4 address with its prefix length, e.g. 192.0.2.10/24"
        )
    try:
        interface = ipaddress.IPv4Interface(text)
    except ValueError as error:
        raise AnsibleFilterError(
            f"{name}: {text!r} is not an IPv4 address/prefix ({error})"
        ) from error
    network = interface.network
    if network.prefixlen < 31 and interface.ip in (
        network.network_address,
        network.broadcast_address,
    ):
        raise AnsibleFilterError(
            f"{name}: {text!r} is the network or broadcast address of {network}"
        )
    if interface.ip.is_loopback or interface.ip.is_multicast or interface.ip.is_unspecified:
        raise AnsibleFilterError(f"{name}: {text!r} cannot be a virtual address")
    return f"{interface.ip}/{network.prefixlen}"


def _host_address(host: str, variables: Mapping[str, Any], name: str) -> str:
    explicit = str(variables.get(name) or "").strip()
    if explicit:
        address = explicit
    else:
        facts = variables.get("ansible_facts") or {}
        address = str((facts.get("default_ipv4") or {}).get("address") or "")
        if not address:
            raise AnsibleFilterError(
                f"{name}: {host} has none and no default IPv4 address in its facts; set "
                f"{name} for {host} (its address on the network of the virtual IP)"
            )
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        raise AnsibleFilterError(f"{name}: {address!r} of {host} is not an IPv4 address") from None


def vrrp_peers(
    hosts: Sequence[str],
    hostvars: Mapping[str, Any],
    name: str = "keepalived_address",
) -> dict[str, str]:
    """Each host's VRRP address: its ``name`` variable, else its default IPv4 address.

    ``hostvars`` is Ansible's (or a mapping of host -> variables with ``ansible_facts``). Two hosts
    with one address fail: a unicast peer list cannot tell them apart.
    """
    addresses: dict[str, str] = {}
    for host in hosts:
        addresses[str(host)] = _host_address(str(host), hostvars[host], name)
    seen: dict[str, str] = {}
    for host, address in addresses.items():
        if address in seen:
            raise AnsibleFilterError(
                f"{name}: {seen[address]} and {host} both have the address {address}"
            )
        seen[address] = host
    return addresses


def vrrp_firewall_peers(
    hosts: Sequence[str],
    hostvars: Mapping[str, Any],
    host: str,
    name: str = "keepalived_address",
) -> list[str]:
    """The VRRP addresses of ``host``'s peers, for its firewall; none when it shares no VIP.

    A host shares the virtual address when it is one of ``hosts`` (the keepalived group) and the
    group has two hosts or more, as in the keepalived role.
    """
    names = [str(h) for h in hosts]
    if len(names) < 2 or host not in names:
        return []
    addresses = vrrp_peers(names, hostvars, name)
    return [address for peer, address in addresses.items() if peer != host]


def vrrp_priority(hosts: Sequence[str], host: str, explicit: Any = 0) -> int:
    """A host's VRRP priority: ``explicit`` when set (1-254), else from its place in ``hosts``.

    The first host gets 250, the next 240, and so on (never below 1): with preemption off the
    priorities only decide who takes the address when several hosts start or fail over together.
    """
    value = int(explicit or 0)
    if value:
        if not 1 <= value <= 254:
            raise AnsibleFilterError(f"keepalived_priority: {value} of {host} is not in 1-254")
        return value
    names = [str(h) for h in hosts]
    if host not in names:
        raise AnsibleFilterError(f"vrrp_priority: {host} is not one of {', '.join(names)}")
    return max(1, _TOP_PRIORITY - _PRIORITY_STEP * names.index(host))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "vrrp_vip": vrrp_vip,
            "vrrp_peers": vrrp_peers,
            "vrrp_firewall_peers": vrrp_firewall_peers,
            "vrrp_priority": vrrp_priority,
        }
