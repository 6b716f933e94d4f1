# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the metrics relay (roles/exporters): a host's Prometheus targets seen from a peer.

A host's roles write file_sd fragments (``[{targets: [...], labels: {...}}]``) for its own
Prometheus. On a site of several hosts the other hosts' Prometheus servers scrape the same
targets through the host's relay, an nginx on one published port that proxies
``/relay/<target><metrics path>`` to the target on the host's monitoring networks. These filters
turn the fragments into the relay's HTTP service discovery list and its allow-list.
"""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

_TARGET = re.compile(r"^[A-Za-z0-9_.-]+:[0-9]+$")


def _groups(fragments: Any) -> list[dict[str, Any]]:
    if not isinstance(fragments, list):
        raise AnsibleFilterError("relay: the fragments must be a list of file_sd lists")
    groups: list[dict[str, Any]] = []
    for fragment in fragments:
        for group in fragment or []:
            if not isinstance(group, dict) or not isinstance(group.get("targets"), list):
                raise AnsibleFilterError(f"relay: not a file_sd target group: {group!r}")
            for target in group["targets"]:
                if not _TARGET.match(str(target)):
                    raise AnsibleFilterError(f"relay: {target!r} is not a host:port target")
            groups.append(group)
    return groups


def relay_allowed(fragments: Any) -> list[str]:
    """Every ``host:port`` the fragments list, sorted, each once: what the relay may proxy to."""
    return sorted({str(t) for group in _groups(fragments) for t in group["targets"]})


def relay_targets(fragments: Any, relay: str, host: str) -> list[dict[str, Any]]:
    """The fragments' targets as a peer scrapes them: through ``relay`` (address:port).

    Each target keeps its labels (job, instance, probe parameters); its address becomes the
    relay's, its metrics path ``/relay/<target><path>``, ``instance`` stays the target's own
    unless the fragment set one, and ``host`` names the host it runs on.
    """
    if not _TARGET.match(str(relay)):
        raise AnsibleFilterError(f"relay: {relay!r} is not the relay's address:port")
    out: list[dict[str, Any]] = []
    for group in _groups(fragments):
        labels = dict(group.get("labels") or {})
        if labels.get("__scheme__", "http") != "http":
            raise AnsibleFilterError(f"relay: only plain HTTP targets are relayed, not {group!r}")
        path = str(labels.pop("__metrics_path__", "/metrics"))
        for target in group["targets"]:
            relabelled = dict(labels)
            relabelled["__metrics_path__"] = f"/relay/{target}{path}"
            relabelled.setdefault("instance", str(target))
            relabelled["host"] = str(host)
            out.append({"targets": [str(relay)], "labels": relabelled})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"relay_allowed": relay_allowed, "relay_targets": relay_targets}
