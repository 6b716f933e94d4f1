"""The docker role on the emulated edge host, checked from inside it (testinfra)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

LAB_STATE = Path(os.environ["EDGEAI_LAB_STATE"])
LAB = json.loads((LAB_STATE / "images.json").read_text())


@pytest.fixture(scope="module")
def daemon_json(host) -> dict:
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def test_dockerd_runs_under_systemd(host) -> None:
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    docker = host.service("docker")
    assert docker.is_enabled
    assert docker.is_running
    version = host.check_output("docker version --format '{{.Server.Version}}'")
    assert version.split(".")[0].isdigit()


def test_python_docker_sdk_for_community_docker(host) -> None:
    assert host.package("python3-docker").is_installed


def test_daemon_json_has_the_roles_keys(daemon_json: dict) -> None:
    assert daemon_json["log-driver"] == "json-file"
    assert daemon_json["log-opts"]["max-size"] == "10m"
    assert daemon_json["log-opts"]["max-file"] == "3"
    assert daemon_json["live-restore"] is True
    assert daemon_json["icc"] is False
    assert daemon_json["metrics-addr"] == "127.0.0.1:9323"
    assert daemon_json["insecure-registries"] == [LAB["registry"]]


def test_daemon_json_keeps_keys_other_tools_wrote(daemon_json: dict) -> None:
    # prepare.yml wrote these before the role ran, as the NVIDIA toolkit or an operator would
    assert daemon_json["default-shm-size"] == "128M"
    assert daemon_json["log-opts"]["compress"] == "true"


def test_engine_uses_the_merged_configuration(host) -> None:
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True
    registries = info["RegistryConfig"]["IndexConfigs"]
    assert registries[LAB["registry"]]["Secure"] is False


def test_engine_metrics_only_on_loopback(host) -> None:
    assert host.socket("tcp://127.0.0.1:9323").is_listening
    assert not host.socket("tcp://0.0.0.0:9323").is_listening


@pytest.mark.parametrize(
    ("network", "internal"),
    [
        ("edge_front", False),
        # one per service with a loopback host port (docker_host_port_roles)
        ("edge_host_ollama", False),
        ("edge_host_onnx_service", False),
        ("edge_host_prometheus", False),
        ("edge_host_grafana", False),
        ("edge_back", True),
        ("edge_mon", True),
        ("edge_scrape", True),
        ("edge_probe", True),
    ],
)
def test_appliance_networks(host, network: str, internal: bool) -> None:
    details = json.loads(host.check_output(f"docker network inspect {network}"))[0]
    assert details["Internal"] is internal
    assert details["Driver"] == "bridge"
    assert details["Labels"]["org.edgeai.appliance"] == "true"


def test_a_container_runs_inside(host) -> None:
    image = LAB["images"]["python"]
    out = host.check_output(
        f"docker run --rm --network edge_back --read-only --cap-drop ALL {image} "
        "python3 -c 'print(6 * 7)'"
    )
    assert out.strip() == "42"


def test_pulled_image_has_its_canonical_name_only(host) -> None:
    image = LAB["images"]["python"]
    tags = json.loads(host.check_output(f"docker image inspect {image}"))[0]["RepoTags"]
    assert tags == [image]


def test_bundled_image_is_the_exported_one(host) -> None:
    manifest = json.loads((LAB_STATE / "bundle/manifest.json").read_text())
    entry = manifest["images"][0]
    loaded = json.loads(host.check_output(f"docker image inspect {entry['ref']}"))[0]
    assert loaded["Id"] == entry["id"]
    # the staged tar is gone once loaded: edge disks are small
    assert not host.file(f"/var/lib/edgeai/bundles/{entry['file']}").exists
