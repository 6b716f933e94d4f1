#!/usr/bin/python
# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: make a set of directories and files match, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: files
short_description: Make a set of directories and small files match, in one round trip
version_added: "1.0.0"
description:
  - Creates directories, writes files and removes paths on the managed host in a single module
    run. A role that lays down many small files (configuration fragments, dashboards,
    Prometheus targets) pays one connection round trip instead of two or three per file, which
    is what a converge over a slow link to an edge device spends most of its time on.
  - File contents are given as strings, usually with the P(ansible.builtin.template#lookup) or
    P(ansible.builtin.file#lookup) lookups, or copied from a file already on the managed host
    with O(files[].src) (a staging directory, for example).
  - A file is replaced atomically (written next to its destination, then renamed) and only when
    its content differs. Modes and owners are set only when they differ.
  - Supports check mode and diff mode (content diffs for text files, and mode and owner changes).
    A file marked O(files[].secret) never shows its content in a diff, only that it changed.
  - For files that must be checked by a command before they land, use
    M(ansible.builtin.template) or M(ansible.builtin.copy) with C(validate), or render into a
    staging directory with this module, check it, then install it with O(files[].src).
author:
  - edgeai.appliance contributors (@edgeai)
options:
  directories:
    description:
      - Directories that must exist, created in the order given (missing parents too, with the
        same mode, owner and group).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description: Mode, as an octal string such as V("0750").
        type: raw
        required: true
      owner:
        description: Owner, a user name or a numeric UID. Left as it is when unset.
        type: str
      group:
        description: Group, a group name or a numeric GID. Left as it is when unset.
        type: str
  files:
    description:
      - Regular files that must have the given content, written after O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description:
          - Absolute path of the file. Its directory must exist (or be listed in O(directories)).
        type: path
        required: true
      content:
        description: The file's content (text, written as UTF-8).
        type: str
      src:
        description: A file on the managed host whose content is copied to O(files[].path).
        type: path
      mode:
        description:
          - Mode, as an octal string such as V("0640").
          - V(preserve) takes the mode of O(files[].src).
        type: raw
        required: true
      owner:
        description: Owner, a user name or a numeric UID. Left as it is when unset.
        type: str
      group:
        description: Group, a group name or a numeric GID. Left as it is when unset.
        type: str
      secret:
        description:
          - The file holds a secret (a private key, a password hash, credentials). Its diff says
            that the content changed and how many bytes it has, never the content itself, so
            C(--diff) runs and their logs (CI, AWX) do not carry it.
          - A secret given as O(files[].content) is also a module argument, and Ansible logs the
            arguments of a task on the managed host unless the task has C(no_log=true); copy
            secrets from a file on the host with O(files[].src) or set C(no_log) on the task.
        type: bool
        default: false
  absent:
    description:
      - Paths that must not exist, removed last (a directory with everything in it).
    type: list
    elements: path
    default: []
notes:
  - Exactly one of O(files[].content) and O(files[].src) is required for each file.
  - Mark files that hold secrets with O(files[].secret) (their diffs show no content); give
    secret contents in a task with C(no_log=true).
attributes:
  check_mode:
    support: full
    description: Reports the paths that would change (RV(changed_paths)); changes nothing.
  diff_mode:
    support: full
    description: Shows content diffs of text files, and mode and owner changes.
"""

EXAMPLES = r"""
- name: Lay down the configuration in one round trip
  edgeai.appliance.files:
    directories:
      - {path: /etc/edgeai/app, mode: "0750", group: "472"}
    files:
      - path: /etc/edgeai/app/app.yml
        content: "{{ lookup('ansible.builtin.template', 'app.yml.j2') }}"
        mode: "0640"
        group: "472"
      - path: /etc/edgeai/app/targets.yml
        content: "{{ [{'targets': ['app:9100']}] | to_nice_yaml(indent=2) }}"
        mode: "0644"
    absent:
      - /etc/edgeai/app/old.yml

- name: Install a private key from staging (its diff says it changed, never what it holds)
  edgeai.appliance.files:
    files:
      - path: /etc/app/live/tls/key.pem
        src: /etc/app/staging/tls/key.pem
        mode: "0640"
        secret: true

- name: Install a checked staging directory (file_specs builds one entry per name)
  edgeai.appliance.files:
    files: >-
      {{ ['app.yml', 'rules/app.rules.yml']
         | edgeai.appliance.file_specs('/etc/app/live', src_dir='/etc/app/staging',
                                       mode='preserve') }}
"""

RETURN = r"""
changed_paths:
  description:
    - The paths that were (or in check mode would be) created, written, changed or removed,
      in order.
  returned: always
  type: list
  elements: str
  sample: [/etc/edgeai/app/app.yml]
"""

import os  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

_OWNED = {
    "mode": {"type": "raw", "required": True},
    "owner": {"type": "str"},
    "group": {"type": "str"},
}
_DIFF_TEXT_LIMIT = 256 * 1024


def _file_args(path: str, mode: Any, owner: str | None, group: str | None) -> dict[str, Any]:
    """The argument dict AnsibleModule.set_fs_attributes_if_different expects."""
    return {
        "path": path,
        "mode": mode,
        "owner": owner,
        "group": group,
        "secontext": None,
        "attributes": None,
    }


def _text_for_diff(data: bytes | None, secret: bool = False, side: str = "") -> str:
    if data is None:
        return ""
    if secret:
        # the two sides must differ, or a diff display shows nothing changed
        return f"({len(data)} bytes of secret content, not shown: {side})\n"
    if len(data) > _DIFF_TEXT_LIMIT or b"\x00" in data:
        return f"({len(data)} bytes, not shown)\n"
    return data.decode("utf-8", errors="replace")


class _Run:
    """One module run: the changes made so far, and their diffs."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.check = module.check_mode
        self.changed_paths: list[str] = []
        self.diffs: list[dict[str, Any]] = []

    def _note(self, path: str) -> None:
        if path not in self.changed_paths:
            self.changed_paths.append(path)

    def _attributes(self, path: str, mode: Any, owner: str | None, group: str | None) -> None:
        diff: dict[str, Any] = {"before": {"path": path}, "after": {"path": path}}
        if self.module.set_fs_attributes_if_different(
            _file_args(path, mode, owner, group), False, diff
        ):
            self._note(path)
            if self.module._diff and len(diff["before"]) > 1:
                self.diffs.append(diff)

    def directory(self, spec: dict[str, Any]) -> None:
        path = Path(spec["path"])
        if path.exists() and not path.is_dir():
            self.module.fail_json(msg=f"{path} exists and is not a directory", path=str(path))
        missing = [p for p in [path, *path.parents] if not p.exists()]
        for new in reversed(missing):
            self._note(str(new))
            if self.module._diff:
                self.diffs.append(
                    {
                        "before": {"path": str(new), "state": "absent"},
                        "after": {"path": str(new), "state": "directory"},
                    }
                )
            if self.check:
                continue
            new.mkdir(mode=0o700)
            self._attributes(str(new), spec["mode"], spec["owner"], spec["group"])
        if not missing:
            self._attributes(str(path), spec["mode"], spec["owner"], spec["group"])

    def _new_content(self, spec: dict[str, Any]) -> tuple[bytes, Any]:
        """The file's new bytes and its mode (V(preserve) resolved from src)."""
        mode = spec["mode"]
        if spec["src"] is None:
            if mode == "preserve":
                self.module.fail_json(msg=f"files: mode=preserve needs src ({spec['path']})")
            return spec["content"].encode("utf-8"), mode
        src = Path(spec["src"])
        if not src.is_file():
            self.module.fail_json(
                msg=f"files: src {src} of {spec['path']} is not a file on the managed host"
            )
        if mode == "preserve":
            mode = f"0{stat.S_IMODE(src.stat().st_mode):o}"
        return src.read_bytes(), mode

    def file(self, spec: dict[str, Any]) -> None:
        path = Path(spec["path"])
        new, mode = self._new_content(spec)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            self.module.fail_json(msg=f"{path} exists and is not a regular file", path=str(path))
        old = path.read_bytes() if path.is_file() else None
        if old != new:
            self._note(str(path))
            if self.module._diff:
                self.diffs.append(
                    {
                        "before_header": str(path) if old is not None else f"{path} (absent)",
                        "after_header": str(path),
                        "before": _text_for_diff(old, spec["secret"], "the version on the host"),
                        "after": _text_for_diff(new, spec["secret"], "the new version"),
                    }
                )
            if self.check:
                return
            if not path.parent.is_dir():
                self.module.fail_json(
                    msg=f"files: the directory of {path} does not exist", path=str(path)
                )
            self._replace(path, new, keep_attributes=old is not None)
        if path.exists():
            self._attributes(str(path), mode, spec["owner"], spec["group"])

    def _replace(self, path: Path, data: bytes, keep_attributes: bool) -> None:
        """Write next to the destination, then rename over it (readers never see half a file)."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).chmod(0o600)
            self.module.atomic_move(tmp, str(path), keep_dest_attrs=keep_attributes)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def absent(self, path_text: str) -> None:
        path = Path(path_text)
        if not path.exists() and not path.is_symlink():
            return
        self._note(path_text)
        if self.module._diff:
            self.diffs.append(
                {
                    "before": {"path": path_text, "state": "present"},
                    "after": {"path": path_text, "state": "absent"},
                }
            )
        if self.check:
            return
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {"path": {"type": "path", "required": True}, **_OWNED},
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str"},
                    "src": {"type": "path"},
                    "secret": {"type": "bool", "default": False},
                    **_OWNED,
                },
                "mutually_exclusive": [["content", "src"]],
                "required_one_of": [["content", "src"]],
            },
            "absent": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    for kind in ("directories", "files"):
        for spec in module.params[kind]:
            if not Path(spec["path"]).is_absolute():
                module.fail_json(msg=f"files: {kind} paths must be absolute, got {spec['path']!r}")
    for path in module.params["absent"]:
        if not Path(path).is_absolute() or Path(path) == Path("/"):
            module.fail_json(msg=f"files: absent paths must be absolute and not /, got {path!r}")
    for spec in module.params["files"]:
        if spec["secret"] and spec["content"]:
            # never echoed back in the result, whatever else goes wrong
            module.no_log_values.add(spec["content"])
    run = _Run(module)
    for spec in module.params["directories"]:
        run.directory(spec)
    for spec in module.params["files"]:
        run.file(spec)
    for path in module.params["absent"]:
        run.absent(path)
    result: dict[str, Any] = {
        "changed": bool(run.changed_paths),
        "changed_paths": run.changed_paths,
    }
    if module._diff:
        result["diff"] = run.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
