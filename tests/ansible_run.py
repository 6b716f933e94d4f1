"""One way for the test suites to run ansible-playbook against this checkout, isolated per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BINDIR = Path(sys.executable).parent


def collections_dir(root: Path) -> Path:
    """A collections path under `root` holding only this checkout as edgeai.appliance."""
    base = root / "collections" / "ansible_collections" / "edgeai"
    base.mkdir(parents=True, exist_ok=True)
    link = base / "appliance"
    if not link.exists():
        link.symlink_to(REPO)
    return root / "collections"


def playbook_env(root: Path, **overrides: str) -> dict[str, str]:
    """The environment: this checkout's collection, temp and home dirs under `root`, no colour."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(collections_dir(root)),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"),
        ANSIBLE_HOME=str(root / "ansible-home"),
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_PIPELINING="1",
        PATH=f"{BINDIR}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(overrides)
    return env


def ansible_playbook(
    args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook of the running interpreter's environment; output captured, never raises."""
    binary = BINDIR / "ansible-playbook"
    return subprocess.run(
        [str(binary if binary.exists() else "ansible-playbook"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )
