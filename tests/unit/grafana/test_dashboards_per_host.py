"""The dashboards' per-host dimension (a site of several hosts, issue 16): a `host` variable on
every dashboard and its matcher in every series selector of every panel query."""

from __future__ import annotations

import json
import re

import pytest
from edgeai_dashboards import DASHBOARDS_DIR, QUERIES
from edgeai_dashboards.panels import HOST_MATCHER, with_host


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("node_load1", 'node_load1{host=~"$host"}'),
        (
            'sum by (mode) (rate(x{mode!="idle"}[$__rate_interval]))',
            'sum by (mode) (rate(x{host=~"$host", mode!="idle"}[$__rate_interval]))',
        ),
        ("count(up == 0) or vector(0)", 'count(up{host=~"$host"} == 0) or vector(0)'),
        (
            "(min by (instance) (probe_ssl_earliest_cert_expiry) - time()) / 86400",
            '(min by (instance) (probe_ssl_earliest_cert_expiry{host=~"$host"}) - time()) / 86400',
        ),
        (
            "predict_linear(a[1h], 24 * 3600)",
            'predict_linear(a{host=~"$host"}[1h], 24 * 3600)',
        ),
        (
            "max without (job) (b) / on (model) c",
            'max without (job) (b{host=~"$host"}) / on (model) c{host=~"$host"}',
        ),
    ],
)
def test_every_selector_gets_the_host_matcher(expr: str, expected: str) -> None:
    assert with_host(expr) == expected


def test_every_dashboard_has_the_host_variable() -> None:
    for path in sorted(DASHBOARDS_DIR.rglob("*.json")):
        board = json.loads(path.read_text())
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert "host" in variables, path.name
        host = variables["host"]
        assert "label_values(up, host)" in json.dumps(host["query"]), path.name
        assert host["includeAll"] is True
        assert host["allValue"] == ".*"


def test_every_query_filters_by_host() -> None:
    for query in json.loads(QUERIES.read_text())["queries"]:
        selectors = re.findall(r"\{[^}]*\}", query["expr"].replace("{{", "").replace("}}", ""))
        assert selectors, query
        assert all(HOST_MATCHER in s for s in selectors), query
