"""The docker role delivers the project's own images (`localhost/edgeai/...`) or says how to.

No public registry has them (tools/release_images.py builds them): a device that would have to pull
one without a site registry gets a failure naming the fix, not Docker's connection error; a device
that has the image, or a site registry to pull it from, goes on. Runs the role's real image tasks
against this machine's Docker engine (`make integration`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_run import ansible_playbook, playbook_env

pytestmark = pytest.mark.docker

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: edgeai.appliance.docker
        tasks_from: image
"""


def _deliver(tmp_path: Path, ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "deliver.yml"
    playbook.write_text(PLAY)
    args = ["-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
    args += ["-e", f"docker_image_ref={ref}", *extra, str(playbook)]
    return ansible_playbook(args, playbook_env(tmp_path), timeout=300)


def test_an_unpublished_project_image_fails_with_the_fix(tmp_path: Path) -> None:
    result = _deliver(tmp_path, f"localhost/edgeai/onnx-service:0.0.0-{os.getpid()}")
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    assert "published on no public registry" in out, result.stdout
    assert "make release-images REGISTRY=" in out
    assert "docker_image_delivery: bundle" in out


def test_a_project_image_on_the_host_is_used_without_a_pull(tmp_path: Path) -> None:
    source = os.environ.get("GATEWAY_TEST_IMAGE", "")
    assert source, "run through `make integration` (it exports the lab image refs)"
    ref = f"localhost/edgeai/guard-test:{os.getpid()}"
    subprocess.run(["docker", "tag", source, ref], check=True)
    try:
        result = _deliver(tmp_path, ref)
        assert result.returncode == 0, result.stdout
        assert "image_pull.yml" not in result.stdout  # the pull path was not even included
    finally:
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


def test_with_a_site_registry_the_mirror_is_asked(tmp_path: Path) -> None:
    # nothing listens on port 9 of loopback: the pull fails, but as a pull from the mirror
    result = _deliver(
        tmp_path,
        f"localhost/edgeai/onnx-service:0.0.0-{os.getpid()}",
        "-e", "docker_image_mirror=127.0.0.1:9",
    )  # fmt: skip
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    assert "published on no public registry" not in out
    assert f"127.0.0.1:9/localhost/edgeai/onnx-service:0.0.0-{os.getpid()}" in out
