"""Bad input to a role fails in its preflight, before anything changes, naming the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests/unit/playbooks/role_preflight.yml"
# what the exporters role needs before it looks at anything else: the probes' entries of the
# gateway's settings, by name
PROBE_SECRETS = {
    "gateway_api_keys": [{"name": "probe", "key": "k" * 40, "role": "user"}],
    "gateway_prometheus_users": [{"name": "probe", "password": "probe-password-0123"}],
    "exporters_blackbox_api_key_name": "probe",
    "exporters_blackbox_prometheus_user": "probe",
}


def _run(role: str, extra_vars: dict) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", "localhost,",
            "-e", "ansible_python_interpreter=" + sys.executable,
            "--check",
            "--tags", f"{role}_preflight",
            "-e", json.dumps({"preflight_role": f"edgeai.appliance.{role}", **extra_vars}),
            str(PLAYBOOK),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("role", "extra_vars"),
    [
        ("docker", {"docker_engine_source": "distro", "docker_daemon_options": {"debug": False}}),
        ("ollama", {"ollama_cpuset_cpus": "0-2,5", "ollama_keep_alive": "30m"}),
        ("ollama", {"ollama_memory_limit": "12.5%", "ollama_exporter_memory_limit": "48m"}),
        (
            "onnx_service",
            {"onnx_service_memory_limit": "2g", "onnx_service_max_request_bytes": 4096},
        ),
        ("prometheus", {"prometheus_memory_limit": "5%"}),
        ("exporters", {**PROBE_SECRETS, "exporters_cadvisor_memory_limit": "300m"}),
    ],
)
def test_good_variables_pass(role: str, extra_vars: dict) -> None:
    result = _run(role, extra_vars)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("role", "extra_vars", "named"),
    [
        ("docker", {"docker_engine_source": "snap"}, "docker_engine_source"),
        ("docker", {"docker_daemon_options": "log-driver=json-file"}, "docker_daemon_options"),
        ("docker", {"docker_daemon_options": {"log-opts": "max-size=1g"}}, "docker_daemon_options"),
        ("docker", {"docker_log_max_size": "ten megabytes"}, "docker_log_max_size"),
        (
            "docker",
            {"docker_default_address_pools": [{"base": "10.9.0.0/16"}]},
            "docker_default_address_pools",
        ),
        ("docker", {"docker_networks": [{"name": "a"}, {"name": "a"}]}, "docker_networks"),
        # two services on one host-port network would reach each other's API over it
        ("docker", {"grafana_host_network": "edge_host_ollama"}, "docker_host_port_roles"),
        ("docker", {"prometheus_host_network": "edge_back"}, "docker_host_port_roles"),
        ("docker", {"docker_image_delivery": "rsync"}, "docker_image_delivery"),
        ("ollama", {"ollama_cpuset_cpus": "0-"}, "ollama_cpuset_cpus"),
        ("ollama", {"ollama_cpuset_cpus": "all"}, "ollama_cpuset_cpus"),
        ("ollama", {"ollama_cpuset_cpus": "3-1"}, "ollama_cpuset_cpus"),
        ("ollama", {"ollama_keep_alive": "forever"}, "ollama_keep_alive"),
        ("ollama", {"ollama_replicas": 0}, "ollama_replicas"),
        ("ollama", {"ollama_memory_limit": "150%"}, "ollama_memory_limit"),
        ("ollama", {"ollama_exporter_memory_limit": "64 MB"}, "ollama_exporter_memory_limit"),
        ("onnx_service", {"onnx_service_memory_limit": "lots"}, "onnx_service_memory_limit"),
        (
            "onnx_service",
            {"onnx_service_settings": {"max_request_bytes": 1048576}},
            "onnx_service_max_request_bytes",
        ),
        ("prometheus", {"prometheus_memory_limit": "1 gig"}, "prometheus_memory_limit"),
        # route names come from the gateway's one list
        (
            "prometheus",
            {"prometheus_alert_gateway_p95_route_seconds": {"ollama": 60, "olama": 60}},
            "prometheus_alert_gateway_p95_route_seconds names olama,",
        ),
        (
            "exporters",
            {
                **PROBE_SECRETS,
                "exporters_blackbox_probes": [
                    {"route": "helth", "path": "/healthz", "auth": "none"}
                ],
            },
            "each route one of the gateway's",
        ),
        ("alertmanager", {"alertmanager_memory_limit": "2mb"}, "alertmanager_memory_limit"),
        (
            "exporters",
            {**PROBE_SECRETS, "exporters_mtail_memory_limit": "1m"},
            "exporters_mtail_memory_limit",
        ),
        # the probes' credentials name entries of the gateway's settings, never restate them
        (
            "exporters",
            {**PROBE_SECRETS, "exporters_blackbox_api_key_name": "nobody"},
            "exporters_blackbox_api_key_name ('nobody')",
        ),
        (
            "exporters",
            {**PROBE_SECRETS, "exporters_blackbox_prometheus_user": "nobody"},
            "exporters_blackbox_prometheus_user ('nobody')",
        ),
        (
            "exporters",
            {**PROBE_SECRETS, "exporters_blackbox_api_key": "k" * 40},
            "exporters_blackbox_api_key no longer exist",
        ),
    ],
)
def test_bad_variables_fail_naming_the_variable(role: str, extra_vars: dict, named: str) -> None:
    result = _run(role, extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert named in output
    if role == "ollama":
        assert "Preflight checks" in output
