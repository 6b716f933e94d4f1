# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the docker role: the daemon.json merge and registry-mirror image references."""

from __future__ import annotations

import json
import re
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def daemon_json_merge(
    existing_text: str | None, managed_before: list[str] | None, desired: dict[str, Any]
) -> dict[str, Any]:
    """Merge the role's daemon.json keys into what is on the host.

    Keys that other tools wrote stay; keys this role set last time (`managed_before`) but no longer
    sets are removed; the role's keys win, nested mappings merged recursively.
    """
    if not isinstance(desired, dict):
        raise AnsibleFilterError(
            "docker_daemon_options must be a mapping of daemon.json keys, "
            f"got {type(desired).__name__}"
        )
    text = (existing_text or "").strip()
    existing: Any = {}
    if text:
        try:
            existing = json.loads(text)
        except json.JSONDecodeError as error:
            raise AnsibleFilterError(
                f"/etc/docker/daemon.json on the host is not valid JSON ({error}); fix or remove it"
            ) from error
    if not isinstance(existing, dict):
        raise AnsibleFilterError("/etc/docker/daemon.json on the host is not a JSON object")
    stale = set(managed_before or []) - set(desired)
    kept = {key: value for key, value in existing.items() if key not in stale}
    return _merge(kept, desired)


def mirror_ref(ref: str, mirror: str | None) -> str:
    """The reference under which a registry mirror serves `ref`.

    `nginx:1.27` through `registry.local:5000` is `registry.local:5000/library/nginx:1.27`
    (Docker Hub's implicit `library/`); `ghcr.io/o/i:1` is `registry.local:5000/ghcr.io/o/i:1`.
    An empty mirror returns `ref` unchanged.
    """
    if not isinstance(ref, str) or not ref:
        raise AnsibleFilterError("mirror_ref needs a non-empty image reference")
    if not mirror:
        return ref
    mirror = mirror.rstrip("/")
    first, _sep, rest = ref.partition("/")
    is_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if is_registry and first == "docker.io":
        ref = rest
        first, _sep, rest = ref.partition("/")
    if not rest:
        return f"{mirror}/library/{ref}"
    return f"{mirror}/{ref}"


