"""The stand-in over the role's real provisioning: Grafana's API answers behind /grafana."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from grafana_standin import VERSION, Settings, create_app
from grafana_standin.provisioning import ProvisioningError, load_datasources, load_providers

ROLE = Path(__file__).resolve().parents[4] / "roles/grafana"
ROLE_DASHBOARDS = {
    json.loads(p.read_text())["uid"]: (p.parent.name, json.loads(p.read_text()))
    for p in (ROLE / "files/dashboards").rglob("*.json")
}


def test_health_needs_no_login_and_says_standin(client: TestClient) -> None:
    answer = client.get("/grafana/api/health")
    assert answer.status_code == 200
    assert answer.json()["database"] == "ok"
    assert answer.json()["version"] == VERSION
    assert "standin" in VERSION
    assert answer.headers["x-standin"] == "grafana"


def test_the_api_needs_the_admin_password(client: TestClient, admin: tuple[str, str]) -> None:
    assert client.get("/grafana/api/datasources").status_code == 401
    assert client.get("/grafana/api/datasources").json() == {"message": "Unauthorized"}
    wrong = client.get("/grafana/api/datasources", auth=("admin", "admin"))
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "Invalid username or password"
    assert client.get("/grafana/api/search", auth=("root", admin[1])).status_code == 401
    assert client.get("/grafana/api/datasources", auth=admin).status_code == 200


def test_a_changed_password_file_applies_at_once(
    client: TestClient, tree: Path, admin: tuple[str, str]
) -> None:
    (tree / "admin_password").write_text("another long password\n")
    assert client.get("/grafana/api/search", auth=admin).status_code == 401
    assert client.get("/grafana/api/search", auth=("admin", "another long password")).is_success


def test_the_provisioned_datasource(client: TestClient, admin: tuple[str, str]) -> None:
    [ds] = client.get("/grafana/api/datasources", auth=admin).json()
    assert ds["uid"] == "edgeai-prometheus"
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090/prometheus"
    assert ds["isDefault"] is True
    assert ds["readOnly"] is True
    assert ds["jsonData"]["timeInterval"] == "15s"
    one = client.get("/grafana/api/datasources/uid/edgeai-prometheus", auth=admin)
    assert one.json() == ds
    assert client.get("/grafana/api/datasources/uid/nope", auth=admin).status_code == 404


def test_search_lists_folders_from_the_file_structure_then_dashboards(
    client: TestClient, admin: tuple[str, str]
) -> None:
    hits = client.get("/grafana/api/search", auth=admin).json()
    folders = [h for h in hits if h["type"] == "dash-folder"]
    dashboards = [h for h in hits if h["type"] == "dash-db"]
    assert [f["title"] for f in folders] == ["Appliance", "Components"]
    assert hits[: len(folders)] == folders
    assert {d["uid"]: d["folderTitle"] for d in dashboards} == {
        uid: folder for uid, (folder, _) in ROLE_DASHBOARDS.items()
    }
    overview = next(d for d in dashboards if d["uid"] == "edgeai-overview")
    assert overview["url"] == "/grafana/d/edgeai-overview/appliance-overview"
    assert overview["folderUid"] == folders[0]["uid"]


def test_search_filters(client: TestClient, admin: tuple[str, str]) -> None:
    def search(**params: str) -> list[dict]:
        answer = client.get("/grafana/api/search", params=params, auth=admin)
        assert answer.status_code == 200
        return answer.json()

    assert {h["type"] for h in search(type="dash-db")} == {"dash-db"}
    assert len(search(type="dash-db")) == len(ROLE_DASHBOARDS)
    assert [h["title"] for h in search(type="dash-folder")] == ["Appliance", "Components"]
    assert [h["uid"] for h in search(query="OVERVIEW", type="dash-db")] == ["edgeai-overview"]
    components = next(h for h in search(type="dash-folder") if h["title"] == "Components")
    in_components = search(type="dash-db", folderUIDs=components["uid"])
    assert {h["folderTitle"] for h in in_components} == {"Components"}
    assert len(in_components) == len(ROLE_DASHBOARDS) - 1
    assert [h["uid"] for h in search(tag="onnx")] == ["edgeai-onnx-service"]
    assert search(query="no such dashboard") == []
    assert client.get("/grafana/api/search?type=bogus", auth=admin).status_code == 400


@pytest.mark.parametrize("uid", sorted(ROLE_DASHBOARDS))
def test_every_dashboard_by_uid(client: TestClient, admin: tuple[str, str], uid: str) -> None:
    answer = client.get(f"/grafana/api/dashboards/uid/{uid}", auth=admin)
    assert answer.status_code == 200
    body = answer.json()
    folder, model = ROLE_DASHBOARDS[uid]
    assert {k: v for k, v in body["dashboard"].items() if k not in {"id", "version"}} == model
    assert body["meta"]["provisioned"] is True
    assert body["meta"]["folderTitle"] == folder
    assert body["meta"]["canSave"] is False
    assert body["meta"]["provisionedExternalId"].startswith(folder + "/")


def test_unknown_dashboard(client: TestClient, admin: tuple[str, str]) -> None:
    answer = client.get("/grafana/api/dashboards/uid/nope", auth=admin)
    assert answer.status_code == 404
    assert answer.json() == {"message": "Dashboard not found"}


def test_the_sub_path_is_stripped_only_as_a_whole_segment(client: TestClient) -> None:
    assert client.get("/api/health").status_code == 200
    assert client.get("/grafana/api/health").status_code == 200
    assert client.get("/grafanax/api/health").status_code == 404


def test_metrics_are_grafana_names_labelled_standin(
    client: TestClient, admin: tuple[str, str]
) -> None:
    client.get("/grafana/api/search", auth=admin)
    client.get("/grafana/api/search")
    text = client.get("/metrics").text
    assert (
        'grafana_build_info{branch="standin",edition="standin",goversion="none",'
        f'revision="standin",version="{VERSION}"}} 1.0' in text
    )
    assert f"grafana_stat_totals_dashboard {float(len(ROLE_DASHBOARDS))}" in text
    assert 'grafana_stat_totals_datasource{plugin_id="prometheus"} 1.0' in text
    assert (
        'grafana_http_request_duration_seconds_count{handler="/api/search",method="get",'
        'status_code="200"} 1.0' in text
    )
    assert 'handler="/api/search",method="get",status_code="401"' in text
    assert client.get("/grafana/metrics").status_code == 200


def test_new_dashboard_files_show_up_without_a_restart(
    client: TestClient, tree: Path, admin: tuple[str, str]
) -> None:
    extra = tree / "dashboards/Site/extra.json"
    extra.parent.mkdir()
    extra.write_text(json.dumps({"uid": "site-extra", "title": "Site extra", "panels": []}))
    hits = client.get("/grafana/api/search", params={"query": "site"}, auth=admin).json()
    assert [(h["type"], h["title"]) for h in hits] == [
        ("dash-folder", "Site"),
        ("dash-db", "Site extra"),
    ]


def test_dashboards_at_the_top_go_to_general_and_repeated_uids_are_left_out(
    client: TestClient, tree: Path, admin: tuple[str, str]
) -> None:
    (tree / "dashboards/top.json").write_text(json.dumps({"uid": "top", "title": "Top"}))
    (tree / "dashboards/Appliance/copy.json").write_text(
        json.dumps({"uid": "edgeai-overview", "title": "A copy"})
    )
    uids = {h["uid"]: h for h in client.get("/grafana/api/search?type=dash-db", auth=admin).json()}
    assert "folderUid" not in uids["top"]
    assert "edgeai-overview" not in uids
    meta = client.get("/grafana/api/dashboards/uid/top", auth=admin).json()["meta"]
    assert meta["folderTitle"] == "General"


def test_provisioning_grafana_refuses(tree: Path) -> None:
    datasources = tree / "provisioning/datasources"
    (datasources / "second.yaml").write_text(
        "apiVersion: 1\ndatasources:\n"
        "  - {name: Other, type: prometheus, url: http://x, isDefault: true}\n"
    )
    with pytest.raises(ProvisioningError, match="Only one datasource per organization"):
        load_datasources(tree / "provisioning")
    (datasources / "second.yaml").write_text(
        "apiVersion: 1\ndeleteDatasources:\n  - {name: Prometheus, orgId: 1}\n"
        "datasources:\n  - {name: Other, type: prometheus, url: '${PROM_URL}', isDefault: true}\n"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROM_URL", "http://from-env:9090")
        [only] = load_datasources(tree / "provisioning")
    assert (only.name, only.url, only.read_only) == ("Other", "http://from-env:9090", True)
    providers = tree / "provisioning/dashboards/edgeai.yaml"
    providers.write_text(providers.read_text().replace("orgId: 1", "orgId: 1\n    folder: X"))
    with pytest.raises(ProvisioningError, match="foldersFromFilesStructure"):
        load_providers(tree / "provisioning")


def test_settings_from_grafana_environment(
    tree: Path, monkeypatch: pytest.MonkeyPatch, admin: tuple[str, str]
) -> None:
    monkeypatch.setenv("GF_SERVER_ROOT_URL", "https://edge:30080/grafana/")
    monkeypatch.setenv("GF_SERVER_SERVE_FROM_SUB_PATH", "true")
    monkeypatch.setenv("GF_SERVER_HTTP_PORT", "3001")
    monkeypatch.setenv("GF_PATHS_PROVISIONING", str(tree / "provisioning"))
    monkeypatch.setenv("GF_SECURITY_ADMIN_USER", "boss")
    monkeypatch.setenv("GF_SECURITY_ADMIN_PASSWORD__FILE", str(tree / "admin_password"))
    settings = Settings.from_env()
    assert (settings.port, settings.sub_path, settings.admin_user) == (3001, "/grafana", "boss")
    assert settings.admin_password() == admin[1]
    with TestClient(create_app(settings)) as c:
        assert c.get("/grafana/api/search", auth=("boss", admin[1])).status_code == 200
    monkeypatch.setenv("GF_SERVER_SERVE_FROM_SUB_PATH", "false")
    assert Settings.from_env().sub_path == ""


def test_no_password_no_start(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GF_SECURITY_ADMIN_PASSWORD__FILE", raising=False)
    monkeypatch.delenv("GF_SECURITY_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("GF_PATHS_PROVISIONING", str(tree / "provisioning"))
    with pytest.raises(RuntimeError, match="no admin password"):
        Settings.from_env()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_wrong_admin_passwords_lock_the_admin_out_for_five_minutes(
    settings: Settings, admin: tuple[str, str]
) -> None:
    """pkg/services/loginattempt/loginattemptimpl/login_attempt.go Validate/Add and
    pkg/services/authn/clients/password.go AuthenticatePassword: wrong passwords of an existing
    user count (name lower-cased); at 5 within 5 minutes even the right one is refused."""
    clock = Clock()
    with TestClient(create_app(settings, clock=clock)) as c:
        for _ in range(4):
            assert c.get("/grafana/api/search", auth=("ADMIN", "wrong")).status_code == 401
        assert c.get("/grafana/api/search", auth=admin).status_code == 200  # 4: not yet
        assert c.get("/grafana/api/search", auth=("admin", "wrong")).status_code == 401
        locked = c.get("/grafana/api/search", auth=admin)
        assert (locked.status_code, locked.json()) == (
            401,
            {"message": "Invalid username or password"},
        )
        clock.now += 299
        assert c.get("/grafana/api/search", auth=admin).status_code == 401
        clock.now += 2  # the first attempts are older than 5 minutes now
        assert c.get("/grafana/api/search", auth=admin).status_code == 200


def test_unknown_users_and_missing_logins_do_not_count(
    settings: Settings, admin: tuple[str, str]
) -> None:
    with TestClient(create_app(settings, clock=Clock())) as c:
        for _ in range(10):
            assert c.get("/grafana/api/search", auth=("nobody", "wrong")).status_code == 401
            assert c.get("/grafana/api/search").status_code == 401
        assert c.get("/grafana/api/search", auth=admin).status_code == 200


def test_lockout_settings_from_the_environment(
    tree: Path, monkeypatch: pytest.MonkeyPatch, admin: tuple[str, str]
) -> None:
    monkeypatch.setenv("GF_PATHS_PROVISIONING", str(tree / "provisioning"))
    monkeypatch.setenv("GF_SECURITY_ADMIN_PASSWORD__FILE", str(tree / "admin_password"))
    monkeypatch.setenv("GF_SECURITY_BRUTE_FORCE_LOGIN_PROTECTION_MAX_ATTEMPTS", "2")
    with TestClient(create_app(Settings.from_env(), clock=Clock())) as c:
        for _ in range(2):
            c.get("/api/search", auth=("admin", "wrong"))
        assert c.get("/api/search", auth=admin).status_code == 401
    monkeypatch.setenv("GF_SECURITY_DISABLE_BRUTE_FORCE_LOGIN_PROTECTION", "true")
    with TestClient(create_app(Settings.from_env(), clock=Clock())) as c:
        for _ in range(10):
            c.get("/api/search", auth=("admin", "wrong"))
        assert c.get("/api/search", auth=admin).status_code == 200
