"""Grafana through the gateway with the vaulted password (the lab runs the Grafana stand-in; the
same requests work against Grafana itself), and the container and its password file locked down."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from appliance_lab import CA, SECRETS, gateway_url

GRAFANA = gateway_url() + "/grafana"
ADMIN = ("admin", SECRETS["grafana_password"])
REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = {
    json.loads(p.read_text())["uid"]: p.parent.name
    for p in (REPO / "roles/grafana/files/dashboards").rglob("*.json")
}


def get(path: str, **kwargs) -> requests.Response:
    return requests.get(GRAFANA + path, verify=CA, timeout=30, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def grafana_ready() -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if get("/api/health").status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    pytest.fail("Grafana did not answer /grafana/api/health through the gateway within 120 s")


def test_health_through_the_gateway() -> None:
    answer = get("/api/health")
    assert answer.status_code == 200
    assert answer.json()["database"] == "ok"


# Grafana locks a user out after 5 wrong passwords within 5 minutes
# (pkg/services/loginattempt/loginattemptimpl/login_attempt.go), and the lab's stand-in does the
# same: wrong logins here use a name that is no user (those are not counted), so a rerun within
# 5 minutes finds the admin able to log in. The lockout itself is tested on the stand-in.
@pytest.mark.parametrize(
    "auth",
    [None, ("edgeai-no-such-user", "admin"), ("edgeai-no-such-user", SECRETS["grafana_password"])],
)
def test_no_or_wrong_login_is_401(auth: tuple[str, str] | None) -> None:
    for path in ("/api/datasources", "/api/search"):
        answer = get(path, auth=auth)
        assert answer.status_code == 401
        assert answer.json()["message"] in ("Unauthorized", "Invalid username or password")


def test_the_vaulted_password_lists_the_prometheus_datasource() -> None:
    answer = get("/api/datasources", auth=ADMIN)
    assert answer.status_code == 200
    [datasource] = answer.json()
    assert datasource["uid"] == "edgeai-prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090/prometheus"
    assert datasource["readOnly"] is True


def test_the_dashboards_are_listed_in_their_folders() -> None:
    hits = get("/api/search", auth=ADMIN).json()
    folders = {h["title"] for h in hits if h["type"] == "dash-folder"}
    assert folders == set(DASHBOARDS.values())
    listed = {h["uid"]: h["folderTitle"] for h in hits if h["type"] == "dash-db"}
    assert listed == DASHBOARDS


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_each_dashboard_by_uid(uid: str) -> None:
    answer = get(f"/api/dashboards/uid/{uid}", auth=ADMIN)
    assert answer.status_code == 200
    body = answer.json()
    assert body["dashboard"]["uid"] == uid
    assert body["meta"]["provisioned"] is True
    assert body["meta"]["folderTitle"] == DASHBOARDS[uid]
    assert body["dashboard"]["panels"]


def test_grafana_runs_unprivileged(host) -> None:
    [container] = json.loads(host.check_output("docker inspect grafana"))
    assert container["Config"]["User"] == "472:472"
    assert container["Config"]["Labels"]["org.edgeai.role"] == "grafana"
    env = dict(e.split("=", 1) for e in container["Config"]["Env"])
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env, "the password travels as a file, not in env"
    assert env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert env["GF_SERVER_ROOT_URL"].endswith("/grafana/")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # no plugin downloads from grafana.com at each start (Grafana 12's preinstall)
    assert env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"
    networks = set(container["NetworkSettings"]["Networks"])
    assert networks == {"edge_mon", "edge_host_grafana"}
    ports = container["HostConfig"]["PortBindings"]["3000/tcp"]
    assert ports == [{"HostIp": "127.0.0.1", "HostPort": "3007"}]
    secret = next(m for m in container["Mounts"] if m["Destination"].startswith("/run/secrets/"))
    assert secret["RW"] is False


def test_the_password_file_is_0440_or_tighter(host) -> None:
    password = host.file("/opt/edgeai/grafana/secrets/admin_password")
    assert password.user == "root"
    assert password.gid == 472
    assert password.mode & 0o337 == 0, oct(password.mode)
    assert host.file("/opt/edgeai/grafana/secrets").mode & 0o007 == 0


def test_grafana_is_a_prometheus_target(host) -> None:
    fragment = host.file("/opt/edgeai/prometheus/targets/grafana.yml")
    assert fragment.mode == 0o644
    assert "job: grafana" in fragment.content_string
    assert "grafana:3000" in fragment.content_string
    metrics = host.check_output("docker exec gateway curl -fsS http://grafana:3000/metrics")
    assert "grafana_build_info" in metrics
