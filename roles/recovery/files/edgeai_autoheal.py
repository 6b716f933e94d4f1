#!/usr/bin/env python3
"""edgeai-autoheal: restart appliance containers that Docker reports unhealthy.

Docker's restart policies act on exits only; a container whose healthcheck fails keeps running.
This service polls the Docker API (the engine's unix socket; of the appliance's containers only
cAdvisor's GET-only API proxy mounts it, see roles/exporters/tasks/cadvisor_docker_api.yml),
restarts every labelled container that turned unhealthy (at most once per cool-down), and writes
the containers' state as a node_exporter textfile so that Prometheus sees restarts and health:

    edgeai_container_running{name,role}         1 while running
    edgeai_container_unhealthy{name,role}       1 while the healthcheck fails
    edgeai_container_restarts{name,role}   Docker's RestartCount
    edgeai_autoheal_restarts_total{name,role}   restarts made by this service

Standard library only: it runs on the host's python3.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("edgeai-autoheal")
METRICS_FILE = "edgeai_containers.prom"


class DockerError(RuntimeError):
    """The engine answered with an error or could not be reached."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class DockerClient:
    """The few Docker Engine API calls the service needs."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _request(self, method: str, path: str) -> Any:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
        except OSError as error:
            raise DockerError(f"{method} {path}: {error}") from error
        finally:
            conn.close()
        if response.status >= 300:
            raise DockerError(f"{method} {path}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body) if body else None

    def containers(self, label: str) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [label]})
        path = "/containers/json?all=1&filters=" + urllib.parse.quote(filters)
        return list(self._request("GET", path))

    def inspect(self, container_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/containers/{container_id}/json"))

    def restart(self, container_id: str, timeout: int) -> None:
        self._request("POST", f"/containers/{container_id}/restart?t={timeout}")


@dataclass
class ContainerState:
    name: str
    role: str
    running: bool
    unhealthy: bool
    restart_count: int


@dataclass
class Autoheal:
    docker: DockerClient
    label: str
    cooldown: float
    stop_timeout: int
    textfile_dir: Path | None
    clock: Any = time.monotonic
    last_restart: dict[str, float] = field(default_factory=dict)
    restarts: dict[tuple[str, str], int] = field(default_factory=dict)

    def states(self) -> list[ContainerState]:
        result = []
        for summary in self.docker.containers(self.label):
            try:
                info = self.docker.inspect(summary["Id"])
            except DockerError as error:  # removed between the list and the inspect
                LOG.debug("skipping %s: %s", summary["Id"][:12], error)
                continue
            state = info.get("State") or {}
            health = (state.get("Health") or {}).get("Status", "")
            labels = (info.get("Config") or {}).get("Labels") or {}
            result.append(
                ContainerState(
                    name=info.get("Name", "").lstrip("/"),
                    role=labels.get("org.edgeai.role", ""),
                    running=bool(state.get("Running")),
                    unhealthy=health == "unhealthy",
                    restart_count=int(info.get("RestartCount", 0)),
                )
            )
        return sorted(result, key=lambda s: s.name)

    def heal(self, states: list[ContainerState]) -> list[str]:
        """Restart the unhealthy running containers outside their cool-down; returns their names."""
        restarted = []
        now = self.clock()
        for state in states:
            if not (state.running and state.unhealthy):
                continue
            last = self.last_restart.get(state.name)
            if last is not None and now - last < self.cooldown:
                LOG.info("%s is unhealthy; restarted %.0f s ago, waiting", state.name, now - last)
                continue
            LOG.warning("%s is unhealthy: restarting it", state.name)
            try:
                self.docker.restart(state.name, self.stop_timeout)
            except DockerError as error:
                LOG.error("restarting %s failed: %s", state.name, error)
                continue
            self.last_restart[state.name] = now
            key = (state.name, state.role)
            self.restarts[key] = self.restarts.get(key, 0) + 1
            restarted.append(state.name)
        return restarted

    def metrics(self, states: list[ContainerState]) -> str:
        def labels(name: str, role: str) -> str:
            return f'name="{_escape(name)}",role="{_escape(role)}"'

        lines = []
        series = (
            ("edgeai_container_running", "gauge", "1 while the container runs.",
             lambda s: int(s.running)),
            ("edgeai_container_unhealthy", "gauge", "1 while the container's healthcheck fails.",
             lambda s: int(s.unhealthy)),
            ("edgeai_container_restarts", "gauge", "Docker's restart count of the container.",
             lambda s: s.restart_count),
        )  # fmt: skip
        for metric, kind, help_text, value in series:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            lines += [f"{metric}{{{labels(s.name, s.role)}}} {value(s)}" for s in states]
        metric = "edgeai_autoheal_restarts_total"
        lines += [
            f"# HELP {metric} Restarts of unhealthy containers made by edgeai-autoheal.",
            f"# TYPE {metric} counter",
        ]
        known = {(s.name, s.role) for s in states} | set(self.restarts)
        lines += [f"{metric}{{{labels(*k)}}} {self.restarts.get(k, 0)}" for k in sorted(known)]
        return "\n".join(lines) + "\n"

    def write_metrics(self, text: str) -> None:
        if self.textfile_dir is None:
            return
        # Atomic: node_exporter must never read a half-written file.
        fd, name = tempfile.mkstemp(dir=self.textfile_dir, prefix=".edgeai_containers.")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            tmp.chmod(0o644)
            tmp.replace(self.textfile_dir / METRICS_FILE)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def run_once(self) -> list[str]:
        states = self.states()
        restarted = self.heal(states)
        if restarted:
            states = self.states()
        self.write_metrics(self.metrics(states))
        return restarted


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="/var/run/docker.sock")
    parser.add_argument("--label", default="org.edgeai.appliance=true")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--cooldown", type=float, default=60.0)
    parser.add_argument("--stop-timeout", type=int, default=10)
    parser.add_argument("--textfile-dir", type=Path, default=None)
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    service = Autoheal(
        docker=DockerClient(args.socket),
        label=args.label,
        cooldown=args.cooldown,
        stop_timeout=args.stop_timeout,
        textfile_dir=args.textfile_dir,
    )
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("watching containers labelled %s every %.0f s", args.label, args.interval)
    while running:
        try:
            service.run_once()
        except DockerError as error:
            LOG.error("%s", error)
            if args.once:
                return 1
        if args.once:
            return 0
        deadline = time.monotonic() + args.interval
        while running and time.monotonic() < deadline:
            time.sleep(min(0.5, args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
