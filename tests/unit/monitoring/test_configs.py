"""prometheus.yml and alertmanager.yml, rendered by the roles, accepted by promtool and amtool."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from packaged import tool

from .conftest import SCENARIOS, SECRETS, Rendered


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_promtool_accepts_prometheus_yml(rendered: dict[str, Rendered], name: str) -> None:
    config = rendered[name].prometheus / "prometheus.yml"
    result = subprocess.run(
        [tool("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the relative rule glob resolved next to the config and found the role's rules
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_amtool_accepts_alertmanager_yml(rendered: dict[str, Rendered], name: str) -> None:
    result = subprocess.run(
        [tool("amtool"), "check-config", str(rendered[name].alertmanager / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_one_generic_file_sd_job_and_the_alertmanager(rendered: dict[str, Rendered]) -> None:
    config = yaml.safe_load((rendered["defaults"].prometheus / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    [job] = config["scrape_configs"]
    assert job["file_sd_configs"] == [{"files": ["targets/*.yml"]}]
    assert config["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["alertmanager:9093"]}]}
    ]
    site = yaml.safe_load((rendered["site"].prometheus / "prometheus.yml").read_text())
    assert site["global"]["external_labels"] == {"site": "shop-01"}


def test_a_monitoring_pair_labels_its_replica_and_scrapes_the_peers(
    rendered: dict[str, Rendered],
) -> None:
    config = yaml.safe_load((rendered["cluster"].prometheus / "prometheus.yml").read_text())
    assert config["global"]["external_labels"] == {"replica": "shop-01"}
    # the pair's alerts reach the Alertmanager cluster without the replica label: deduplicated
    assert config["alerting"]["alert_relabel_configs"] == [
        {"action": "labeldrop", "regex": "replica"}
    ]
    assert config["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["alertmanager:9093", "10.20.0.12:9093"]}]}
    ]
    local, peers = config["scrape_configs"]
    assert local["relabel_configs"] == [{"target_label": "host", "replacement": "shop-01"}]
    assert peers["job_name"] == "edgeai-peers"
    assert [c["url"] for c in peers["http_sd_configs"]] == [
        "http://10.20.0.12:9464/targets.json",
        "http://10.20.0.13:9464/targets.json",
    ]
    # a single host's configuration has none of it
    single = yaml.safe_load((rendered["defaults"].prometheus / "prometheus.yml").read_text())
    assert "alert_relabel_configs" not in single["alerting"]
    assert "relabel_configs" not in single["scrape_configs"][0]


def test_default_routing_groups_and_inhibits(rendered: dict[str, Rendered]) -> None:
    config = yaml.safe_load((rendered["defaults"].alertmanager / "alertmanager.yml").read_text())
    assert config["route"]["receiver"] == "default"
    assert config["route"]["group_by"] == ["alertname", "job"]
    assert config["receivers"] == [{"name": "default"}]
    critical, target_down = config["inhibit_rules"]
    assert critical["source_matchers"] == ['severity="critical"']
    assert "instance" in critical["equal"]
    assert target_down["source_matchers"] == ['alertname="TargetDown"']
    assert target_down["equal"] == ["job"]


def test_amtool_routes_critical_alerts_to_the_extra_receiver(rendered: dict[str, Rendered]) -> None:
    config = str(rendered["site"].alertmanager / "alertmanager.yml")

    def route(*labels: str) -> str:
        result = subprocess.run(
            [tool("amtool"), "config", "routes", "test", "--config.file", config, *labels],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return result.stdout.strip()

    # a matching child route takes the alert; the default receiver gets what no child matches
    assert route("alertname=TargetDown", "severity=critical") == "pager"
    assert route("alertname=HostDiskSpaceLow", "severity=warning") == "default"


def test_webhook_credentials_live_in_files(rendered: dict[str, Rendered]) -> None:
    staging = rendered["site"].alertmanager
    config = yaml.safe_load((staging / "alertmanager.yml").read_text())
    hooks = config["receivers"][0]["webhook_configs"]
    assert [h["url"] for h in hooks] == [
        "https://hooks.example.internal/edge?token=url-secret-1",
        "https://ops.example.internal/alerts",
        "https://pager.example.internal/hook",
    ]
    assert hooks[1]["http_config"] == {
        "authorization": {"credentials_file": "/etc/alertmanager/secrets/webhook-1"}
    }
    assert hooks[2]["http_config"]["basic_auth"] == {
        "username": "edge",
        "password_file": "/etc/alertmanager/secrets/webhook-2",
    }
    assert hooks[2]["send_resolved"] is False
    assert hooks[2]["max_alerts"] == 20
    assert (staging / "secrets/webhook-1").read_text() == "bearer-secret-2"
    assert (staging / "secrets/webhook-2").read_text() == "basic-secret-3"
    for path in [staging / "alertmanager.yml", *(staging / "secrets").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o440, path
    # the secrets never show in Ansible's output
    for secret in SECRETS:
        assert secret not in rendered["site"].output
