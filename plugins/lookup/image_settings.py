# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup: every image setting of this collection's roles, with its on/off switch."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: image_settings
short_description: Every C(*_image) setting of this collection's roles, with its switch
version_added: "1.0.0"
description:
  - Lists the variables ending in C(_image) in C(roles/*/defaults/main.yml) of this collection, one
    element per variable, in role order - what an offline bundle must hold for a site that runs
    these roles.
  - Each element names the variable (C(image)), its plain default (C(default), V(null) when the
    default is a template, such as an image that reuses another role's), and the variable that
    switches the container on or off (C(enabled), the longest C(<prefix>_enabled) of the name in
    that role's defaults, such as C(exporters_cadvisor_enabled) for
    C(exporters_cadvisor_docker_api_image); empty when there is none) with that switch's default
    (C(enabled_default)).
  - A playbook reads each variable with P(ansible.builtin.vars#lookup), falling back to the default,
    so that the inventory's value wins (see the example, and C(playbooks/bundle.yml)).
author:
  - edgeai.appliance contributors (@edgeai)
options: {}
"""

EXAMPLES = r"""
- name: The images this host runs
  ansible.builtin.debug:
    msg: "{{ lookup('ansible.builtin.vars', item.image, default=item.default) }}"
  loop: "{{ query('edgeai.appliance.image_settings') }}"
  when:
    - item.default is not none
      or query('ansible.builtin.varnames', '^' ~ item.image ~ '$') | length > 0
    - not item.enabled
      or lookup('ansible.builtin.vars', item.enabled, default=item.enabled_default) | bool
"""

RETURN = r"""
_raw:
  description:
    - One mapping per image variable - C(image), C(default), C(enabled), C(enabled_default).
  type: list
  elements: dict
"""

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402
from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _switch(stem: str, defaults: dict[str, Any]) -> str:
    """The longest ``<prefix>_enabled`` of ``stem`` in the role's defaults (the part's switch)."""
    parts = stem.split("_")
    for end in range(len(parts), 1, -1):
        switch = "_".join(parts[:end]) + "_enabled"
        if switch in defaults:
            return switch
    return ""


def image_settings(roles: Path = ROLES) -> list[dict[str, Any]]:
    """The ``*_image`` variables of every role's defaults, with their ``*_enabled`` switch."""
    settings = []
    for path in sorted(roles.glob("*/defaults/main.yml")):
        defaults = yaml.safe_load(path.read_text()) or {}
        if not isinstance(defaults, dict):
            raise AnsibleLookupError(f"image_settings: {path} is not a mapping")
        for name, value in defaults.items():
            if not name.endswith("_image"):
                continue
            enabled = _switch(name[: -len("_image")], defaults)
            settings.append({
                "image": name,
                "default": None if _template(value) else value,
                "enabled": enabled,
                "enabled_default": defaults[enabled] if enabled else True,
            })  # fmt: skip
    return settings


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list:
        if terms:
            raise AnsibleLookupError("image_settings: takes no terms")
        return image_settings()
