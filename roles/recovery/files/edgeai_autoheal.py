#!/usr/bin/env python3
"""edgeai-autoheal: restart appliance containers that Docker reports unhealthy.

Docker's restart policies act on exits only; a container whose healthcheck fails keeps running.
This service polls the Docker API (the engine's unix socket; of the appliance's containers only
cAdvisor's GET-only API proxy mounts it, see roles/exporters/tasks/cadvisor_docker_api.yml),
restarts every labelled container that turned unhealthy, and writes the containers' state as a
node_exporter textfile so that Prometheus sees restarts and health.

Restarts back off exponentially: after a restart a container gets the cool-down to recover, and
each further restart without it turning healthy in between doubles that wait, up to a cap
(cool-down 60 s: 60, 120, 240, ... up to --backoff-max). A container that turns healthy starts
over. This state (and the restart counts) is kept in --state-file, so a restart of this service
(or of the host) does not reset the back-off into a restart loop.

Metrics:

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
    healthy: bool = False


@dataclass
class Backoff:
    """Restarts of one container since it was last seen healthy."""

    streak: int = 0
    last_restart: float = 0.0


@dataclass
class Autoheal:
    docker: DockerClient
    label: str
    cooldown: float
    stop_timeout: int
    textfile_dir: Path | None
    backoff_max: float = 900.0
    state_file: Path | None = None
    clock: Any = time.time  # wall clock: the stamps are kept across restarts of this service
    backoff: dict[str, Backoff] = field(default_factory=dict)
    restarts: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.load_state()

    def wait_for(self, streak: int) -> float:
        """Seconds a container must be left alone after its ``streak``-th restart in a row."""
        return min(self.cooldown * 2 ** max(streak - 1, 0), self.backoff_max)

    def load_state(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text())
            self.backoff = {
                name: Backoff(int(b["streak"]), float(b["last_restart"]))
                for name, b in data["backoff"].items()
            }
            self.restarts = {(r["name"], r["role"]): int(r["count"]) for r in data["restarts"]}
        except (OSError, ValueError, KeyError, TypeError) as error:
            LOG.warning("ignoring unreadable state %s: %s", self.state_file, error)
            self.backoff, self.restarts = {}, {}

    def save_state(self) -> None:
        if self.state_file is None:
            return
        data = {
            "backoff": {
                name: {"streak": b.streak, "last_restart": b.last_restart}
                for name, b in sorted(self.backoff.items())
            },
            "restarts": [
                {"name": name, "role": role, "count": count}
                for (name, role), count in sorted(self.restarts.items())
            ],
        }
        _write_atomic(self.state_file, json.dumps(data, indent=1) + "\n", 0o600)

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
                    healthy=health == "healthy",
                )
            )
        return sorted(result, key=lambda s: s.name)

    def heal(self, states: list[ContainerState]) -> list[str]:
        """Restart the unhealthy running containers whose back-off has run out; returns their
        names. A healthy container's back-off starts over."""
        restarted = []
        now = self.clock()
        changed = False
        for state in states:
            backoff = self.backoff.get(state.name)
            if state.healthy and backoff is not None and backoff.streak:
                LOG.info("%s is healthy again after %d restart(s)", state.name, backoff.streak)
                del self.backoff[state.name]
                changed = True
            if not (state.running and state.unhealthy):
                continue
            if backoff is not None and backoff.streak:
                wait = self.wait_for(backoff.streak)
                waited = now - backoff.last_restart
                if 0 <= waited < wait:
                    LOG.info(
                        "%s is unhealthy; restarted %d time(s) in a row, the last %.0f s ago: "
                        "waiting %.0f s",
                        state.name, backoff.streak, waited, wait,
                    )  # fmt: skip
                    continue
            LOG.warning("%s is unhealthy: restarting it", state.name)
            try:
                self.docker.restart(state.name, self.stop_timeout)
            except DockerError as error:
                LOG.error("restarting %s failed: %s", state.name, error)
                continue
            streak = backoff.streak if backoff is not None else 0
            self.backoff[state.name] = Backoff(streak + 1, now)
            key = (state.name, state.role)
            self.restarts[key] = self.restarts.get(key, 0) + 1
            restarted.append(state.name)
            changed = True
        if changed:
            self.save_state()
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
        _write_atomic(self.textfile_dir / METRICS_FILE, text, 0o644)

    def run_once(self) -> list[str]:
        states = self.states()
        restarted = self.heal(states)
        if restarted:
            states = self.states()
        self.write_metrics(self.metrics(states))
        return restarted


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` in one rename: a reader sees the old or the new file, never a part."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="/var/run/docker.sock")
    parser.add_argument("--label", default="org.edgeai.appliance=true")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument(
        "--cooldown", type=float, default=60.0, help="seconds after a restart (the base wait)"
    )
    parser.add_argument(
        "--backoff-max", type=float, default=900.0, help="cap of the doubling wait (seconds)"
    )
    parser.add_argument(
        "--state-file", type=Path, default=None, help="back-off state kept across restarts"
    )
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
        backoff_max=max(args.backoff_max, args.cooldown),
        state_file=args.state_file,
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
