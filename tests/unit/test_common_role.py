"""roles/_common is internal: a play cannot run it, nor import its entry points itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests/unit/playbooks/common_role.yml"


@pytest.mark.parametrize("entry", ["main", "staged_config"])
def test_a_play_cannot_use_the_internal_role(entry: str) -> None:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", "localhost,",
            "-c", "local",
            "-e", "ansible_python_interpreter=" + sys.executable,
            "-e", f"common_entry={entry}",
            str(PLAYBOOK),
        ],
        capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "edgeai.appliance._common is internal" in result.stdout, result.stdout
