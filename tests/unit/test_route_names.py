"""The gateway's route names are written once (``__gateway_routes`` in roles/gateway/vars/main.yml).

The gateway labels its requests with them (nginx/maps.j2); the prometheus role's per-route latency
thresholds, the exporters' probes and the generated dashboards name routes only from that list; and
the dashboards filter file systems as the disk alerts do
(prometheus_alert_filesystem_exclude_fstypes).
Each test fails when one of them drifts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "roles/grafana/files/dashboards"
ROUTES = yaml.safe_load((REPO / "roles/gateway/vars/main.yml").read_text())["__gateway_routes"]
NAMES = [r["name"] for r in ROUTES]
MAPS = REPO / "roles/gateway/templates/nginx/maps.j2"


def _defaults(role: str) -> dict:
    defaults: dict = yaml.safe_load((REPO / "roles" / role / "defaults/main.yml").read_text())
    return defaults


def _dashboard_texts() -> list[str]:
    return [p.read_text() for p in sorted(DASHBOARDS_DIR.rglob("*.json"))]


def test_the_list_names_each_route_once() -> None:
    assert len(NAMES) == len(set(NAMES))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in NAMES)


def test_the_gateway_labels_requests_with_the_listed_routes() -> None:
    block = re.search(r"map \$uri \$gw_route \{(.*?)\n    \}", MAPS.read_text(), re.S)
    assert block, MAPS
    labels = re.findall(r"^\s*(?!#)\S.*\s([a-z_0-9]+);$", block.group(1), re.M)
    assert labels
    assert labels[0] == "unknown"
    assert set(labels[1:]) == set(NAMES)


def test_the_latency_thresholds_name_listed_routes() -> None:
    thresholds = _defaults("prometheus")["prometheus_alert_gateway_p95_route_seconds"]
    assert thresholds
    assert set(thresholds) <= set(NAMES)


def test_the_probes_name_listed_routes() -> None:
    probes = _defaults("exporters")["exporters_blackbox_probes"]
    assert probes
    assert {p["route"] for p in probes} <= set(NAMES)


def test_the_dashboards_name_listed_routes() -> None:
    selectors = [
        names
        for text in _dashboard_texts()
        for names in re.findall(r'route(?:=~|=|!~|!=)\\"([^\\"]*)\\"', text)
    ]
    assert selectors
    for names in selectors:
        assert set(names.split("|")) <= set(NAMES), names


def test_the_dashboards_leave_out_the_file_systems_the_disk_alerts_leave_out() -> None:
    excluded = _defaults("prometheus")["prometheus_alert_filesystem_exclude_fstypes"]
    filters = {f for t in _dashboard_texts() for f in re.findall(r'fstype!~\\"([^\\"]*)\\"', t)}
    assert filters == {excluded}
    queries = json.loads((REPO / "tools/dashboards/queries.json").read_text())["queries"]
    assert any(f'fstype!~"{excluded}"' in q["promql"] for q in queries)
