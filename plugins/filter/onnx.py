# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The onnx_service role's model manifest, checked and made ready for the onnx_model module."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_nice_yaml

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION = re.compile(r"^[1-9][0-9]*$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_URL = re.compile(r"^https?://")


def _valid(entry: Any) -> bool:
    if not isinstance(entry, Mapping):
        return False
    name, sha, url = entry.get("name"), entry.get("sha256"), entry.get("url")
    return (
        isinstance(name, str)
        and bool(_NAME.match(name))
        and "version" in entry
        and not isinstance(entry["version"], bool)
        and bool(_VERSION.match(str(entry["version"])))
        and isinstance(sha, str)
        and bool(_SHA256.match(sha))
        and ("src" in entry) != ("url" in entry)
        and (url is None or (isinstance(url, str) and bool(_URL.match(url))))
        and ("config" not in entry or isinstance(entry["config"], Mapping))
    )


def onnx_model_manifest(
    models: Any, cache_dir: str, name: str = "onnx_service_models"
) -> list[dict[str, Any]]:
    """``onnx_service_models`` as the onnx_model module takes it.

    Each entry is checked (the error names ``name``, the variable); ``src`` becomes the file on
    the controller to copy (for a ``url`` entry, its place in ``cache_dir``: ``<sha256>.onnx``);
    ``config`` becomes the text of config.yaml (Ansible's ``to_nice_yaml``, keys sorted), so that
    the file on the host is compared and written byte for byte.
    """
    if not isinstance(models, list):
        raise AnsibleFilterError(f"{name} must be a list of models, not {type(models).__name__}")
    for entry in models:
        if not _valid(entry):
            raise AnsibleFilterError(
                f"{name} entry {entry} is not valid: it needs name (letters, digits, '_', '.', "
                "'-'; not starting with '.'), version (a positive integer), sha256 (64 hex "
                "digits), exactly one of src (a file on the controller) or url (http or https), "
                "and optionally config (a mapping, written as the model's config.yaml)."
            )
    names = [str(entry["name"]) for entry in models]
    twice = [n for i, n in enumerate(names) if names.count(n) > 1 and names.index(n) == i]
    if twice:
        raise AnsibleFilterError(
            f"{name} lists {', '.join(twice)} more than once: give each model once, with the "
            "version that should serve (the newest version serves; earlier version directories "
            f"stay on the host, as many as {name}_keep)."
        )
    manifest = []
    for entry in models:
        sha = str(entry["sha256"]).lower()
        url = str(entry["url"]) if "url" in entry else ""
        config = entry.get("config")
        src = str(entry["src"]) if "src" in entry else posixpath.join(cache_dir, f"{sha}.onnx")
        text = None if config is None else to_nice_yaml(config, indent=2, sort_keys=True)
        manifest.append(
            {
                "name": str(entry["name"]),
                "version": int(entry["version"]),
                "sha256": sha,
                "src": src,
                "url": url,
                "config": text,
            }
        )
    return manifest


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"onnx_model_manifest": onnx_model_manifest}
