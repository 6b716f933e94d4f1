"""The stand-in's HTML front: login, the dashboards list, panels drawn from Prometheus data."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient
from grafana_standin import Settings, create_app
from grafana_standin.front import BANNER, PALETTE, render_panel
from PIL import Image

EMPTY = "edgeai_no_such_metric"
FLAT = "edgeai_flat_metric"


class FakePrometheus:
    """/api/v1/query_range: a rising line per query over the asked range; EMPTY has no data."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.queries.append(params["query"])
                start, end = float(params["start"]), float(params["end"])
                steps = range(int((end - start) // 60))
                flat = FLAT in params["query"]
                values = [[start + i * 60, "0" if flat else str(i % 7 + 1)] for i in steps]
                result = [] if EMPTY in params["query"] else [
                    {"metric": {"job": "gateway"}, "values": values}
                ]  # fmt: skip
                body = json.dumps({"status": "success", "data": {"resultType": "matrix",
                                                                 "result": result}})  # fmt: skip
                assert url.path == "/prometheus/api/v1/query_range"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/prometheus"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.server.shutdown()


@pytest.fixture
def web(settings: Settings, tree: Path, prometheus: FakePrometheus) -> Iterator[TestClient]:
    datasources = tree / "provisioning/datasources/edgeai.yaml"
    datasources.write_text(
        datasources.read_text().replace("http://prometheus:9090/prometheus", prometheus.url)
    )
    extra = tree / "dashboards/Site/empty.json"
    extra.parent.mkdir()
    extra.write_text(json.dumps({
        "uid": "site-empty", "title": "Site empty",
        "templating": {"list": [
            {"name": "host", "type": "query", "includeAll": True, "allValue": ".*",
             "multi": True, "current": {"text": "All", "value": "$__all"}},
            {"name": "job", "type": "custom", "multi": True,
             "current": {"text": "gateway + onnx.x", "value": ["gateway", "onnx.x"]}},
        ]},
        "panels": [{"id": 1, "type": "timeseries", "title": "Nothing",
                    "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
                    "targets": [{"expr": f"rate({EMPTY}[$__rate_interval])"}]},
                   {"id": 2, "type": "timeseries", "title": "Flat",
                    "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8},
                    "targets": [{"expr": FLAT}]},
                   {"id": 3, "type": "timeseries", "title": "Variables",
                    "gridPos": {"x": 0, "y": 8, "w": 12, "h": 8},
                    "targets": [{"expr": 'sum by (job) (up{host=~"$host", job=~"${job}"})'}]}],
    }))  # fmt: skip
    # https: the session cookie is Secure, as the root URL is https
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client


def log_in(web: TestClient, admin: tuple[str, str]) -> None:
    answer = web.post(
        "/grafana/login", data={"user": admin[0], "password": admin[1]}, follow_redirects=False
    )
    assert answer.status_code == 302
    assert answer.headers["location"] == "/grafana/"
    assert "grafana_session=" in answer.headers["set-cookie"]
    assert "HttpOnly" in answer.headers["set-cookie"]
    assert "Secure" in answer.headers["set-cookie"]  # root_url is https


def palette_pixels(png: bytes) -> int:
    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    colours = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in PALETTE]
    count = 0
    for pixel in zip(data[0::3], data[1::3], data[2::3], strict=True):
        if any(sum(abs(a - b) for a, b in zip(pixel, c, strict=True)) < 40 for c in colours):
            count += 1
    return count


def test_pages_need_the_login_and_say_they_are_the_standin(web: TestClient) -> None:
    home = web.get("/grafana/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (302, "/grafana/login")
    form = web.get("/grafana/login")
    assert form.status_code == 200
    assert BANNER in form.text
    assert "<form method='post' action='/grafana/login'>" in form.text
    assert web.get("/grafana/render/panel/edgeai-overview/2.png").status_code == 401


def test_a_wrong_password_shows_the_form_again(web: TestClient) -> None:
    answer = web.post("/grafana/login", data={"user": "admin", "password": "wrong"})
    assert answer.status_code == 401
    assert "Invalid username or password" in answer.text
    assert "grafana_session" not in answer.headers.get("set-cookie", "")


def test_the_json_login_api_answers_like_grafana(web: TestClient, admin: tuple[str, str]) -> None:
    answer = web.post("/grafana/login", json={"user": admin[0], "password": admin[1]})
    assert answer.json() == {"message": "Logged in", "redirectUrl": "/grafana/"}
    assert web.get("/grafana/").status_code == 200


def test_the_home_page_lists_folders_and_dashboards(
    web: TestClient, admin: tuple[str, str]
) -> None:
    log_in(web, admin)
    home = web.get("/grafana/")
    assert BANNER in home.text
    folders = re.findall(r"<h2 class='folder'>([^<]+)</h2>", home.text)
    assert folders == ["Appliance", "Components", "Site"]
    assert "href='/grafana/d/edgeai-overview/appliance-overview'" in home.text


def test_a_dashboard_shows_its_panels_in_grid_order(
    web: TestClient, admin: tuple[str, str]
) -> None:
    log_in(web, admin)
    page = web.get("/grafana/d/edgeai-overview/appliance-overview")
    assert page.status_code == 200
    assert BANNER in page.text
    model = web.get("/grafana/api/dashboards/uid/edgeai-overview", auth=admin).json()["dashboard"]
    expected = []
    for panel in sorted(model["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        expected.append(panel["title"])
        if panel["type"] == "row":
            nested = sorted(
                panel.get("panels", []), key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])
            )
            expected += [p["title"] for p in nested]
    shown = re.findall(r"(?:data-panel='([^']*)'|<div class='row'[^>]*>([^<]*)</div>)", page.text)
    assert [a or b for a, b in shown] == expected
    images = re.findall(r"<img src='([^']+)'", page.text)
    panels = [p for p in expected if p]
    assert len(images) == len([t for t in shown if t[0]])
    assert panels


def test_panels_are_drawn_from_the_datasource(
    web: TestClient, admin: tuple[str, str], prometheus: FakePrometheus
) -> None:
    log_in(web, admin)
    page = web.get("/grafana/d/edgeai-overview/appliance-overview").text
    first = re.findall(r"<img src='([^']+)'", page)[1]
    png = web.get(first)
    assert png.headers["content-type"] == "image/png"
    assert int(png.headers["x-panel-series"]) >= 1
    assert palette_pixels(png.content) > 50
    # Grafana's interval variables resolved for the hour at a 60 s step
    assert all("$__" not in q for q in prometheus.queries)
    assert any("[75s]" in q for q in prometheus.queries)


def test_template_variables_are_interpolated_as_grafana_does(
    web: TestClient, admin: tuple[str, str], prometheus: FakePrometheus
) -> None:
    log_in(web, admin)
    png = web.get("/grafana/render/panel/site-empty/3.png")
    assert png.status_code == 200
    assert png.headers["x-panel-series"] == "1"
    # "All" with allValue .* (the appliance's `host`); a variable with two values chosen
    assert prometheus.queries[-1] == 'sum by (job) (up{host=~".*", job=~"(gateway|onnx\\.x)"})'


def test_a_panel_without_data_is_drawn_as_no_data(web: TestClient, admin: tuple[str, str]) -> None:
    log_in(web, admin)
    png = web.get("/grafana/render/panel/site-empty/1.png")
    assert png.status_code == 200
    assert png.headers["x-panel-series"] == "0"
    assert palette_pixels(png.content) == 0


def test_a_flat_series_is_drawn_in_whole_pixels_of_its_colour(
    web: TestClient, admin: tuple[str, str]
) -> None:
    """A constant series is a horizontal line: thin, it would be only blended pixels."""
    log_in(web, admin)
    png = web.get("/grafana/render/panel/site-empty/2.png")
    assert png.headers["x-panel-series"] == "1"
    assert palette_pixels(png.content) > 50


def test_panels_drawn_at_the_same_time_are_each_whole(prometheus: FakePrometheus) -> None:
    """FastAPI draws each panel on a thread of its pool, and a browser asks for a dashboard's
    panels at once: on a busy host their drawing overlaps, and each must still come out whole
    (the stand-in draws with matplotlib's Figure API: pyplot keeps one global figure registry)."""
    panel = {"type": "timeseries", "targets": [{"expr": "rate(x[5m])"}], "gridPos": {"w": 12}}
    results: list[tuple[bytes, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def draw() -> None:
        start.wait()
        try:
            for _ in range(3):
                results.append(render_panel(panel, prometheus.url, 1_700_000_000.0))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == 12
    alone = palette_pixels(render_panel(panel, prometheus.url, 1_700_000_000.0)[0])
    assert alone > 50
    assert {(count, palette_pixels(png)) for png, count in results} == {(1, alone)}
