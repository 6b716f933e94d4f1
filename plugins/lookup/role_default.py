# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup: a variable's default from another role of this collection."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: role_default
short_description: The default of a variable of another role of this collection
version_added: "1.0.0"
description:
  - Reads O(_terms[1]) from C(roles/<role>/defaults/main.yml) of this collection, where O(_terms[0])
    names the role.
  - For a setting one role needs from another, use the other role's variable when it is defined
    (its role is in the play, or the inventory sets it) and this lookup otherwise, so that the
    value is written down once, in the role it belongs to (see the example).
  - Only plain defaults can be read this way; a default that is itself a template fails.
  - A role's internal value (a name starting with C(__<role>_), not a setting) that other roles and
    tools read too is read from C(roles/<role>/vars/main.yml) the same way (for example the
    gateway's route names, C(__gateway_routes)).
author:
  - edgeai.appliance contributors (@edgeai)
options:
  _terms:
    description: The role's name, then the variable's name.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
# roles/gateway/defaults/main.yml: the ONNX service's own limit, wherever it is set
gateway_body_size_onnx: >-
  {{ onnx_service_max_request_bytes
     | default(lookup('edgeai.appliance.role_default',
                      'onnx_service', 'onnx_service_max_request_bytes')) }}
"""

RETURN = r"""
_raw:
  description: The default value, as the defaults file gives it (one element).
  type: list
"""

import re  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402
from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

ROLES = Path(__file__).resolve().parents[2] / "roles"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def role_default(role: str, name: str, roles: Path = ROLES) -> Any:
    """The default of ``name`` in ``roles/<role>/defaults/main.yml`` (``vars/main.yml`` for an
    internal ``__<role>_`` value)."""
    internal = name.startswith(f"__{role}_")
    if not _NAME.match(role) or not _NAME.match(name[2:] if internal else name):
        raise AnsibleLookupError(f"role_default: {role!r} and {name!r} must be plain names")
    path = roles / role / ("vars" if internal else "defaults") / "main.yml"
    if not path.is_file():
        raise AnsibleLookupError(f"role_default: the collection has no role {role!r} ({path})")
    defaults = yaml.safe_load(path.read_text()) or {}
    if name not in defaults:
        raise AnsibleLookupError(f"role_default: role {role!r} has no variable {name!r}")
    value = defaults[name]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise AnsibleLookupError(
            f"role_default: the default of {name!r} in role {role!r} is a template; "
            "set the variable instead"
        )
    return value


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list:
        if len(terms) != 2:
            raise AnsibleLookupError("role_default: give the role's name and the variable's name")
        return [role_default(str(terms[0]), str(terms[1]))]
