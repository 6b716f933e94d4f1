"""Every shipped inventory keeps the cross-role contracts (playbooks/inventory_contracts.yml).

A site copies inventories/example: a probe key that the gateway does not know, or a Prometheus user
it does not have, turns into 401 probes and alerts on every device. The example's secrets come from
its vault.yml.example; the lab's from a scratch state directory shaped like the one `make images`
writes. Nothing is contacted: connection local, no facts.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import yaml
from ansible_run import REPO, ansible_playbook, playbook_env

PLAYBOOK = REPO / "tests/unit/playbooks/inventory_contracts.yml"
INVENTORIES = sorted(p.parent for p in REPO.glob("inventories/*/hosts.yml"))
LAB_SECRETS = ("admin_key", "user_key", "probe_key", "ca_passphrase", "prometheus_password",
               "grafana_password")  # fmt: skip


def _lab_state(root: Path) -> Path:
    state = root / "lab-state"
    state.mkdir()
    (state / "secrets.json").write_text(json.dumps({n: secrets.token_hex(8) for n in LAB_SECRETS}))
    (state / "images.json").write_text(json.dumps({"registry": "registry:5000", "images": {}}))
    (state / "demo-models.json").write_text("[]")
    return state


def _check(inventory: Path, tmp_path: Path, *extra: str):
    args = [str(PLAYBOOK), "-i", str(inventory), "-e", "ansible_connection=local", *extra]
    vault_example = inventory / "group_vars/edge/vault.yml.example"
    if vault_example.exists():
        args += ["-e", f"@{vault_example}"]
    env = playbook_env(tmp_path, EDGEAI_LAB_STATE=str(_lab_state(tmp_path)))
    return ansible_playbook(args, env=env, timeout=120)


def test_every_inventory_is_found() -> None:
    assert {p.name for p in INVENTORIES} >= {"example", "lab"}


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_the_inventory_keeps_the_cross_role_contracts(inventory: Path, tmp_path: Path) -> None:
    result = _check(inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())["edge"]["hosts"]
    recap = result.stdout.split("PLAY RECAP")[-1]
    for host in hosts:
        assert f"{host} " in recap, recap
    assert "failed=1" not in recap, recap


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"exporters_blackbox_api_key_name": "nobody"}, "every probe through the gateway"),
        ({"exporters_blackbox_prometheus_user": "nobody"}, "the /prometheus/ probe would get 401"),
        # the secrets themselves are the gateway's, never restated
        ({"exporters_blackbox_api_key": "a-second-copy"}, "restate a gateway secret"),
        ({"exporters_blackbox_prometheus_password": "other"}, "restate a gateway secret"),
        ({"health_gate_api_key": "not-a-gateway-key"}, "every rollout would stop"),
        ({"grafana_gateway_url": "https://shop-01:443"}, "must use the gateway's port 30080"),
        # the pool follows the replica count by itself; an explicit list must still match it
        (
            {"onnx_service_replicas": 3, "gateway_onnx_servers": ["onnx-service:8001"]},
            "but gateway_onnx_servers lists",
        ),
    ],
)
def test_a_broken_contract_fails_naming_the_variables(
    override: dict, message: str, tmp_path: Path
) -> None:
    """Control experiment: each check can fail (on the example inventory, the one sites copy)."""
    result = _check(REPO / "inventories/example", tmp_path, "-e", json.dumps(override))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
