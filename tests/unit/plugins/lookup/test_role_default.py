"""edgeai.appliance.role_default: one role's setting read from another role's defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleLookupError
from ansible_collections.edgeai.appliance.plugins.lookup.role_default import ROLES, role_default


def test_reads_the_default_from_the_role_that_owns_it() -> None:
    defaults = yaml.safe_load((ROLES / "onnx_service" / "defaults" / "main.yml").read_text())
    value = role_default("onnx_service", "onnx_service_max_request_bytes")
    assert value == defaults["onnx_service_max_request_bytes"]
    assert isinstance(value, int)


def test_reads_an_internal_value_from_the_role_vars() -> None:
    # the gateway's route names: not a setting, but read by the prometheus and exporters roles
    internal = yaml.safe_load((ROLES / "gateway" / "vars" / "main.yml").read_text())
    routes = role_default("gateway", "__gateway_routes")
    assert routes == internal["__gateway_routes"]
    assert {"name": "health", "service": "gateway"} in routes


@pytest.mark.parametrize(
    ("role", "name", "message"),
    [
        ("no_such_role", "x", "has no role 'no_such_role'"),
        ("onnx_service", "onnx_service_nothing", "has no variable 'onnx_service_nothing'"),
        ("../gateway", "x", "must be plain names"),
        ("gateway", "gateway_tmpfs_size", "is a template"),
        ("gateway", "__gateway_nothing", "has no variable '__gateway_nothing'"),
        # another role's internal value is not this role's to give
        ("gateway", "__prometheus_live_dir", "must be plain names"),
        ("gateway", "__gateway_tls_sans", "is a template"),
    ],
)
def test_mistakes_are_named(role: str, name: str, message: str) -> None:
    with pytest.raises(AnsibleLookupError, match=message):
        role_default(role, name)


def test_a_role_variable_wins_over_the_lookup(tmp_path: Path, collections_root: Path) -> None:
    """As the gateway derives its ONNX body limit: the other role's variable, else its default."""
    playbook = tmp_path / "play.yml"
    expression = (
        "{{ onnx_service_max_request_bytes | default(lookup('edgeai.appliance.role_default', "
        "'onnx_service', 'onnx_service_max_request_bytes')) }}"
    )
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.debug": {"msg": f"limit={expression}"}}],
                }
            ]
        )
    )
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_root),
        "ANSIBLE_HOME": str(tmp_path),
        "ANSIBLE_NOCOLOR": "1",
    }
    binary = Path(sys.executable).with_name("ansible-playbook")

    def run(*extra: str) -> str:
        done = subprocess.run(
            [str(binary), "-i", "localhost,", "-c", "local", str(playbook), *extra],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    default = role_default("onnx_service", "onnx_service_max_request_bytes")
    assert f"limit={default}" in run()
    assert "limit=4096" in run("-e", "onnx_service_max_request_bytes=4096")
