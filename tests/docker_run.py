"""One way for the Docker-driven suites to run the docker CLI and to know they can (the lab's
engine and the images they need), as tests/ansible_run.py is for ansible-playbook."""

from __future__ import annotations

import shutil
import subprocess

DOCKER = shutil.which("docker")


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The docker CLI, output captured, two minutes at most."""
    return subprocess.run(
        [str(DOCKER), *args], capture_output=True, text=True, check=check, timeout=120
    )


def docker_ready(*images: str) -> bool:
    """An engine answers and has every one of `images`."""
    if DOCKER is None or docker("info", check=False).returncode != 0:
        return False
    return all(docker("image", "inspect", image, check=False).returncode == 0 for image in images)
