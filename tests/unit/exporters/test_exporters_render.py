"""The exporters role's rendered configuration, checked by the real binaries on this machine.

The blackbox configuration goes through `prometheus-blackbox-exporter --config.check` (the role's
own `validate:` step, pointed at the host's binary); the file_sd fragments are read back as
Prometheus would; cAdvisor, which the lab cannot run, is rendered here with the production defaults.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_run import ansible_playbook, playbook_env

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "playbooks" / "render.yml"
BLACKBOX = shutil.which("prometheus-blackbox-exporter")
KEY = "k" * 40

pytestmark = pytest.mark.skipif(BLACKBOX is None, reason="needs prometheus-blackbox-exporter")


def render(root: Path, **variables: object) -> subprocess.CompletedProcess[str]:
    extra = {
        "ansible_python_interpreter": sys.executable,
        "exporters_config_dir": str(root / "cfg"),
        "prometheus_targets_dir": str(root / "targets"),
        "exporters_node_listen_address": "172.30.0.1",
        "gateway_api_keys": [{"name": "probe", "key": KEY, "role": "user"}],
        "gateway_prometheus_users": [{"name": "prom", "password": "prom-password"}],
        "exporters_blackbox_api_key_name": "probe",
        "exporters_blackbox_prometheus_user": "prom",
        "exporters_blackbox_ca_file": "",
        **variables,
    }
    vars_file = root / "vars.json"
    vars_file.write_text(json.dumps(extra))
    return ansible_playbook(
        ["-i", "localhost,", "-e", f"@{vars_file}", str(PLAYBOOK)],
        playbook_env(root),
        timeout=300,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exporters")
    result = render(root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def fragment(root: Path, job: str) -> list[dict]:
    return yaml.safe_load((root / "targets" / f"{job}.yml").read_text())


def test_every_job_has_its_fragment_including_cadvisor(rendered: Path) -> None:
    files = sorted(p.name for p in (rendered / "targets").iterdir())
    assert files == ["blackbox.yml", "cadvisor.yml", "gateway.yml", "gateway_log.yml", "node.yml"]
    for job in ("gateway", "gateway_log", "node", "blackbox", "cadvisor"):
        groups = fragment(rendered, job)
        assert groups, job
        assert all(group["labels"]["job"] == job for group in groups), job
        assert (rendered / "targets" / f"{job}.yml").stat().st_mode & 0o777 == 0o644
    assert fragment(rendered, "cadvisor") == [
        {"targets": ["cadvisor:8080"], "labels": {"job": "cadvisor"}}
    ]
    assert fragment(rendered, "gateway")[0]["targets"] == ["nginx-exporter:9113"]
    assert fragment(rendered, "gateway_log")[0]["targets"] == ["mtail:3903"]
    node = fragment(rendered, "node")[0]
    assert node["targets"] == ["172.30.0.1:9100"]
    assert node["labels"]["instance"] == "localhost"


def test_blackbox_fragment_probes_each_route_through_the_exporter(rendered: Path) -> None:
    groups = fragment(rendered, "blackbox")
    routes = {g["labels"]["route"]: g["labels"] for g in groups}
    assert set(routes) == {
        "health", "onnx_v2", "onnx_v1", "ollama", "openai", "grafana", "prometheus",
    }  # fmt: skip
    for group in groups:
        labels = group["labels"]
        assert group["targets"] == ["blackbox-exporter:9115"]
        assert labels["__metrics_path__"] == "/probe"
        assert labels["instance"] == labels["__param_target"]
        assert labels["__param_target"].startswith("https://gateway:30080/")
    assert routes["prometheus"]["__param_module"] == "gateway_prometheus"
    assert routes["health"]["__param_module"] == "gateway_anonymous"
    assert routes["onnx_v2"]["__param_target"] == "https://gateway:30080/v2/health/ready"
    assert routes["onnx_v2"]["__param_module"] == "gateway_api_key"


def test_blackbox_config_passes_the_exporters_own_check(rendered: Path) -> None:
    config = rendered / "cfg" / "blackbox" / "config.yml"
    check = subprocess.run(
        [str(BLACKBOX), f"--config.file={config}", "--config.check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    modules = yaml.safe_load(config.read_text())["modules"]
    assert set(modules) == {"gateway_anonymous", "gateway_api_key", "gateway_prometheus"}
    key = modules["gateway_api_key"]["http"]
    assert key["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/blackbox_exporter/secrets/api_key",
    }
    assert modules["gateway_prometheus"]["http"]["basic_auth"]["password_file"].endswith(
        "/secrets/prometheus_password"
    )
    assert key["fail_if_not_ssl"] is True
    # no secret in the configuration itself
    assert KEY not in config.read_text()
    assert "prom-password" not in config.read_text()


def test_a_broken_blackbox_config_never_lands(tmp_path: Path) -> None:
    result = render(tmp_path, exporters_blackbox_timeout="ten seconds")
    assert result.returncode != 0
    assert "failed to validate" in result.stdout
    assert not (tmp_path / "cfg" / "blackbox" / "config.yml").exists()


def test_disabled_exporters_lose_their_fragment(tmp_path: Path) -> None:
    assert render(tmp_path).returncode == 0
    result = render(tmp_path, exporters_cadvisor_enabled=False, exporters_mtail_enabled=False)
    assert result.returncode == 0, result.stdout
    files = sorted(p.name for p in (tmp_path / "targets").iterdir())
    assert files == ["blackbox.yml", "gateway.yml", "node.yml"]


def test_probes_needing_a_key_fail_preflight_without_one(tmp_path: Path) -> None:
    result = render(tmp_path, exporters_blackbox_api_key_name="")
    assert result.returncode != 0
    assert "exporters_blackbox_api_key_name ('')" in result.stdout


def test_the_probe_secrets_are_the_gateway_entries(tmp_path: Path) -> None:
    # one place: the files the probes read hold what the named entries of the gateway hold
    keys = [
        {"name": "ops", "key": "o" * 40, "role": "admin"},
        {"name": "probe", "key": KEY, "role": "user"},
    ]
    users = [
        {"name": "ops", "password": "ops-password"},
        {"name": "prom", "password": "prom-password"},
    ]
    result = render(tmp_path, gateway_api_keys=keys, gateway_prometheus_users=users)
    assert result.returncode == 0, result.stdout
    secrets = tmp_path / "cfg" / "blackbox" / "secrets"
    assert (secrets / "api_key").read_text() == KEY
    assert (secrets / "prometheus_password").read_text() == "prom-password"


def test_the_probes_follow_the_gateways_own_settings(tmp_path: Path) -> None:
    # the exporters restate no gateway setting: name, port and scheme come from gateway_*
    result = render(
        tmp_path, gateway_container_name="edge-gw", gateway_port=8443, gateway_tls_enabled=False
    )
    assert result.returncode == 0, result.stdout
    targets = {g["labels"]["__param_target"] for g in fragment(tmp_path, "blackbox")}
    assert targets
    assert all(t.startswith("http://edge-gw:8443/") for t in targets), targets


def test_mtail_without_the_gateways_access_log_fails_preflight(tmp_path: Path) -> None:
    result = render(tmp_path, gateway_access_log_dir="")
    assert result.returncode != 0
    assert "exporters_mtail_log_dir is empty (it follows gateway_access_log_dir)" in result.stdout
