"""edgeai.appliance.container_signal: the signal reaches the container's process, found through
`docker container inspect`.

The `docker` command here is a test double: a script on PATH that answers `container inspect`
the way the Docker CLI does (a State JSON, or "No such container" / "Cannot connect" with rc 1).
The process it reports is real, and the test checks that it received the signal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_collections.edgeai.appliance.plugins.modules import container_signal
from ollama_helpers import RunModule

# A process that records each SIGHUP it gets in a file, like a service reloading its config.
RELOADER = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGHUP, lambda *_: out.write_text(out.read_text() + "HUP\\n"))
out.write_text("")
while True:
    time.sleep(0.05)
"""


def _fake_docker(bin_dir: Path, *, stdout: str = "", stderr: str = "", rc: int = 0) -> Path:
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / "calls"
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        f"printf '%s' '{stdout}'\n"
        f"printf '%s' '{stderr}' >&2\n"
        f"exit {rc}\n"
    )
    script.chmod(0o755)
    return log


@pytest.fixture
def reloader(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    out = tmp_path / "reloads"
    proc = subprocess.Popen([sys.executable, "-c", RELOADER, str(out)])
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline, "the reloader did not start"
        time.sleep(0.02)
    yield proc, out
    proc.kill()
    proc.wait()


def _wait_for(path: Path, text: str) -> str:
    deadline = time.monotonic() + 5
    while text not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.read_text()


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(path))
    return path


def test_signals_the_running_containers_process(
    bin_dir: Path, reloader: tuple[subprocess.Popen[bytes], Path], run_module: RunModule
) -> None:
    proc, out = reloader
    calls = _fake_docker(bin_dir, stdout=json.dumps({"Running": True, "Pid": proc.pid}))
    result = run_module(container_signal.main, {"name": "prometheus"})
    assert result["changed"] is True
    assert result["signalled"] is True
    assert result["pid"] == proc.pid
    assert _wait_for(out, "HUP") == "HUP\n"
    assert calls.read_text().split() == [
        "container", "inspect", "--format", "{{json", ".State}}", "prometheus",
    ]  # fmt: skip
    assert proc.poll() is None  # reloaded, not killed


def test_check_mode_reports_the_change_and_sends_nothing(
    bin_dir: Path, reloader: tuple[subprocess.Popen[bytes], Path], run_module: RunModule
) -> None:
    proc, out = reloader
    _fake_docker(bin_dir, stdout=json.dumps({"Running": True, "Pid": proc.pid}))
    result = run_module(
        container_signal.main, {"name": "prometheus", "signal": "SIGHUP"}, check=True
    )
    assert (result["changed"], result["signalled"]) == (True, True)
    time.sleep(0.3)
    assert out.read_text() == ""


@pytest.mark.parametrize(
    ("fake", "why"),
    [
        ({"stdout": json.dumps({"Running": False, "Pid": 0})}, "prometheus is not running"),
        (
            {"stderr": "Error response from daemon: No such container: prometheus", "rc": 1},
            "there is no container prometheus",
        ),
        (
            {
                "stderr": "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.",
                "rc": 1,
            },
            "the Docker engine did not answer, prometheus was not signalled",
        ),
    ],
    ids=["stopped", "absent", "engine-down"],
)
def test_nothing_to_reload_is_no_change(
    bin_dir: Path, run_module: RunModule, fake: dict[str, object], why: str
) -> None:
    _fake_docker(bin_dir, **fake)  # type: ignore[arg-type]
    result = run_module(container_signal.main, {"name": "prometheus"})
    assert (result["changed"], result["signalled"], result["pid"]) == (False, False, 0)
    assert result["msg"] == why


def test_no_docker_command_is_no_change(bin_dir: Path, run_module: RunModule) -> None:
    bin_dir.mkdir()
    result = run_module(container_signal.main, {"name": "prometheus"})
    assert (result["changed"], result["signalled"]) == (False, False)
    assert result["msg"] == "there is no docker command"


def test_other_inspect_errors_fail_with_the_engines_message(
    bin_dir: Path, run_module: RunModule
) -> None:
    _fake_docker(bin_dir, stderr="permission denied while trying to connect", rc=1)
    result = run_module(container_signal.main, {"name": "prometheus"})
    assert result["failed"] is True
    assert "permission denied" in result["msg"]


def test_an_unknown_signal_name_fails_naming_it(bin_dir: Path, run_module: RunModule) -> None:
    _fake_docker(bin_dir, stdout=json.dumps({"Running": True, "Pid": 1}))
    result = run_module(container_signal.main, {"name": "prometheus", "signal": "RELOAD"})
    assert result["failed"] is True
    assert "'RELOAD'" in result["msg"]
