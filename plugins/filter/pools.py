# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the gateway's pools across hosts: the peers' listeners, and their models agreeing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _onnx_models(value: Any, host: str) -> set[str]:
    if not isinstance(value, list):
        raise AnsibleFilterError(f"onnx_service_models of {host} must be a list")
    names = set()
    for entry in value:
        if not isinstance(entry, Mapping) or not entry.get("name"):
            raise AnsibleFilterError(f"onnx_service_models of {host}: every entry needs a name")
        version = entry.get("version")
        names.add(f"{entry['name']} version {version}" if version is not None else entry["name"])
    return names


def _ollama_models(value: Any, host: str) -> set[str]:
    if not isinstance(value, list):
        raise AnsibleFilterError(f"ollama_models of {host} must be a list")
    names = set()
    for entry in value:
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        if not name:
            raise AnsibleFilterError(f"ollama_models of {host}: every entry needs a name")
        names.add(str(name))
    return names


def pool_peers(hosts: list[str], hostvars: Mapping[str, Any], port: Any) -> list[dict[str, Any]]:
    """The peers' mTLS listeners: {name, address, port} per host, in the order given.

    address: the host's gateway_peer_address, else its ansible_host, else its name; port: its
    gateway_peer_port, else `port` (this host's).
    """
    peers = []
    for host in hosts:
        variables = hostvars[host]
        address = variables.get("gateway_peer_address") or variables.get("ansible_host") or host
        own = variables.get("gateway_peer_port")
        value = own if own not in (None, "") else port
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise AnsibleFilterError(
                f"gateway_peer_port of {host} must be a port number, got {value!r}"
            ) from None
        peers.append({"name": host, "address": str(address), "port": number})
    return peers


def pool_model_differences(hosts: list[str], hostvars: Mapping[str, Any]) -> list[str]:
    """What the hosts of a pool do not agree on, one sentence per model ([] when they agree).

    Every host of a pool may get a request for any model, so each must declare the same ONNX
    models (onnx_service_models: name and version) and Ollama models (ollama_models: name). A host
    that does not set a variable declares none of that kind.
    """
    declared: dict[str, dict[str, set[str]]] = {}
    for host in hosts:
        variables = hostvars[host]
        declared[host] = {
            "ONNX": _onnx_models(variables.get("onnx_service_models") or [], host),
            "Ollama": _ollama_models(variables.get("ollama_models") or [], host),
        }
    differences = []
    for kind in ("ONNX", "Ollama"):
        every = set().union(*(models[kind] for models in declared.values())) if declared else set()
        for model in sorted(every):
            having = [h for h in hosts if model in declared[h][kind]]
            missing = [h for h in hosts if model not in declared[h][kind]]
            if missing:
                differences.append(
                    f"{kind} model {model} is declared on {', '.join(having)} "
                    f"but not on {', '.join(missing)}"
                )
    return differences


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pool_model_differences": pool_model_differences, "pool_peers": pool_peers}
