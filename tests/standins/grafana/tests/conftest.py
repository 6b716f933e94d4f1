"""Fixtures: the role's real provisioning (its templates rendered with the role's defaults, its
dashboard files) in a temporary tree, and a stand-in app over it behind /grafana."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
import yaml

STANDIN_ROOT = Path(__file__).resolve().parents[1]
if str(STANDIN_ROOT) not in sys.path:
    sys.path.insert(0, str(STANDIN_ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from grafana_standin import Settings, create_app  # noqa: E402

ROLE = Path(__file__).resolve().parents[4] / "roles/grafana"
PASSWORD = "correct horse battery staple"


def render_role_template(name: str, dashboards_dir: Path) -> str:
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    internal = yaml.safe_load((ROLE / "vars/main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    values = {
        **defaults,
        "ansible_managed": "Ansible managed",
        "__grafana_dashboards_dir": str(dashboards_dir),
    }
    assert "__grafana_dashboards_dir" in internal
    return env.from_string((ROLE / "templates" / name).read_text()).render(values)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """<tmp>/provisioning/{datasources,dashboards}, <tmp>/dashboards/<folder>/*.json, password."""
    dashboards = tmp_path / "dashboards"
    shutil.copytree(ROLE / "files/dashboards", dashboards)
    for kind, template in (
        ("datasources", "datasources.yaml.j2"),
        ("dashboards", "dashboards.yaml.j2"),
    ):
        target = tmp_path / "provisioning" / kind
        target.mkdir(parents=True)
        (target / "edgeai.yaml").write_text(render_role_template(template, dashboards))
    (tmp_path / "admin_password").write_text(PASSWORD)
    return tmp_path


@pytest.fixture
def settings(tree: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=3000,
        sub_path="/grafana",
        root_url="https://edge.example:30080/grafana/",
        provisioning=tree / "provisioning",
        admin_user="admin",
        password_file=tree / "admin_password",
        password="",
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def admin() -> tuple[str, str]:
    return ("admin", PASSWORD)
