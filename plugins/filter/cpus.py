# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for CPU sets in Docker's and the kernel's list form ("0-2,5")."""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def cpuset_cpus(cpuset: str, name: str = "cpuset_cpus") -> list[int]:
    """The CPU numbers of a list such as ``0-2,5`` (sorted, each once); ``""`` is none.

    ``name`` starts the error message: the variable the list came from, for a role's preflight.
    """
    text = str(cpuset).strip()
    if not text:
        return []
    cpus: set[int] = set()
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise AnsibleFilterError(f"{name}: {cpuset!r} is not a CPU list like 0-2 or 1,3")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise AnsibleFilterError(
                f"{name}: the range {part.strip()!r} in {cpuset!r} runs backwards"
            )
        cpus.update(range(first, last + 1))
    return sorted(cpus)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"cpuset_cpus": cpuset_cpus}
