"""Every dashboard query returns data from the real Prometheus once the appliance has worked.

The queries are the generator's (tools/dashboards/queries.json: each panel's PromQL with Grafana's
interval variables resolved). The module first makes the appliance do what the panels show:
inference on both protocols, a real LLM generation, a rate-limited burst, a 5xx, a failed model
load; then every query must return at least one series. Panels that count trouble (firing alerts,
targets down, 5xx, stopped containers) end in `or vector(0)` so that they show 0 on a healthy
appliance; a query with that fallback always returns a series, so those panels are checked
without it, for a value above 0, while a stopped Grafana's TargetDown alert fires.
Lab exceptions are the panels marked `lab_exception` (cAdvisor, which cannot run here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from appliance_lab import ADMIN, CA, USER, gateway_url, prometheus_api, wait_for

REPO = Path(__file__).resolve().parents[3]
QUERIES = json.loads((REPO / "tools/dashboards/queries.json").read_text())["queries"]
CHECKED = [q for q in QUERIES if not q["lab_exception"]]
FALLBACK = re.compile(r"\s+or\s+vector\(0\)")
OUTAGE_PANELS = [q for q in CHECKED if "ALERTS" in q["promql"] or FALLBACK.search(q["promql"])]
OTHER_PANELS = [q for q in CHECKED if q not in OUTAGE_PANELS]
MODELS_DIR = "/var/lib/edgeai/onnx/models"
MAGIKA_ROW = {
    "inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "INT32",
                "data": [35, 33] + [256] * 2046}]
}  # fmt: skip


def query(expr: str) -> list:
    return prometheus_api("query", {"query": expr}, timeout=30)["result"]


def _status(method: str, path: str, **kwargs) -> int:
    try:
        return requests.request(method, gateway_url() + path, verify=CA, timeout=120,
                                **kwargs).status_code  # fmt: skip
    except requests.RequestException:
        return 0


@pytest.fixture(scope="module")
def appliance_at_work(host) -> None:
    # traffic on every serving route
    for _ in range(5):
        assert _status("POST", "/v2/models/magika/infer", headers=USER, json=MAGIKA_ROW) == 200
        assert _status("GET", "/v1/models", headers=USER) == 200
    models = requests.get(gateway_url() + "/api/tags", headers=USER, verify=CA, timeout=30)
    llm = models.json()["models"][0]["name"]
    generate = {"model": llm, "prompt": "Say hello.", "stream": False,
                "options": {"num_predict": 8, "temperature": 0, "seed": 1}}  # fmt: skip
    assert _status("POST", "/api/generate", headers=USER, json=generate) == 200
    # a streamed one: the LLM usage board's time to first token and tokens per second
    assert _status("POST", "/api/generate", headers=USER, json={**generate, "stream": True}) == 200
    # a burst without a key: the anonymous budget answers 429
    assert 429 in [_status("GET", "/api/tags") for _ in range(80)]
    # a failed load: a model whose file is not ONNX
    with host.sudo():
        broken = f"{MODELS_DIR}/broken/1"
        host.check_output(f"mkdir -p {broken} && printf 'not onnx' > {broken}/model.onnx")
    try:
        assert _status("POST", "/v2/repository/models/broken/load", headers=ADMIN) >= 400
    finally:
        with host.sudo():
            host.check_output(f"rm -rf {MODELS_DIR}/broken")
    # Grafana stopped: /grafana/ answers 502 (a 5xx for the error panels)
    with host.sudo():
        host.check_output("docker stop grafana")
    try:
        assert _status("GET", "/grafana/api/health") == 502
    finally:
        with host.sudo():
            host.check_output("docker start grafana")
    # one more scrape of everything (15 s) and of mtail's view of the log
    assert wait_for(lambda: query("edgeai_gateway_rate_limited_total"), 60, 5) is not None


@pytest.fixture(scope="module")
def an_alert_firing(appliance_at_work, host):
    """Grafana stopped until its TargetDown alert fires, started again (and answering) after.

    The alert panels need an alert firing while they are queried; a restarted Grafana resolves it
    at the next rule evaluation, so these panels are checked with Grafana still down.
    """
    firing = 'ALERTS{alertname="TargetDown",job="grafana",alertstate="firing"}'
    with host.sudo():
        host.check_output("docker stop grafana")
    try:
        assert _status("GET", "/grafana/api/health") == 502  # a fresh 5xx for the error panels
        assert wait_for(lambda: query(firing), 180, 5) is not None, "no TargetDown for Grafana"
        yield
    finally:
        with host.sudo():
            host.check_output("docker start grafana")
        assert wait_for(lambda: _status("GET", "/grafana/api/health") == 200, 120, 2) is not None


def _ids(queries: list[dict]) -> list[str]:
    return [f"{q['dashboard']}:{q['panel']}:{q['ref_id']}" for q in queries]


@pytest.mark.parametrize("q", OTHER_PANELS, ids=_ids(OTHER_PANELS))
def test_dashboard_query_returns_data(appliance_at_work, q: dict) -> None:
    result = wait_for(lambda: query(q["promql"]), 60, 5)
    assert result is not None, f"{q['dashboard']} / {q['panel']}: no data for {q['promql']}"


def test_every_trouble_panel_is_checked_during_the_outage() -> None:
    """The split above: a panel with a fallback never lands among the plain data checks."""
    assert all(not FALLBACK.search(q["promql"]) for q in OTHER_PANELS)
    names = {q["panel"] for q in OUTAGE_PANELS}
    assert {"Targets down", "Firing alerts"} <= names


def _above_zero(expr: str) -> bool:
    return any(float(series["value"][1]) > 0 for series in query(expr))


@pytest.mark.parametrize("q", OUTAGE_PANELS, ids=_ids(OUTAGE_PANELS))
def test_trouble_panel_counts_the_outage_without_its_fallback(an_alert_firing, q: dict) -> None:
    expr = FALLBACK.sub("", q["promql"])
    assert "vector(0)" not in expr
    result = wait_for(lambda: _above_zero(expr), 60, 5)
    assert result is not None, f"{q['dashboard']} / {q['panel']}: not above 0: {expr}"


def test_the_lab_exceptions_are_only_cadvisor() -> None:
    exceptions = [q for q in QUERIES if q["lab_exception"]]
    assert exceptions
    assert all("container_" in q["promql"] and "edgeai_" not in q["promql"] for q in exceptions)
