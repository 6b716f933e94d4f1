"""Make sure a Docker engine is usable: use a running one, else install Debian's and start it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from edgelab.proc import run


class EngineError(RuntimeError):
    """The Docker engine cannot be made usable; the message says why and what to do."""


def engine_usable(docker: str = "docker") -> bool:
    """True when `docker info` reaches a daemon."""
    if shutil.which(docker) is None:
        return False
    result = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.returncode == 0 and bool(result.stdout.strip())


def apt_install(packages: list[str]) -> None:
    """Install Debian packages that are missing (apt-get update once, non-interactive)."""
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def _dpkg_installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and "install ok installed" in result.stdout


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll `check` until it returns True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def start_dockerd(log_path: Path) -> subprocess.Popen[bytes]:
    """Start dockerd in the background, detached from this process group, logging to a file."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineError("dockerd is not installed (expected it from Debian's docker.io package)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [dockerd],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def ensure_engine(log_path: Path, timeout: float = 90.0) -> str:
    """Return how the engine was made usable: 'running', or 'started'.

    Installs Debian's docker.io (and iptables, which dockerd needs) when dockerd is missing, starts
    dockerd when no daemon answers, and waits for it. Raises EngineError with the tail of the
    daemon's log when it does not come up.
    """
    if engine_usable():
        return "running"
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        apt_install(["docker.io", "iptables", "ca-certificates"])
    process = start_dockerd(log_path)
    if wait_until(engine_usable, timeout):
        return "started"
    code = process.poll()
    state = f"exited with code {code}" if code is not None else "is running"
    tail = log_path.read_text(errors="replace").splitlines()[-15:] if log_path.exists() else []
    raise EngineError(
        f"dockerd {state} but no Docker engine answered within {timeout:.0f} s.\n"
        f"Last lines of {log_path}:\n  " + "\n  ".join(tail)
    )
