"""The committed dashboards: made by the generator, well formed, and every query valid PromQL.

The PromQL check is promtool's own parser: every panel expression (Grafana's interval variables
replaced as Grafana does) becomes a recording rule and `promtool check rules` must accept them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from edgeai_dashboards import DASHBOARDS_DIR, DATASOURCE_UID, QUERIES, promql, render
from edgeai_dashboards import __main__ as cli
from onnx_service.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles/grafana"
DASHBOARDS = sorted(DASHBOARDS_DIR.rglob("*.json"))
COMPONENTS = {"gateway", "onnx-service", "ollama", "llm-usage", "host", "monitoring"}

# Series the monitoring contract (and the standard exporters) define; a name outside these is a typo
# or a metric nobody exports.
CONTRACT = re.compile(
    r"^(edgeai_gateway_(requests_total|request_duration_seconds_bucket"
    r"|upstream_header_duration_seconds_bucket|rate_limited_total)"
    r"|edgeai_container_(running|unhealthy|restarts)|edgeai_autoheal_restarts_total"
    r"|ollama_(up|build_info|model_present|model_size_bytes|model_loaded|model_loaded_memory_bytes)"
    r"|probe_(success|duration_seconds|http_status_code|ssl_earliest_cert_expiry)"
    r"|(node|nginx|container|prometheus|alertmanager|grafana)_[a-zA-Z0-9_]+"
    r"|onnx_service_[a-z_]+|up|ALERTS|scrape_duration_seconds"
    # the gateway's LLM metering (roles/gateway/templates/llm.js.j2)
    r"|edgeai_llm_(tokens_total|requests_total|budget_tokens|budget_used_tokens"
    r"|(time_to_first_token_seconds|tokens_per_second|queue_seconds"
    r"|request_duration_seconds)_bucket))$"
)
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "increase", "histogram_quantile",
    "vector", "scalar", "time", "predict_linear", "or", "and", "unless", "on", "ignoring",
}  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _queries() -> list[dict[str, Any]]:
    queries: list[dict[str, Any]] = _load(QUERIES)["queries"]
    return queries


def test_committed_files_are_what_the_generator_makes() -> None:
    files = render()
    assert set(files) == {*DASHBOARDS, QUERIES}, (
        "committed dashboards differ from the generator's set: run "
        "`cd tools/dashboards && ../../.venv/bin/python -m edgeai_dashboards`"
    )
    for path, text in files.items():
        assert path.read_text() == text, f"{path.relative_to(REPO)} drifted from the generator"
    assert cli.main(["--check"]) == 0


def test_the_check_notices_a_hand_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS_DIR, copy)
    moved = {copy / p.relative_to(DASHBOARDS_DIR): t for p, t in render().items() if p != QUERIES}
    monkeypatch.setattr(cli, "DASHBOARDS_DIR", copy)
    monkeypatch.setattr(cli, "ROOT", tmp_path)
    monkeypatch.setattr(cli, "render", lambda: moved)
    assert cli.main(["--check"]) == 0
    edited = copy / "Components/gateway.json"
    edited.write_text(edited.read_text().replace('"Gateway"', '"Gateway (edited)"'))
    assert cli.main(["--check"]) == 1
    assert cli.main([]) == 0
    assert cli.main(["--check"]) == 0
    (copy / "Components/by-hand.json").write_text("{}")
    assert cli.main(["--check"]) == 1


def test_an_overview_and_one_dashboard_per_component_in_folders() -> None:
    layout = {(p.parent.name, p.stem) for p in DASHBOARDS}
    assert ("Appliance", "overview") in layout
    assert {stem for folder, stem in layout if folder == "Components"} == COMPONENTS


def test_uids_and_titles_are_unique_and_stable() -> None:
    dashboards = [_load(p) for p in DASHBOARDS]
    uids = [d["uid"] for d in dashboards]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"edgeai-[a-z-]+", uid) and len(uid) <= 40 for uid in uids)
    assert {p.stem: _load(p)["uid"] for p in DASHBOARDS}["overview"] == "edgeai-overview"
    assert len({d["title"] for d in dashboards}) == len(dashboards)
    for dashboard in dashboards:
        titles = [p["title"] for p in _panels(dashboard)]
        assert len(set(titles)) == len(titles), f"{dashboard['uid']}: panel titles repeat"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = _load(path)
    assert dashboard["editable"] is False, "provisioned dashboards are changed in the generator"
    assert dashboard["schemaVersion"] >= 39
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    panels = _panels(dashboard)
    assert panels
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, title
        assert panel["targets"], f"{title}: no targets"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, title
            assert target["expr"].strip(), title
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, title


def test_every_datasource_reference_is_the_provisioned_one() -> None:
    template = (ROLE / "templates/datasources.yaml.j2").read_text()
    assert f"uid: {DATASOURCE_UID}" in template
    for path in DASHBOARDS:
        text = path.read_text()
        refs = set(re.findall(r'"uid": "([^"]+)"', text)) - {_load(path)["uid"]}
        assert refs == {DATASOURCE_UID}, f"{path.name}: {refs}"


def test_queries_json_lists_every_panel_query() -> None:
    listed = {(q["dashboard"], q["panel_id"], q["ref_id"]): q for q in _queries()}
    seen = set()
    for path in DASHBOARDS:
        dashboard = _load(path)
        for panel in _panels(dashboard):
            for target in panel["targets"]:
                key = (dashboard["uid"], panel["id"], target["refId"])
                seen.add(key)
                assert listed[key]["panel"] == panel["title"]
                assert listed[key]["expr"] == target["expr"]
                assert listed[key]["promql"] == promql(target["expr"])
    assert seen == set(listed)


def test_cadvisor_panels_are_the_listed_lab_exceptions() -> None:
    for q in _queries():
        uses_cadvisor = "container_cpu_" in q["expr"] or "container_memory_" in q["expr"]
        assert bool(q["lab_exception"]) == uses_cadvisor, q["panel"]
    assert any(q["lab_exception"] for q in _queries())


def test_metric_names_follow_the_monitoring_contract() -> None:
    for q in _queries():
        text = re.sub(r'"[^"]*"', '""', q["promql"])  # label values are not names
        text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
        text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
        names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)) - PROMQL_WORDS
        for name in names:
            assert CONTRACT.match(name), f"{q['dashboard']} / {q['panel']}: unknown series {name}"


def test_onnx_service_series_exist_in_the_service() -> None:
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes[family.type]
    }
    used = {n for q in _queries() for n in re.findall(r"onnx_service_[a-z_]+", q["promql"])}
    assert used, "the dashboards show no onnx_service series"
    assert used <= exported, f"not exported by onnx_service: {sorted(used - exported)}"


def _promtool_check(tmp_path: Path, expressions: list[str]) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make packages)")
    rules = {
        "groups": [
            {
                "name": "dashboard_queries",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    expressions = [q["promql"] for q in _queries()]
    result = _promtool_check(tmp_path, expressions)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    result = _promtool_check(tmp_path, ["sum by (route) (rate(edgeai_gateway_requests_total[5m])"])
    assert result.returncode != 0


def test_grafana_variables_are_replaced_and_unknown_ones_refused() -> None:
    assert promql("rate(x[$__rate_interval])") == "rate(x[5m])"
    with pytest.raises(ValueError, match=r"\$route"):
        promql('x{route="$route"}')