def bundle_file(ref: str) -> str:
    """The tar file name of `ref` in an offline bundle."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ref) + ".tar"


def bundle_manifest(
    images: list[dict[str, Any]], refs: list[str], checksums: list[str]
) -> dict[str, Any]:
    """The manifest of an offline bundle: per image its reference, ID, tar file and sha256."""
    if len(refs) != len(checksums):
        raise AnsibleFilterError("bundle_manifest needs one checksum per image reference")
    entries = []
    for ref, checksum in zip(refs, checksums, strict=True):
        match = [image for image in images if ref in (image.get("RepoTags") or [])]
        if not match:
            raise AnsibleFilterError(f"bundle_images: {ref} is not on the controller")
        entries.append(
            {"ref": ref, "id": match[0]["Id"], "file": bundle_file(ref), "sha256": checksum}
        )
    return {"images": entries}


_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([bkmg]?)$")
_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Docker refuses memory limits under 6 MiB.
_MEMORY_MIN = 6 * 1024**2


def memory_limit(value: Any, total_mb: Any = 0, name: str = "memory limit") -> str:
    """A container's memory limit in bytes (a string for docker_container's ``memory``).

    ``value`` is a Docker size (``512m``, ``1.5g``, bytes) or a share of the host's memory
    (``25%`` of ``total_mb``, the ``memtotal_mb`` fact); ``""`` means no limit and gives ``""``.
    ``name`` (the variable) starts every error message.
    """
    text = str(value if value is not None else "").strip().lower()
    if text == "":
        return ""
    size = _SIZE.match(text)
    percent = _PERCENT.match(text)
    if size:
        limit = int(float(size.group(1)) * _UNITS[size.group(2)])
    elif percent:
        share = float(percent.group(1))
        if not 0 < share <= 100:
            raise AnsibleFilterError(f"{name}: {value!r} must be a share between 0% and 100%")
        try:
            total = int(float(total_mb or 0))
        except (TypeError, ValueError) as error:
            raise AnsibleFilterError(
                f"{name}: the host's memory {total_mb!r} is not a number"
            ) from error
        if total <= 0:
            raise AnsibleFilterError(
                f"{name}: {value!r} is a share of the host's memory, which is unknown here "
                "(gather facts, or give a size such as 2g)"
            )
        limit = int(total * 1024**2 * share / 100)
    else:
        raise AnsibleFilterError(
            f"{name}: {value!r} is neither a size (512m, 2g) nor a share of the host's memory (25%)"
        )
    if limit < _MEMORY_MIN:
        raise AnsibleFilterError(f"{name}: {value!r} is under Docker's minimum of 6 MiB")
    return str(limit)


def replica_names(count: Any, base: str) -> list[str]:
    """The container names of `count` replicas of a service: `base`, `base-2`, ..."""
    try:
        number = int(count)
    except (TypeError, ValueError):
        raise AnsibleFilterError(
            f"replica_names: the count must be an integer, got {count!r}"
        ) from None
    if number < 1:
        raise AnsibleFilterError(f"replica_names: the count must be at least 1, got {number}")
    return [base] + [f"{base}-{i}" for i in range(2, number + 1)]


# The security baseline of every long-running container of the appliance (container_baseline).
NO_NEW_PRIVILEGES = "no-new-privileges:true"
APPLIANCE_LABEL = "org.edgeai.appliance"  # on every container and network of the appliance
_COMPARISONS = {"labels": "strict", "env": "strict", "networks": "strict"}
_COMPARISON_MODES = ("strict", "ignore", "allow_more_present")


def container_baseline(
    role: str,
    memory: Any = "",
    total_mb: Any = 0,
    name: str | None = None,
    *,
    labels: dict[str, Any] | None = None,
    comparisons: dict[str, str] | None = None,
) -> dict[str, Any]:
    """docker_container options every container of ``role`` runs with (for module_defaults).

    Every capability dropped, ``no-new-privileges:true``, a read-only root filesystem, the labels
    ``org.edgeai.appliance``/``org.edgeai.role`` (plus ``labels``), strict comparison of labels,
    environment and networks (``comparisons`` overrides single ones) and, when ``memory`` is not
    empty, the memory limit in bytes (``memory_limit`` of ``memory``, ``total_mb``; ``name``, the
    variable, defaults to ``<role>_memory_limit`` and starts every error message).
    """
    if not isinstance(role, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", role):
        raise AnsibleFilterError(f"container_baseline: the role must be a role name, got {role!r}")
    for what, given in (("labels", labels), ("comparisons", comparisons)):
        if given is not None and not isinstance(given, dict):
            raise AnsibleFilterError(
                f"container_baseline: {what} must be a mapping, got {type(given).__name__}"
            )
    unknown = {k: v for k, v in (comparisons or {}).items() if v not in _COMPARISON_MODES}
    if unknown:
        modes = ", ".join(_COMPARISON_MODES)
        raise AnsibleFilterError(
            f"container_baseline: comparisons {unknown!r} must be one of {modes}"
        )
    options: dict[str, Any] = {
        "cap_drop": ["ALL"],
        "security_opts": [NO_NEW_PRIVILEGES],
        "read_only": True,
        "labels": {
            APPLIANCE_LABEL: "true",
            "org.edgeai.role": role,
            **{str(k): str(v) for k, v in (labels or {}).items()},
        },
        "comparisons": {**_COMPARISONS, **(comparisons or {})},
    }
    limit = memory_limit(memory, total_mb, name or f"{role}_memory_limit")
    if limit:
        options["memory"] = limit
    return options


def networks_to_change(wanted: list[dict[str, Any]], present: list[dict[str, Any]]) -> list[dict]:
    """The entries of ``wanted`` that the engine lacks or holds with other settings.

    ``wanted`` are the docker role's network entries (name, internal, subnet, icc); ``present``
    is what the engine reports for its networks (Docker's /networks objects, as
    community.docker.docker_host_info returns them with verbose_output). A network is left alone
    only when every setting the role manages already matches: bridge driver, internal or not, the
    subnet and the inter-container setting where the entry names them, and the role's label.
    Everything else goes to community.docker.docker_network, which then does the work.
    """
    by_name = {net.get("Name"): net for net in present or []}
    changes = []
    for entry in wanted:
        net = by_name.get(entry["name"])
        if net is None or not _network_matches(entry, net):
            changes.append(entry)
    return changes


def _network_matches(entry: dict[str, Any], net: dict[str, Any]) -> bool:
    if net.get("Driver") != "bridge":
        return False
    if bool(net.get("Internal")) != bool(entry.get("internal", False)):
        return False
    if (net.get("Labels") or {}).get(APPLIANCE_LABEL) != "true":
        return False
    if "subnet" in entry:
        subnets = [c.get("Subnet") for c in (net.get("IPAM") or {}).get("Config") or []]
        if subnets != [entry["subnet"]]:
            return False
    if "icc" in entry:
        icc = (net.get("Options") or {}).get("com.docker.network.bridge.enable_icc")
        if icc != str(boolean(entry["icc"], strict=False)).lower():
            return False
    return True


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "memory_limit": memory_limit,
            "container_baseline": container_baseline,
            "replica_names": replica_names,
            "daemon_json_merge": daemon_json_merge,
            "mirror_ref": mirror_ref,
            "bundle_file": bundle_file,
            "bundle_manifest": bundle_manifest,
            "networks_to_change": networks_to_change,
        }
