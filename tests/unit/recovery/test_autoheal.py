"""edgeai-autoheal against a fake Docker Engine API served on a unix socket.

The fake speaks the three calls the service uses (list with a label filter, inspect, restart) with
the Engine API's shapes; the service's own HTTP client, filter encoding and metrics file are real.
"""

from __future__ import annotations

import importlib.util
import json
import socketserver
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location(
    "edgeai_autoheal", REPO / "roles/recovery/files/edgeai_autoheal.py"
)
assert _spec is not None
assert _spec.loader is not None
autoheal = importlib.util.module_from_spec(_spec)
sys.modules["edgeai_autoheal"] = autoheal  # dataclasses look their module up
_spec.loader.exec_module(autoheal)


class FakeEngine:
    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.restarts: list[tuple[str, str]] = []
        self.list_filters: list[dict[str, Any]] = []

    def add(self, name: str, role: str, *, health: str | None, running: bool = True,
            restarts: int = 0, appliance: bool = True) -> None:  # fmt: skip
        labels = {"org.edgeai.role": role}
        if appliance:
            labels["org.edgeai.appliance"] = "true"
        state: dict[str, Any] = {"Running": running, "Status": "running" if running else "exited"}
        if health is not None:
            state["Health"] = {"Status": health}
        self.containers[name] = {
            "Id": f"{name}-id",
            "Name": f"/{name}",
            "State": state,
            "RestartCount": restarts,
            "Config": {"Labels": labels},
        }

    def by_ref(self, ref: str) -> dict[str, Any] | None:
        for name, info in self.containers.items():
            if ref in (name, info["Id"]):
                return info
        return None


