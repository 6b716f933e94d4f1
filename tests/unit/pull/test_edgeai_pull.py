"""roles/pull/files/edgeai_pull.py against a stand-in ansible-pull: the metrics after a converged,
a changed and a failed run, the last success kept across failures, the lock, the command line."""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles/pull/files/edgeai_pull.py"

# Records its arguments, makes the checkout a git repository with one commit, prints a play
# recap and exits as told by the test (through files next to it).
FAKE = textwrap.dedent(
    """\
    #!{python}
    import json, os, subprocess, sys
    from pathlib import Path
    here = Path(__file__).parent
    (here / "calls.jsonl").open("a").write(json.dumps(sys.argv[1:]) + "\\n")
    checkout = Path(sys.argv[sys.argv.index("--directory") + 1])
    if not (checkout / ".git").exists():
        checkout.mkdir(parents=True, exist_ok=True)
        git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(git[:3] + ["init", "-q"], check=True)
        subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "site"], check=True)
    plan = json.loads((here / "plan.json").read_text())
    print("PLAY RECAP *********")
    print(f"shop-01 : ok=12 changed={{plan['changed']}} unreachable=0 failed={{plan['failed']}} "
          "skipped=3 rescued=0 ignored=0")
    sys.exit(plan["rc"])
    """
)


class Device:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.fake = self.bin / "ansible-pull"
        self.fake.write_text(FAKE.format(python=sys.executable))
        self.fake.chmod(0o755)
        self.state = root / "state"
        self.textfile = root / "textfile"
        self.textfile.mkdir()
        self.config = root / "pull.json"
        self.config.write_text(
            json.dumps(
                {
                    "ansible_pull": str(self.fake),
                    "url": "http://git.site/site.git",
                    "version": "stable",
                    "inventory": "inventories/shop/hosts.yml",
                    "playbook": "playbooks/pull.yml",
                    "limit": "shop-01",
                    "tags": ["recovery", "pull"],
                    "only_if_changed": False,
                }
            )
        )

    def run(self, changed: int = 0, failed: int = 0, rc: int = 0) -> subprocess.CompletedProcess:
        (self.bin / "plan.json").write_text(
            json.dumps({"changed": changed, "failed": failed, "rc": rc})
        )
        return subprocess.run(
            [sys.executable, str(SCRIPT), "--config", str(self.config),
             "--state-dir", str(self.state), "--textfile-dir", str(self.textfile)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    def metrics(self) -> dict[str, float]:
        text = (self.textfile / "edgeai_pull.prom").read_text()
        return {
            name: float(value)
            for name, value in re.findall(r"^(edgeai_pull_\w+(?:\{[^}]*\})?) (\S+)$", text, re.M)
        }

    def calls(self) -> list[list[str]]:
        path = self.bin / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path)


def test_a_converged_run_reports_success_and_the_commit(device: Device) -> None:
    result = device.run(changed=3)
    assert result.returncode == 0, result.stderr
    metrics = device.metrics()
    assert metrics["edgeai_pull_last_run_failed"] == 0
    assert metrics["edgeai_pull_last_run_changed"] == 3
    assert metrics["edgeai_pull_last_success_timestamp_seconds"] > 0
    assert (
        metrics["edgeai_pull_last_success_timestamp_seconds"]
        == metrics["edgeai_pull_last_run_timestamp_seconds"]
    )
    commit = subprocess.run(
        ["git", "-C", str(device.state / "checkout"), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert metrics[f'edgeai_pull_last_run_info{{commit="{commit}"}}'] == 1
    assert (device.textfile / "edgeai_pull.prom").stat().st_mode & 0o777 == 0o644
    assert device.calls() == [
        ["--url", "http://git.site/site.git", "--checkout", "stable",
         "--directory", str(device.state / "checkout"),
         "--inventory", "inventories/shop/hosts.yml", "--limit", "shop-01", "--clean",
         "--tags", "recovery,pull", "playbooks/pull.yml"]
    ]  # fmt: skip
    assert "edgeai-pull: converged (rc=0, changed=3" in result.stdout


def test_a_failed_run_keeps_the_last_success_and_fails_the_unit(device: Device) -> None:
    assert device.run(changed=1).returncode == 0
    converged = device.metrics()["edgeai_pull_last_success_timestamp_seconds"]
    result = device.run(changed=0, failed=1, rc=2)
    assert result.returncode == 2
    metrics = device.metrics()
    assert metrics["edgeai_pull_last_run_failed"] == 1
    assert metrics["edgeai_pull_last_run_changed"] == 0
    assert metrics["edgeai_pull_last_success_timestamp_seconds"] == converged
    assert metrics["edgeai_pull_last_run_timestamp_seconds"] > converged
    # a later good run converges again
    assert device.run().returncode == 0
    assert device.metrics()["edgeai_pull_last_success_timestamp_seconds"] > converged


def test_a_recap_with_failures_fails_even_with_exit_status_0(device: Device) -> None:
    assert device.run(failed=1, rc=0).returncode == 1
    assert device.metrics()["edgeai_pull_last_run_failed"] == 1


def test_a_device_that_never_converged_says_so(device: Device) -> None:
    device.run(failed=1, rc=2)
    assert device.metrics()["edgeai_pull_last_success_timestamp_seconds"] == 0


def test_a_missing_ansible_pull_is_a_failed_run(device: Device) -> None:
    device.fake.unlink()
    result = device.run()
    assert result.returncode == 127
    assert "cannot run" in result.stdout
    assert device.metrics()["edgeai_pull_last_run_failed"] == 1


def test_a_run_while_another_holds_the_lock_does_nothing(device: Device) -> None:
    device.run(changed=2)
    before = (device.textfile / "edgeai_pull.prom").read_text()
    with (device.state / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = device.run(failed=1, rc=2)
    assert result.returncode == 0
    assert "another run holds the lock" in result.stdout
    assert len(device.calls()) == 1
    assert (device.textfile / "edgeai_pull.prom").read_text() == before
