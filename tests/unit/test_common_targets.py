"""_common's targets entry point: each role's file_sd fragment in the one prometheus_targets_dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests/unit/playbooks/common_targets.yml"

# What the roles wrote before the fragments moved into _common (byte for byte).
EXPECTED = {
    "prometheus.yml": (
        "# Managed by edgeai.appliance.prometheus: Prometheus scrapes itself under its route"
        " prefix.\n"
        "- labels:\n"
        "    __metrics_path__: /prometheus/metrics\n"
        "    job: prometheus\n"
        "  targets:\n"
        "  - prometheus:9090\n"
    ),
    "alertmanager.yml": (
        "# Managed by edgeai.appliance.alertmanager.\n"
        "- labels:\n"
        "    job: alertmanager\n"
        "  targets:\n"
        "  - alertmanager:9093\n"
    ),
    "grafana.yml": (
        "# Managed by Ansible (edgeai.appliance.grafana); Prometheus reads it through file_sd.\n"
        "- labels:\n"
        "    __metrics_path__: /metrics\n"
        "    job: grafana\n"
        "  targets:\n"
        "  - grafana:3000\n"
    ),
}


def _play(*extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_NOCOLOR": "1",
    }
    args = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,"]
    args += ["-c", "local", "-e", "ansible_python_interpreter=" + sys.executable]
    args += [*extra, str(PLAYBOOK)]
    return subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=180
    )


def test_each_role_writes_its_fragment_into_prometheus_targets_dir(tmp_path: Path) -> None:
    targets = tmp_path / "targets"
    result = _play("-e", f"prometheus_targets_dir={targets}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name: p.read_text() for p in targets.iterdir()} == EXPECTED
    assert {oct(p.stat().st_mode & 0o777) for p in targets.iterdir()} == {"0o644"}
    rerun = _play("-e", f"prometheus_targets_dir={targets}")
    assert rerun.returncode == 0, rerun.stdout
    assert "changed=0" in rerun.stdout.splitlines()[-2], rerun.stdout


def test_a_retired_per_role_targets_dir_is_refused(tmp_path: Path) -> None:
    result = _play(
        "-e", f"prometheus_targets_dir={tmp_path}",
        "-e", f"grafana_prometheus_targets_dir={tmp_path}/old",
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "grafana_prometheus_targets_dir no longer exist" in result.stdout, result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_fragment_marked_absent_is_removed(tmp_path: Path) -> None:
    targets = tmp_path / "targets"
    assert _play("-e", f"prometheus_targets_dir={targets}").returncode == 0
    # extra vars win over the roles' own: each include now asks only for grafana.yml's removal
    fragments = '{"_common_targets_fragments": [{"name": "grafana", "present": false}]}'
    result = _play("-e", f"prometheus_targets_dir={targets}", "-e", fragments)
    assert result.returncode == 0, result.stdout
    assert sorted(p.name for p in targets.iterdir()) == ["alertmanager.yml", "prometheus.yml"]
