"""Pull mode on the converged edge host: it converges itself from a git repository served by
another container on the lab network, and a broken commit leaves it serving and says so.

The git server is a throwaway container (<instance>-git, the name converge.yml gave the device
as pull_repo_url) serving a bare repository over git's HTTP protocol. The site repository is this
collection plus an inventory for the device; the device runs only the recovery role of
playbooks/pull.yml (pull_tags, for time), its own edgeai-pull.service doing the work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from appliance_lab import CA, IMAGES, INSTANCE, gateway_url, prometheus_api, wait_for

REPO = Path(__file__).resolve().parents[3]
NETWORK = os.environ["EDGEAI_LAB_NETWORK"]
PYTHON_IMAGE = IMAGES["images"]["python"]
JOURNALD_CONF = "/etc/systemd/journald.conf.d/90-edgeai.conf"
METRICS = "/var/lib/edgeai/textfile/edgeai_pull.prom"
INVENTORY = """\
edge:
  hosts:
    {host}:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
      recovery_journal_max_use: {journal}
      recovery_autoheal_interval: {interval}
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=site", "-c", "user.email=site@example.invalid", *args],
        cwd=cwd, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip


def on_device(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", INSTANCE, *args],
        capture_output=True, text=True, check=check, timeout=timeout,
    )  # fmt: skip


class Site:
    """The site's repository: a working copy and the bare repository the server publishes."""

    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.bare = root / "srv" / "site.git"
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, files):
            source, target = REPO / name, self.work / name
            if not source.exists() and not source.is_symlink():
                continue  # deleted in the working tree
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                target.symlink_to(source.readlink())
            else:
                shutil.copy2(source, target)
        git(self.work, "init", "-q", "-b", "main")

    def commit(self, message: str, journal: str = "200M", interval: int = 5) -> str:
        inventory = self.work / "inventories/device/hosts.yml"
        inventory.parent.mkdir(parents=True, exist_ok=True)
        inventory.write_text(INVENTORY.format(host=INSTANCE, journal=journal, interval=interval))
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        if not self.bare.exists():
            self.bare.parent.mkdir(parents=True)
            git(self.work, "clone", "-q", "--bare", str(self.work), str(self.bare))
        else:
            git(self.work, "push", "-q", str(self.bare), "main")
        git(self.bare, "update-server-info")  # git's dumb HTTP protocol serves these files
        return git(self.work, "rev-parse", "HEAD")


def metrics() -> dict[str, str]:
    text = on_device("cat", METRICS).stdout
    return dict(re.findall(r"^(edgeai_pull_\w+(?:\{[^}]*\})?) (\S+)$", text, re.M))


def pull() -> subprocess.CompletedProcess:
    """One run of the device's own edgeai-pull.service (systemctl waits for a oneshot unit)."""
    return on_device("systemctl", "start", "edgeai-pull.service", check=False)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="edgeai-fleet-pull-"))
    server = f"{INSTANCE}-git"
    try:
        site = Site(root)
        site.commit("the site, as the lab converged it")
        subprocess.run(
            ["docker", "run", "-d", "--name", server, "--network", NETWORK,
             "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "-v", f"{root / 'srv'}:/srv:ro", "--entrypoint", "python3", PYTHON_IMAGE,
             "-m", "http.server", "8080", "--directory", "/srv"],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        yield site
    finally:
        subprocess.run(["docker", "rm", "-f", server], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_the_timer_is_installed_jittered_and_idle() -> None:
    timer = on_device("systemctl", "show", "edgeai-pull.timer", "-p", "ActiveState,UnitFileState")
    assert "ActiveState=active" in timer.stdout
    assert "UnitFileState=enabled" in timer.stdout
    unit = on_device("cat", "/etc/systemd/system/edgeai-pull.timer").stdout
    assert "RandomizedDelaySec=1s" in unit
    assert "OnUnitInactiveSec=7d" in unit


def test_the_device_pulls_converges_and_reports(site: Site) -> None:
    first = pull()
    assert first.returncode == 0, on_device("journalctl", "-u", "edgeai-pull", "-n", "80").stdout
    commit = site.commit("journald: 201M", journal="201M")
    result = pull()
    journal = on_device("journalctl", "-u", "edgeai-pull", "-n", "60", "--no-pager").stdout
    assert result.returncode == 0, journal
    assert "journald.conf" in journal or "changed=" in journal
    found = metrics()
    assert found["edgeai_pull_last_run_failed"] == "0"
    assert int(found["edgeai_pull_last_run_changed"]) > 0, journal
    assert float(found["edgeai_pull_last_success_timestamp_seconds"]) > 0
    assert found[f'edgeai_pull_last_run_info{{commit="{commit}"}}'] == "1"
    assert "SystemMaxUse=201M" in on_device("cat", JOURNALD_CONF).stdout


def test_a_broken_commit_fails_the_run_and_the_device_keeps_serving(site: Site) -> None:
    converged = metrics()["edgeai_pull_last_success_timestamp_seconds"]
    commit = site.commit(
        "autoheal: poll every 0 s (refused by the role)", journal="202M", interval=0
    )
    result = pull()
    assert result.returncode != 0
    journal = on_device("journalctl", "-u", "edgeai-pull", "-n", "60", "--no-pager").stdout
    assert "recovery_autoheal_interval" in journal, journal
    found = metrics()
    assert found["edgeai_pull_last_run_failed"] == "1"
    assert found["edgeai_pull_last_success_timestamp_seconds"] == converged
    assert found[f'edgeai_pull_last_run_info{{commit="{commit}"}}'] == "1"
    # nothing of the broken commit landed, and the appliance serves
    assert "SystemMaxUse=201M" in on_device("cat", JOURNALD_CONF).stdout
    assert requests.get(f"{gateway_url()}/healthz", verify=CA, timeout=30).status_code == 200

    def prometheus_sees_it() -> bool:
        data = prometheus_api("query", {"query": "edgeai_pull_last_run_failed == 1"})
        return len(data["result"]) == 1

    assert wait_for(prometheus_sees_it, timeout=120, step=5) is not None

    # the fix is the next commit: the device converges again
    site.commit("back to the lab's settings")
    assert pull().returncode == 0
    found = metrics()
    assert found["edgeai_pull_last_run_failed"] == "0"
    assert float(found["edgeai_pull_last_success_timestamp_seconds"]) > float(converged)
    assert "SystemMaxUse=200M" in on_device("cat", JOURNALD_CONF).stdout
