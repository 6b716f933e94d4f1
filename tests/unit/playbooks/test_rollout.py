"""site.yml rolls out canary-first in batches, and the health gate stops it at a failing device.

Four devices (connection local) each get their own stand-in of a device's gateway on a loopback
port: the routes the gate calls (/healthz, /v2/models/<m>, its infer, /api/tags), answering well or
failing the way a broken device would. The real site.yml runs with `--tags health_gate`, so its
real play keywords (serial, max_fail_percentage) and the real role decide; what reached each
device's gateway, and when, is what the assertions read: a device whose gateway saw no request was
not touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from ansible_run import REPO, ansible_playbook, playbook_env

KEY = "gate-test-key"
HOSTS = ["edge-1", "edge-2", "edge-3", "edge-4"]
METADATA = {
    "name": "tiny",
    "versions": ["1"],
    "platform": "onnxruntime_onnx",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


class Device(ThreadingHTTPServer):
    """The gateway of one device, as far as the gate sees it; `fault` breaks one route."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.fault = ""
        self.requests: list[tuple[float, str, str]] = []
        self.bodies: list[object] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Device

    def log_message(self, *_: object) -> None:
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        device = self.server
        device.requests.append((time.monotonic(), self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if self.path == "/healthz":
            self._send(503 if device.fault == "healthz" else 200, {"status": "ok"})
        elif self.headers.get("X-API-Key") != KEY:
            self._send(401, {"error": "missing or unknown API key"})
        elif self.path == "/v2/models/tiny" and self.command == "GET":
            self._send(200, METADATA)
        elif self.path == "/v2/models/tiny/infer" and self.command == "POST":
            device.bodies.append(body)
            if device.fault == "infer":
                self._send(500, {"error": "onnxruntime failed"})
            else:
                output = {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.5]}
                self._send(200, {"model_name": "tiny", "outputs": [output]})
        elif self.path == "/api/tags":
            models = [] if device.fault == "llm" else [{"name": "gemma3:270m"}]
            self._send(200, {"models": models})
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()


@pytest.fixture
def devices() -> Iterator[dict[str, Device]]:
    servers = {name: Device() for name in HOSTS}
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def _rollout(
    tmp_path: Path, devices: dict[str, Device], *extra: str
) -> subprocess.CompletedProcess[str]:
    inventory = {
        "edge": {
            "hosts": {name: {"health_gate_url": device.url} for name, device in devices.items()},
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
                "health_gate_api_key": KEY,
                "health_gate_ca_file": "",
                "health_gate_onnx_models": ["tiny"],
                "health_gate_ollama_models": ["gemma3:270m"],
                "health_gate_retries": 1,
                "health_gate_delay": 0,
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return ansible_playbook(
        [str(REPO / "playbooks/site.yml"), "-i", str(path), "--tags", "health_gate", *extra],
        env=playbook_env(tmp_path, ANSIBLE_GATHERING="explicit"),
        timeout=300,
    )


def _first_and_last(device: Device) -> tuple[float, float]:
    times = [t for t, _, _ in device.requests]
    return min(times), max(times)


def test_a_healthy_fleet_is_checked_canary_first_then_in_batches(
    tmp_path: Path, devices: dict[str, Device]
) -> None:
    result = _rollout(tmp_path, devices)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, device in devices.items():
        paths = [(method, path) for _, method, path in device.requests]
        assert paths == [
            ("GET", "/healthz"),
            ("GET", "/v2/models/tiny"),
            ("POST", "/v2/models/tiny/infer"),
            ("GET", "/api/tags"),
        ], name
        # the infer request was built from the model's metadata: zeros in the published shape
        assert device.bodies == [
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]}
        ], name
    spans = {name: _first_and_last(device) for name, device in devices.items()}
    # batches [1, 10%, 100%] of four: edge-1 alone, then edge-2 alone (10% rounds up to one),
    # then edge-3 and edge-4 together; each batch starts after the one before has finished
    assert spans["edge-1"][1] < spans["edge-2"][0]
    assert spans["edge-2"][1] < min(spans["edge-3"][0], spans["edge-4"][0])


@pytest.mark.parametrize(
    ("fault", "check", "detail"),
    [
        ("healthz", "Gateway answers /healthz", "503"),
        ("infer", "ONNX models answer an infer", "500"),
        ("llm", "Every LLM model is listed", "not listed by /api/tags: gemma3:270m"),
    ],
)
def test_a_failed_canary_stops_the_rollout_and_leaves_every_other_device_untouched(
    tmp_path: Path, devices: dict[str, Device], fault: str, check: str, detail: str
) -> None:
    devices["edge-1"].fault = fault
    result = _rollout(tmp_path, devices)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"health gate failed on edge-1: {check}" in output, output
    assert detail in output, output
    assert devices["edge-1"].requests
    for name in HOSTS[1:]:
        assert devices[name].requests == [], f"{name} was touched after the canary failed"
        assert name not in output.split("PLAY RECAP")[-1], output


def test_a_failure_in_a_later_batch_stops_before_the_next_one(
    tmp_path: Path, devices: dict[str, Device]
) -> None:
    devices["edge-2"].fault = "llm"
    result = _rollout(tmp_path, devices)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "health gate failed on edge-2: Every LLM model is listed" in output, output
    assert len(devices["edge-1"].requests) == 4
    assert devices["edge-3"].requests == []
    assert devices["edge-4"].requests == []


def test_batches_and_the_failure_budget_come_from_variables(
    tmp_path: Path, devices: dict[str, Device]
) -> None:
    """All at once with room for one failure: every device is checked, the failure reported."""
    devices["edge-3"].fault = "healthz"
    rollout = {"site_rollout_batches": ["100%"], "site_rollout_max_fail_percentage": 25}
    result = _rollout(tmp_path, devices, "-e", json.dumps(rollout))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output  # a failed host still fails the run
    assert "health gate failed on edge-3" in output
    assert all(device.requests for device in devices.values())
    starts = sorted(_first_and_last(device)[0] for device in devices.values())
    ends = sorted(_first_and_last(device)[1] for device in devices.values())
    assert starts[-1] < ends[0], "one batch: every device was started before any had finished"


def test_a_missing_ca_file_is_named(tmp_path: Path, devices: dict[str, Device]) -> None:
    result = _rollout(tmp_path, devices, "-e", "health_gate_ca_file=/nonexistent/ca.crt")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "health gate failed on edge-1: The CA certificate is there" in output, output
    assert "health_gate_ca_file /nonexistent/ca.crt does not exist on the device" in output
    assert all(device.requests == [] for device in devices.values())


def test_the_gate_is_skipped_in_check_mode(tmp_path: Path, devices: dict[str, Device]) -> None:
    result = _rollout(tmp_path, devices, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(device.requests == [] for device in devices.values())


def test_site_yml_documents_its_rollout_variables() -> None:
    play = yaml.safe_load((REPO / "playbooks/site.yml").read_text())[0]
    assert "site_rollout_batches" in play["serial"]
    assert "site_rollout_max_fail_percentage" in str(play["max_fail_percentage"])
    assert play["roles"][-1]["role"] == "edgeai.appliance.health_gate"
