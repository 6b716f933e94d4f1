"""The keepalived role's entry point: argument specs, and nothing at all for a lone gateway."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from ansible_run import ansible_playbook, playbook_env

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "main.yml"


def _run(tmp_path: Path, hosts: dict, group_vars: dict) -> str:
    inventory = {
        "all": {
            "vars": {"ansible_python_interpreter": sys.executable},
            "children": {"gateway": {"hosts": hosts, "vars": group_vars}, "edge": {"hosts": hosts}},
        }
    }
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    result = ansible_playbook(
        ["-i", str(tmp_path / "inventory.json"), str(PLAYBOOK)], playbook_env(tmp_path), timeout=300
    )
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}"


def test_a_lone_gateway_gets_no_keepalived(tmp_path: Path) -> None:
    # one host in the group: no VIP, and the role touches nothing (not even the image or Docker)
    out = _run(tmp_path, {"gw1": {}}, {})
    assert out.startswith("rc=0"), out
    assert re.search(r"gw1 +: ok=1 +changed=0 ", out), out
    # ok=1 is the argument check; every other task was skipped
    assert "keepalived_auth_pass" not in out


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"keepalived_preempt": "maybe"}, "keepalived_preempt"),
        ({"keepalived_restart_policy": "never"}, "keepalived_restart_policy"),
        ({"keepalived_virtual_router_id": "fifty"}, "keepalived_virtual_router_id"),
    ],
)
def test_argument_specs_name_the_bad_variable(
    tmp_path: Path, variables: dict, message: str
) -> None:
    out = _run(tmp_path, {"gw1": {}, "gw2": {}}, variables)
    assert out.startswith("rc=2"), out
    assert "Validating arguments against arg spec" in out
    assert message in out
