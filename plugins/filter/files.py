# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the edgeai.appliance.files module: its directory and file entries from lists."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Any

from ansible.errors import AnsibleFilterError

_ATTRIBUTES = ("mode", "owner", "group", "secret")


def file_specs(
    names: Iterable[str],
    directory: str = "",
    contents: Iterable[str] | None = None,
    src_dir: str | None = None,
    suffix: str = "",
    **attributes: Any,
) -> list[dict[str, Any]]:
    """One entry per name: ``path`` is directory/name+suffix, with the same mode, owner and group
    (and ``secret``: true keeps the files' contents out of diffs).

    ``contents`` (a list as long as ``names``, for example from a ``query`` of the template lookup)
    gives each file its content; ``src_dir`` makes each file a copy of src_dir/name on the host.
    Without either the entries describe directories.
    """
    unknown = sorted(set(attributes) - set(_ATTRIBUTES))
    if unknown:
        raise AnsibleFilterError(
            f"file_specs: unknown attribute(s) {', '.join(unknown)}; use {', '.join(_ATTRIBUTES)}"
        )
    if contents is not None and src_dir is not None:
        raise AnsibleFilterError("file_specs: give contents or src_dir, not both")
    names = [str(name) for name in names]
    common: dict[str, Any] = {
        key: value if key == "secret" else str(value)
        for key, value in attributes.items()
        if value is not None
    }
    if not isinstance(common.get("secret", False), bool):
        raise AnsibleFilterError("file_specs: secret must be true or false")
    specs = [{"path": posixpath.join(directory, name) + suffix, **common} for name in names]
    if contents is not None:
        contents = list(contents)
        if len(contents) != len(names):
            raise AnsibleFilterError(f"file_specs: {len(names)} names but {len(contents)} contents")
        for spec, content in zip(specs, contents, strict=True):
            spec["content"] = content
    if src_dir is not None:
        for spec, name in zip(specs, names, strict=True):
            spec["src"] = posixpath.join(src_dir, name)
    return specs


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"file_specs": file_specs}
