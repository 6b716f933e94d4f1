"""Fixtures: the prometheus and alertmanager roles render their configs for a few inventories.

Each scenario is one ansible-playbook run of playbooks/render.yml into a scratch directory; the
tests then run the real promtool and amtool (Debian's packages, `make packages`) on the result.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ansible_run import ansible_playbook, playbook_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PLAYBOOK = HERE / "playbooks" / "render.yml"
LAB_VARS = REPO / "inventories/lab/group_vars/all/monitoring-core.yml"

# Variables of each scenario (on top of the role defaults).
SCENARIOS: dict[str, dict[str, object]] = {
    "defaults": {},
    # the lab inventory's values; lab_images is what `make images` would write
    "lab": {
        "lab_images": {
            "registry": "registry.lab:5000",
            "images": {
                "prometheus": "edgeai-lab/prometheus:test",
                "alertmanager": "edgeai-lab/alertmanager:test",
            },
        },
        **yaml.safe_load(LAB_VARS.read_text()),
    },
    # a site: external labels, no host port, webhooks with credentials, extra receiver and route
    "site": {
        "prometheus_external_url": "https://shop-01.example.internal:30080/prometheus/",
        "prometheus_external_labels": {"site": "shop-01"},
        "prometheus_host_port": 0,
        "prometheus_alert_gateway_p95_route_seconds": {},
        "alertmanager_external_url": "https://shop-01.example.internal/alertmanager/",
        "alertmanager_webhooks": [
            {"url": "https://hooks.example.internal/edge?token=url-secret-1"},
            {"url": "https://ops.example.internal/alerts", "bearer_token": "bearer-secret-2"},
            {
                "url": "https://pager.example.internal/hook",
                "basic_auth": {"username": "edge", "password": "basic-secret-3"},
                "send_resolved": False,
                "max_alerts": 20,
            },
        ],
        "alertmanager_receivers": [
            {"name": "pager", "webhook_configs": [{"url": "https://pager.example.internal/p"}]}
        ],
        "alertmanager_routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True}
        ],
    },
    # one of a site's monitoring pair (inventories/example-cluster): replica label, the other hosts'
    # relays, both Alertmanagers
    "cluster": {
        "prometheus_replica": "shop-01",
        "prometheus_host_label": "shop-01",
        "prometheus_peer_sd_urls": [
            "http://10.20.0.12:9464/targets.json",
            "http://10.20.0.13:9464/targets.json",
        ],
        "prometheus_alertmanagers": ["alertmanager:9093", "10.20.0.12:9093"],
        "alertmanager_host_port": 9093,
        "alertmanager_cluster_peers": ["10.20.0.12:9094"],
        "alertmanager_cluster_advertise_address": "10.20.0.11",
    },
}
SECRETS = ["url-secret-1", "bearer-secret-2", "basic-secret-3"]


@dataclass
class Rendered:
    """One scenario's rendered trees."""

    name: str
    root: Path
    output: str

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus" / "staging"

    @property
    def alertmanager(self) -> Path:
        return self.root / "alertmanager" / "staging"

    def rules(self) -> dict:
        return yaml.safe_load((self.prometheus / "rules/edgeai.rules.yml").read_text())


def render(name: str, root: Path, extra: dict[str, object]) -> Rendered:
    root.mkdir(parents=True)
    variables = {
        **extra,
        "monitoring_test_root": str(root),
        "monitoring_test_gid": os.getgid(),
        "ansible_python_interpreter": sys.executable,
    }
    vars_file = root / "vars.json"
    vars_file.write_text(json.dumps(variables))
    result = ansible_playbook(
        ["-i", "localhost,", "-e", f"@{vars_file}", str(PLAYBOOK)],
        playbook_env(root),
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"rendering {name} failed:\n{result.stdout}\n{result.stderr}")
    return Rendered(name, root, result.stdout)


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="edgeai-monitoring-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def rendered(scratch: Path) -> dict[str, Rendered]:
    return {name: render(name, scratch / name, extra) for name, extra in SCENARIOS.items()}