class _Handler(BaseHTTPRequestHandler):
    engine: FakeEngine

    def log_message(self, *_: object) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/containers/json":
            query = urllib.parse.parse_qs(url.query)
            filters = json.loads(query["filters"][0])
            self.engine.list_filters.append(filters)
            key, _, value = filters["label"][0].partition("=")
            found = [
                {"Id": c["Id"], "Names": [c["Name"]]}
                for c in self.engine.containers.values()
                if c["Config"]["Labels"].get(key) == value
            ]
            self._send(200, found)
            return
        parts = url.path.split("/")
        if len(parts) == 4 and parts[1] == "containers" and parts[3] == "json":
            info = self.engine.by_ref(parts[2])
            if info is None:
                self._send(404, {"message": f"No such container: {parts[2]}"})
            else:
                self._send(200, info)
            return
        self._send(404, {"message": "page not found"})

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.split("/")
        if len(parts) == 4 and parts[1] == "containers" and parts[3] == "restart":
            info = self.engine.by_ref(parts[2])
            if info is None:
                self._send(404, {"message": f"No such container: {parts[2]}"})
                return
            timeout = urllib.parse.parse_qs(url.query)["t"][0]
            self.engine.restarts.append((info["Name"].lstrip("/"), timeout))
            info["State"]["Health"] = {"Status": "starting"}
            info["RestartCount"] = int(info["RestartCount"])  # a restart by the API does not count
            self.send_response(204)
            self.end_headers()
            return
        self._send(404, {"message": "page not found"})


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[FakeEngine, str]]:
    fake = FakeEngine()
    handler = type("Handler", (_Handler,), {"engine": fake})
    path = str(tmp_path / "docker.sock")
    server = _UnixServer(path, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, path
    server.shutdown()
    server.server_close()


def _service(sock: str, textfile_dir: Path | None, clock: list[float]) -> Any:
    return autoheal.Autoheal(
        docker=autoheal.DockerClient(sock, timeout=5),
        label="org.edgeai.appliance=true",
        cooldown=60,
        stop_timeout=7,
        textfile_dir=textfile_dir,
        clock=lambda: clock[0],
    )


def test_restarts_only_unhealthy_running_appliance_containers(
    engine: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    fake, sock = engine
    fake.add("onnx-service", "onnx_service", health="unhealthy")
    fake.add("gateway", "gateway", health="healthy")
    fake.add("ollama", "ollama", health="starting")
    fake.add("old-exporter", "exporters", health="unhealthy", running=False)
    fake.add("someone-else", "x", health="unhealthy", appliance=False)
    service = _service(sock, tmp_path, [100.0])

    assert service.run_once() == ["onnx-service"]
    assert fake.restarts == [("onnx-service", "7")]
    assert fake.list_filters[0] == {"label": ["org.edgeai.appliance=true"]}


def test_a_container_is_restarted_at_most_once_per_cooldown(
    engine: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    fake, sock = engine
    fake.add("onnx-service", "onnx_service", health="unhealthy")
    clock = [100.0]
    service = _service(sock, tmp_path, clock)
    assert service.run_once() == ["onnx-service"]

    fake.containers["onnx-service"]["State"]["Health"]["Status"] = "unhealthy"
    clock[0] = 130.0
    assert service.run_once() == []
    clock[0] = 161.0
    assert service.run_once() == ["onnx-service"]
    assert [name for name, _ in fake.restarts] == ["onnx-service", "onnx-service"]


def test_metrics_file_describes_every_container(
    engine: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    fake, sock = engine
    fake.add("onnx-service", "onnx_service", health="unhealthy", restarts=3)
    fake.add("gateway", "gateway", health="healthy")
    fake.add("exporter", "exporters", health=None, running=False)
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    service = _service(sock, textfile_dir, [0.0])
    service.run_once()

    text = (textfile_dir / "edgeai_containers.prom").read_text()
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    onnx = 'name="onnx-service",role="onnx_service"'
    assert samples[f"edgeai_container_running{{{onnx}}}"] == "1"
    # After the restart the healthcheck starts over: no longer unhealthy.
    assert samples[f"edgeai_container_unhealthy{{{onnx}}}"] == "0"
    assert samples[f"edgeai_container_restarts{{{onnx}}}"] == "3"
    assert samples[f"edgeai_autoheal_restarts_total{{{onnx}}}"] == "1"
    assert samples['edgeai_container_running{name="exporter",role="exporters"}'] == "0"
    assert samples['edgeai_autoheal_restarts_total{name="gateway",role="gateway"}'] == "0"
    assert "# TYPE edgeai_autoheal_restarts_total counter" in text
    assert (textfile_dir / "edgeai_containers.prom").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in textfile_dir.iterdir()] == ["edgeai_containers.prom"]
    # The exposition format as Prometheus's own linter reads it.
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_label_values_are_escaped() -> None:
    assert autoheal._escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_an_unreachable_engine_is_an_error_not_a_crash(tmp_path: Path) -> None:
    client = autoheal.DockerClient(str(tmp_path / "missing.sock"), timeout=1)
    with pytest.raises(autoheal.DockerError, match="No such file"):
        client.containers("org.edgeai.appliance=true")
    assert autoheal.main(["--socket", str(tmp_path / "missing.sock"), "--once"]) == 1


def test_engine_errors_are_reported(engine: tuple[FakeEngine, str]) -> None:
    _, sock = engine
    client = autoheal.DockerClient(sock, timeout=5)
    with pytest.raises(autoheal.DockerError, match="HTTP 404"):
        client.restart("nope", 5)


def _unhealthy_again(fake: FakeEngine, name: str) -> None:
    fake.containers[name]["State"]["Health"]["Status"] = "unhealthy"


def test_restarts_back_off_exponentially_up_to_the_cap(
    engine: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    fake, sock = engine
    fake.add("onnx-service", "onnx_service", health="unhealthy")
    clock = [1000.0]
    service = _service(sock, tmp_path, clock)
    service.backoff_max = 200
    restarts_at = []
    for second in range(1000, 1800):  # a container that never recovers, polled every second
        clock[0] = float(second)
        _unhealthy_again(fake, "onnx-service")
        if service.run_once():
            restarts_at.append(second)
    # waits of 60, 120, then the 200 s cap
    assert restarts_at == [1000, 1060, 1180, 1380, 1580, 1780]


def test_a_healthy_container_starts_its_back_off_over(
    engine: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    fake, sock = engine
    fake.add("onnx-service", "onnx_service", health="unhealthy")
    clock = [0.0]
    service = _service(sock, tmp_path, clock)
    assert service.run_once() == ["onnx-service"]
    clock[0] = 60.0
    _unhealthy_again(fake, "onnx-service")
    assert service.run_once() == ["onnx-service"]  # second in a row: the next wait is 120 s
    clock[0] = 100.0
    fake.containers["onnx-service"]["State"]["Health"]["Status"] = "healthy"
    service.run_once()
    clock[0] = 170.0  # 110 s after the last restart: within 120, but it was healthy in between
    _unhealthy_again(fake, "onnx-service")
    assert service.run_once() == ["onnx-service"]


def test_back_off_and_counts_survive_a_restart_of_autoheal(
    engine: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    fake, sock = engine
    fake.add("onnx-service", "onnx_service", health="unhealthy")
    state = tmp_path / "state" / "autoheal.json"
    state.parent.mkdir()
    clock = [100.0]
    first = _service(sock, tmp_path, clock)
    first.state_file = state
    assert first.run_once() == ["onnx-service"]
    assert state.stat().st_mode & 0o777 == 0o600

    # edgeai-autoheal restarts (a crash, an upgrade, a reboot): the same state file
    clock[0] = 130.0
    _unhealthy_again(fake, "onnx-service")
    second = autoheal.Autoheal(
        docker=autoheal.DockerClient(sock, timeout=5),
        label="org.edgeai.appliance=true",
        cooldown=60,
        stop_timeout=7,
        textfile_dir=tmp_path,
        state_file=state,
        clock=lambda: clock[0],
    )
    assert second.run_once() == []  # still within the cool-down of the restart before
    clock[0] = 161.0
    assert second.run_once() == ["onnx-service"]
    text = (tmp_path / "edgeai_containers.prom").read_text()
    assert 'edgeai_autoheal_restarts_total{name="onnx-service",role="onnx_service"} 2' in text
    assert second.wait_for(second.backoff["onnx-service"].streak) == 120


def test_an_unreadable_state_file_starts_over(
    engine: tuple[FakeEngine, str], tmp_path: Path
) -> None:
    fake, sock = engine
    fake.add("onnx-service", "onnx_service", health="unhealthy")
    state = tmp_path / "autoheal.json"
    state.write_text("{not json")
    service = autoheal.Autoheal(
        docker=autoheal.DockerClient(sock, timeout=5),
        label="org.edgeai.appliance=true",
        cooldown=60,
        stop_timeout=7,
        textfile_dir=None,
        state_file=state,
        clock=lambda: 0.0,
    )
    assert service.run_once() == ["onnx-service"]
    assert json.loads(state.read_text())["backoff"]["onnx-service"]["streak"] == 1
