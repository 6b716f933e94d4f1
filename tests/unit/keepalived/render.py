"""Render the keepalived role's configuration for a test inventory of gateway hosts.

One ansible-playbook run of playbooks/render.yml (the role's own preflight and render tasks) for
every host of the inventory; used by the unit tests and by the Docker test, which runs the rendered
trees in keepalived containers.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ansible_run import ansible_playbook, playbook_env

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "render.yml"


@dataclass
class Rendered:
    root: Path
    returncode: int
    output: str

    def staging(self, host: str) -> Path:
        return self.root / host / "staging"

    def config(self, host: str) -> str:
        return (self.staging(host) / "keepalived.conf").read_text()


def render(
    root: Path,
    hosts: dict[str, dict[str, object]],
    group_vars: dict[str, object],
    *extra_args: str,
    group: str = "gateway",
) -> Rendered:
    """Render for `hosts` (name -> host vars) in `group` with `group_vars`; never raises."""
    root.mkdir(parents=True, exist_ok=True)
    inventory = {
        "all": {
            "vars": {"ansible_python_interpreter": sys.executable},
            "children": {group: {"hosts": hosts, "vars": group_vars}},
        }
    }
    (root / "inventory.json").write_text(json.dumps(inventory))
    variables = {
        "keepalived_test_root": str(root),
        "keepalived_test_owner": str(os.getuid()),
        "keepalived_test_group": group,
    }
    (root / "vars.json").write_text(json.dumps(variables))
    result = ansible_playbook(
        ["-i", str(root / "inventory.json"), "-e", f"@{root / 'vars.json'}", *extra_args,
         str(PLAYBOOK)],
        playbook_env(root),
        timeout=300,
    )  # fmt: skip
    return Rendered(root, result.returncode, result.stdout + result.stderr)
