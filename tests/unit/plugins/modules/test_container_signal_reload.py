"""edgeai.appliance.container_signal with reload_metrics, against Debian's real Prometheus and
Alertmanager: the module signals the process and waits for the reload the service itself reports.

The service runs here as a plain process; the `docker` command is a test double (a Python script
on PATH) that answers `container inspect` with that process's PID, runs `exec <name> wget -q -O -
<url>` as a plain HTTP GET, and prints the service's log for `logs --tail N`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ansible_collections.edgeai.appliance.plugins.modules import container_signal
from free_ports import reserve_port
from ollama_helpers import RunModule
from packaged import tool

FAKE_DOCKER = """#!{python}
import json, sys, urllib.request
args = sys.argv[1:]
with open({calls!r}, "a") as calls:
    calls.write(" ".join(args) + "\\n")
if args[:2] == ["container", "inspect"]:
    print(json.dumps({{"Running": True, "Pid": {pid}}}))
elif args[0] == "exec" and args[2:6] == ["wget", "-q", "-O", "-"]:
    try:
        sys.stdout.write(urllib.request.urlopen(args[6], timeout=5).read().decode())
    except OSError as exc:
        sys.exit("wget: " + str(exc))
elif args[0] == "logs":
    lines = open({log!r}).read().splitlines()
    print("\\n".join(lines[-int(args[2]):]))
else:
    sys.exit("unexpected: " + " ".join(args))
"""

PROMETHEUS_CONFIG = """global:
  scrape_interval: {interval}
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""

ALERTMANAGER_CONFIG = """route:
  receiver: {receiver}
receivers:
  - name: {receiver}
"""


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    config: Path
    url: str
    log: Path
    calls: Path


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text: str = answer.read().decode()
        return text


def start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], config: Path, port: int
) -> Iterator[Service]:
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            get(url + "-/ready")
            break
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = bin_dir / "calls"
    docker = bin_dir / "docker"
    docker.write_text(
        FAKE_DOCKER.format(python=sys.executable, calls=str(calls), pid=process.pid, log=str(log))
    )
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    try:
        yield Service(process, config, url, log, calls)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    port = reserve_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(interval="15s", port=port))
    argv = [
        tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    yield from start(tmp_path, monkeypatch, argv, config, port)


@pytest.fixture
def alertmanager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    port = reserve_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(receiver="first"))
    argv = [
        tool("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    yield from start(tmp_path, monkeypatch, argv, config, port)


def reload(run_module: RunModule, service: Service, prefix: str, **more: object) -> dict:
    spec = {"url": service.url + "metrics", "prefix": prefix, **more}
    return run_module(container_signal.main, {"name": prefix, "reload_metrics": spec})


def test_prometheus_reload_is_waited_for_and_takes_effect(
    prometheus: Service, run_module: RunModule
) -> None:
    before = get(prometheus.url + "metrics")
    prometheus.config.write_text(
        PROMETHEUS_CONFIG.format(interval="7s", port=prometheus.url.split(":")[2].rstrip("/"))
    )
    result = reload(run_module, prometheus, "prometheus")
    assert "failed" not in result, result
    assert (result["changed"], result["signalled"]) == (True, True)
    stamp = "prometheus_config_last_reload_success_timestamp_seconds"
    assert f"{stamp} {result['reloaded_at']}\n" not in before
    assert f"{stamp} {result['reloaded_at']}\n" in get(prometheus.url + "metrics")
    config = json.loads(get(prometheus.url + "api/v1/status/config"))["data"]["yaml"]
    assert "scrape_interval: 7s" in config


def test_a_refused_prometheus_configuration_fails_and_the_old_one_stays(
    prometheus: Service, run_module: RunModule
) -> None:
    prometheus.config.write_text("scrape_configs:\n  - job_name: self\n    bogus_field: 1\n")
    result = reload(run_module, prometheus, "prometheus")
    assert result["failed"] is True
    assert (
        "container_signal: prometheus refused the new configuration after SIGHUP "
        "(prometheus_config_last_reload_successful is 0); it keeps the configuration it had"
    ) in result["msg"]
    assert "bogus_field" in result["msg"]  # the end of the service's own log
    config = json.loads(get(prometheus.url + "api/v1/status/config"))["data"]["yaml"]
    assert "scrape_interval: 15s" in config


def test_alertmanager_reload_is_waited_for_and_takes_effect(
    alertmanager: Service, run_module: RunModule
) -> None:
    alertmanager.config.write_text(ALERTMANAGER_CONFIG.format(receiver="second"))
    result = reload(run_module, alertmanager, "alertmanager")
    assert "failed" not in result, result
    assert result["reloaded_at"]
    status = json.loads(get(alertmanager.url + "api/v2/status"))
    assert "receiver: second" in status["config"]["original"]


def test_metrics_that_never_answer_fail_before_the_signal(
    alertmanager: Service, run_module: RunModule
) -> None:
    spec = {"url": f"http://127.0.0.1:{reserve_port()}/metrics", "prefix": "alertmanager"}
    result = run_module(
        container_signal.main, {"name": "alertmanager", "reload_metrics": {**spec, "timeout": 2}}
    )
    assert result["failed"] is True
    stamp = "alertmanager_config_last_reload_success_timestamp_seconds"
    assert f"did not report {stamp}" in result["msg"]
    assert "nothing was signalled" in result["msg"]
    assert "Loading configuration file" in alertmanager.log.read_text()
    assert alertmanager.log.read_text().count("Loading configuration file") == 1
