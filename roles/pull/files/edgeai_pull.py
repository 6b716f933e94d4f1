#!/usr/bin/env python3
# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""edgeai-pull: one ansible-pull run of the site's repository on this device, with its result
written for node_exporter's textfile collector.

Started by edgeai-pull.timer (jittered by systemd's RandomizedDelaySec). A run that finds
another one holding the lock leaves at once and changes nothing. After every run it writes
edgeai_pull.prom atomically:

  edgeai_pull_last_run_timestamp_seconds       when the last run ended
  edgeai_pull_last_success_timestamp_seconds   when a run last converged the device (0: never)
  edgeai_pull_last_run_failed                  1 when the last run failed (fetch, syntax, task)
  edgeai_pull_last_run_changed                 tasks the last run changed
  edgeai_pull_last_run_duration_seconds        how long it took
  edgeai_pull_last_run_info{commit="..."}      the commit it ran (empty when the fetch failed)

The exit status is ansible-pull's, so `systemctl status edgeai-pull` shows a failed run too.
Only the Python standard library: it runs with the device's own python3.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.M,
)
METRICS_FILE = "edgeai_pull.prom"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="JSON: what to pull and run")
    parser.add_argument("--textfile-dir", required=True, type=Path)
    parser.add_argument("--state-dir", required=True, type=Path)
    return parser.parse_args(argv)


def pull_command(config: dict, checkout: Path) -> list[str]:
    """The ansible-pull command line the config asks for."""
    command = [
        config["ansible_pull"],
        "--url", config["url"],
        "--checkout", config["version"],
        "--directory", str(checkout),
        "--inventory", config["inventory"],
        "--limit", config["limit"],
        "--clean",  # local changes in the checkout are discarded: the repository decides
    ]  # fmt: skip
    if config.get("tags"):
        command += ["--tags", ",".join(config["tags"])]
    if config.get("full_clone"):
        command.append("--full")
    if config.get("only_if_changed"):
        command.append("--only-if-changed")
    command.append(config["playbook"])
    return command


def summarise(output: str, rc: int) -> tuple[int, bool]:
    """Tasks changed, and whether the run failed, from ansible-pull's exit status and recap."""
    changed = failed = 0
    for match in RECAP.finditer(output):
        changed += int(match["changed"])
        failed += int(match["failed"]) + int(match["unreachable"])
    return changed, rc != 0 or failed > 0


def head_commit(checkout: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def render(state: dict) -> str:
    commit = re.sub(r"[^0-9a-f]", "", state["commit"])
    return "".join(
        [
            "# HELP edgeai_pull_last_run_timestamp_seconds When the last ansible-pull run ended.\n",
            "# TYPE edgeai_pull_last_run_timestamp_seconds gauge\n",
            f"edgeai_pull_last_run_timestamp_seconds {state['last_run']:.3f}\n",
            "# HELP edgeai_pull_last_success_timestamp_seconds When an ansible-pull run last "
            "converged this device (0: never).\n",
            "# TYPE edgeai_pull_last_success_timestamp_seconds gauge\n",
            f"edgeai_pull_last_success_timestamp_seconds {state['last_success']:.3f}\n",
            "# HELP edgeai_pull_last_run_failed 1 when the last ansible-pull run failed.\n",
            "# TYPE edgeai_pull_last_run_failed gauge\n",
            f"edgeai_pull_last_run_failed {int(state['failed'])}\n",
            "# HELP edgeai_pull_last_run_changed Tasks the last ansible-pull run changed.\n",
            "# TYPE edgeai_pull_last_run_changed gauge\n",
            f"edgeai_pull_last_run_changed {state['changed']}\n",
            "# HELP edgeai_pull_last_run_duration_seconds Duration of the last ansible-pull run.\n",
            "# TYPE edgeai_pull_last_run_duration_seconds gauge\n",
            f"edgeai_pull_last_run_duration_seconds {state['duration']:.3f}\n",
            "# HELP edgeai_pull_last_run_info The commit the last ansible-pull run checked out.\n",
            "# TYPE edgeai_pull_last_run_info gauge\n",
            f'edgeai_pull_last_run_info{{commit="{commit}"}} 1\n',
        ]
    )


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run(args: argparse.Namespace) -> int:
    config = json.loads(args.config.read_text())
    args.state_dir.mkdir(parents=True, exist_ok=True)
    lock = (args.state_dir / "lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("edgeai-pull: another run holds the lock; this one does nothing", flush=True)
        return 0
    checkout = args.state_dir / "checkout"
    command = pull_command(config, checkout)
    print("edgeai-pull: " + " ".join(command), flush=True)
    started = time.time()
    lines: list[str] = []
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:  # to the journal as it comes, and kept for the recap
                sys.stdout.write(line)
                lines.append(line)
            rc = process.wait()
    except OSError as exc:
        print(f"edgeai-pull: cannot run {command[0]}: {exc}", flush=True)
        rc = 127
    ended = time.time()
    changed, failed = summarise("".join(lines), rc)
    state_file = args.state_dir / "state.json"
    previous = load_state(state_file)
    state = {
        "last_run": ended,
        "last_success": ended if not failed else float(previous.get("last_success", 0)),
        "failed": failed,
        "changed": changed,
        "duration": ended - started,
        "commit": head_commit(checkout),
    }
    write_atomic(state_file, json.dumps(state), 0o600)
    write_atomic(args.textfile_dir / METRICS_FILE, render(state))
    outcome = "failed" if failed else "converged"
    print(
        f"edgeai-pull: {outcome} (rc={rc}, changed={changed}, commit {state['commit'] or '-'})",
        flush=True,
    )
    return rc if rc != 0 else int(failed)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
