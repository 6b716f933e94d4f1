"""image_settings, and playbooks/bundle.yml finding the images itself from the inventory.

Runs only the listing (`--tags bundle_images`: no Docker needed) against a throwaway inventory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from ansible_collections.edgeai.appliance.plugins.lookup.image_settings import image_settings

REPO = Path(__file__).resolve().parents[4]
DEFAULTS = {s["image"]: s["default"] for s in image_settings()}


def _listed(tmp_path: Path, inventory: dict, *extra: str) -> list[str]:
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", str(tmp_path / "hosts.yml"),
            "-e", "ansible_python_interpreter=" + sys.executable,
            "--tags", "bundle_images", *extra,
            str(REPO / "playbooks/bundle.yml"),
        ],
        capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    plays = json.loads(result.stdout)["plays"]
    listing = next(t for t in plays[-1]["tasks"] if t["task"]["name"] == "List the images")
    return listing["hosts"]["localhost"]["msg"]


def _host(**variables: object) -> dict:
    return {"ansible_connection": "local", **variables}


def test_the_settings_cover_every_role_image() -> None:
    assert set(DEFAULTS) >= {
        "gateway_image", "ollama_image", "ollama_exporter_image", "onnx_service_image",
        "prometheus_image", "alertmanager_image", "grafana_image", "exporters_node_image",
        "exporters_nginx_image", "exporters_mtail_image", "exporters_blackbox_image",
        "exporters_cadvisor_image", "exporters_cadvisor_docker_api_image",
    }  # fmt: skip
    switches = {s["image"]: s["enabled"] for s in image_settings()}
    assert switches["exporters_cadvisor_docker_api_image"] == "exporters_cadvisor_enabled"
    assert switches["ollama_exporter_image"] == "ollama_exporter_enabled"
    assert switches["gateway_image"] == ""
    # a template (the proxy reuses the gateway's image) is no default of its own
    assert DEFAULTS["exporters_cadvisor_docker_api_image"] is None


def test_the_inventorys_images_else_the_roles_defaults(tmp_path: Path) -> None:
    inventory = {
        "all": {"children": {"edge": {"hosts": {
            "dev-1": _host(gateway_image="registry.site/nginx:1.28.0",
                           exporters_cadvisor_enabled=False, ollama_exporter_enabled=False),
            "dev-2": _host(ollama_image="registry.site/ollama:0.12.6",
                           exporters_cadvisor_enabled=False, ollama_exporter_enabled=False),
        }}}}
    }  # fmt: skip
    # dev-1 runs the default Ollama image, dev-2 the default gateway image: both are in
    expected = {
        ref for name, ref in DEFAULTS.items()
        if ref and name not in ("exporters_cadvisor_image", "ollama_exporter_image")
    }  # fmt: skip
    expected |= {"registry.site/nginx:1.28.0", "registry.site/ollama:0.12.6"}
    listed = _listed(tmp_path, inventory)
    assert listed == sorted(expected)


def test_a_part_switched_on_brings_its_images(tmp_path: Path) -> None:
    inventory = {
        "all": {
            "children": {
                "edge": {
                    "hosts": {
                        "dev-1": _host(
                            exporters_cadvisor_docker_api_image="registry.site/nginx-proxy:1"
                        )
                    }
                }
            }
        }
    }
    listed = _listed(tmp_path, inventory)
    assert DEFAULTS["exporters_cadvisor_image"] in listed
    assert DEFAULTS["ollama_exporter_image"] in listed
    assert "registry.site/nginx-proxy:1" in listed
    assert len(listed) == len(set(listed))


def test_named_images_are_taken_as_given(tmp_path: Path) -> None:
    inventory = {"all": {"children": {"edge": {"hosts": {"dev-1": _host()}}}}}
    named = json.dumps({"bundle_images": ["b:1", "a:1"]})
    assert _listed(tmp_path, inventory, "-e", named) == ["b:1", "a:1"]
