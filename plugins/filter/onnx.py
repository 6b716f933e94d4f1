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


def _valid_file(entry: Any) -> bool:
    """A file entry: name, sha256 and exactly one of src or url."""
    if not isinstance(entry, Mapping):
        return False
    name, sha, url = entry.get("name"), entry.get("sha256"), entry.get("url")
    return (
        isinstance(name, str)
        and bool(_NAME.match(name))
        and isinstance(sha, str)
        and bool(_SHA256.match(sha))
        and ("src" in entry) != ("url" in entry)
        and (url is None or (isinstance(url, str) and bool(_URL.match(url))))
    )


def _valid(entry: Any) -> bool:
    if not isinstance(entry, Mapping):
        return False
    files = entry.get("files", [])
    names = (
        [f.get("name") for f in files if isinstance(f, Mapping)] if isinstance(files, list) else []
    )
    return (
        _valid_file(entry)
        and "version" in entry
        and not isinstance(entry["version"], bool)
        and bool(_VERSION.match(str(entry["version"])))
        and ("config" not in entry or isinstance(entry["config"], Mapping))
        and isinstance(files, list)
        and all(_valid_file(f) for f in files)
        and "model.onnx" not in names
        and len(set(names)) == len(names)
    )


def _source(entry: Mapping[str, Any], cache_dir: str, cached_name: str) -> tuple[str, str]:
    """(src, url) of a model or file entry; a url entry's src is its place in the cache."""
    if "src" in entry:
        return str(entry["src"]), ""
    return posixpath.join(cache_dir, cached_name), str(entry["url"])


def onnx_model_manifest(
    models: Any, cache_dir: str, name: str = "onnx_service_models"
) -> list[dict[str, Any]]:
    """``onnx_service_models`` as the onnx_model module takes it.

    Each entry is checked (the error names ``name``, the variable); ``src`` becomes the file on
    the controller to copy (for a ``url`` entry, its place in ``cache_dir``: ``<sha256>.onnx``,
    ``<sha256>-<name>`` for an entry of ``files``, the version's other files);
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
                "and optionally config (a mapping, written as the model's config.yaml) and files "
                "(the version's other files, each with name, sha256 and src or url; not "
                "model.onnx, each name once)."
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
        src, url = _source(entry, cache_dir, f"{sha}.onnx")
        config = entry.get("config")
        text = None if config is None else to_nice_yaml(config, indent=2, sort_keys=True)
        files = []
        for extra in entry.get("files", []):
            extra_sha = str(extra["sha256"]).lower()
            extra_src, extra_url = _source(extra, cache_dir, f"{extra_sha}-{extra['name']}")
            files.append(
                {
                    "name": str(extra["name"]),
                    "sha256": extra_sha,
                    "src": extra_src,
                    "url": extra_url,
                }
            )
        manifest.append(
            {
                "name": str(entry["name"]),
                "version": int(entry["version"]),
                "sha256": sha,
                "src": src,
                "url": url,
                "config": text,
                "files": files,
            }
        )
    return manifest


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"onnx_model_manifest": onnx_model_manifest}
