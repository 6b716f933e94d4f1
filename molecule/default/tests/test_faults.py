"""Faults the appliance recovers from on its own, observed as a client through the gateway.

- the ONNX service's process dies: Docker's restart policy brings it back;
- the ONNX service hangs (frozen with SIGSTOP, so its healthcheck times out): Docker only marks it
  unhealthy, edgeai-autoheal (roles/recovery) restarts it;
- the edge host reboots (its container restarts): every service comes back with no converge.
"""

from __future__ import annotations

import json
import subprocess
import time

import requests
from appliance_lab import CA, INSTANCE, USER, gateway_url


def onnx_ready() -> bool:
    try:
        response = requests.get(
            gateway_url() + "/v2/health/ready", headers=USER, verify=CA, timeout=5
        )
    except requests.RequestException:
        return False
    return response.status_code == 200


def wait_for(predicate, timeout: float, step: float = 0.5) -> float | None:
    """Seconds until predicate() held, or None after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def inspect(host, name: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


def health(host, name: str) -> str:
    return inspect(host, name)["State"].get("Health", {}).get("Status", "none")


def appliance_health(host) -> dict[str, str]:
    ids = host.check_output("docker ps -aq --filter label=org.edgeai.appliance=true").split()
    return {
        c["Name"].lstrip("/"): (
            c["State"].get("Health", {}).get("Status", "running")
            if c["State"]["Status"] == "running"
            else c["State"]["Status"]  # an exited container keeps its last health status
        )
        for c in json.loads(host.check_output(f"docker inspect {' '.join(ids)}"))
    }


def test_a_killed_onnx_service_serves_again_within_30_s(host) -> None:
    assert wait_for(onnx_ready, 60) is not None, "not serving before the fault"
    before = inspect(host, "onnx-service")
    with host.sudo():
        host.check_output(f"kill -9 {before['State']['Pid']}")  # a crash, not a docker stop
    assert wait_for(lambda: not onnx_ready(), 10, 0.1) is not None, "the kill had no effect"
    took = wait_for(onnx_ready, 30)
    assert took is not None, "not serving 30 s after the crash"
    after = inspect(host, "onnx-service")
    assert after["RestartCount"] == before["RestartCount"] + 1
    assert after["State"]["Pid"] != before["State"]["Pid"]


def test_a_hung_onnx_service_is_restarted_by_autoheal(host) -> None:
    assert wait_for(lambda: health(host, "onnx-service") == "healthy", 90, 2) is not None
    before = inspect(host, "onnx-service")
    with host.sudo():
        host.check_output(f"kill -STOP {before['State']['Pid']}")
    # Docker notices (interval 10 s, timeout 5 s, 3 retries) but does not act on it ...
    assert wait_for(lambda: health(host, "onnx-service") == "unhealthy", 120, 2) is not None
    # ... edgeai-autoheal does: a new process, healthy again, serving through the gateway.
    assert wait_for(lambda: inspect(host, "onnx-service")["State"]["Pid"] not in
                    (before["State"]["Pid"], 0), 60, 1) is not None  # fmt: skip
    assert wait_for(onnx_ready, 90) is not None
    logs = host.check_output("journalctl -u edgeai-autoheal --no-pager -n 50")
    assert "onnx-service is unhealthy: restarting it" in logs
    metrics = host.file("/var/lib/edgeai/textfile/edgeai_containers.prom").content_string
    assert 'edgeai_autoheal_restarts_total{name="onnx-service",role="onnx_service"} ' in metrics
    line = next(
        m for m in metrics.splitlines()
        if m.startswith('edgeai_autoheal_restarts_total{name="onnx-service"')
    )  # fmt: skip
    assert int(line.rsplit(" ", 1)[1]) >= 1
    # the back-off state is on disk (kept across autoheal's own restarts), readable by root only
    state = host.file("/var/lib/edgeai-autoheal/state.json")
    with host.sudo():
        assert state.mode == 0o600
        restarts = json.loads(state.content_string)["restarts"]
    assert any(r["name"] == "onnx-service" and r["count"] >= 1 for r in restarts)


def test_after_a_host_restart_every_service_is_healthy_without_a_converge(host) -> None:
    # What a device does between reboots: the daily log rotation signals the gateway (and the
    # converge's handlers signalled Prometheus, Alertmanager and the blackbox exporter). A signal
    # sent through Docker's kill API would mark a container manually stopped, and `unless-stopped`
    # would leave it down after the reboot.
    with host.sudo():
        host.check_output("logrotate --force /etc/logrotate.d/edgeai-gateway")
    subprocess.run(["docker", "restart", "-t", "30", INSTANCE], check=True, timeout=120)
    deadline = time.monotonic() + 240
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            states = appliance_health(host)
        except (AssertionError, RuntimeError, json.JSONDecodeError):
            states = {}  # the engine is still starting
        if states and all(s == "healthy" for s in states.values()):
            break
        time.sleep(3)
    assert states, "no appliance container after the restart"
    assert all(s == "healthy" for s in states.values()), states
    assert wait_for(onnx_ready, 60) is not None
    for unit in ("docker", "edgeai-firewall", "edgeai-autoheal"):
        assert host.service(unit).is_running, unit
    with host.sudo():
        assert "policy drop" in host.check_output("nft list table inet edgeai")
