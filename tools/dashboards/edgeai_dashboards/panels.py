"""Panel helpers over grafana-foundation-sdk: every query goes to the provisioned datasource.

A ``Board`` wraps the SDK's dashboard builder and records each query with what it needs to return
data (``requires``) and whether the lab cannot have it at all (``lab_exception``), so tests can run
every dashboard query against a real Prometheus and know which empty answers are expected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# The uid of the Prometheus datasource roles/grafana provisions (templates/datasources.yaml.j2).
DATASOURCE_UID = "edgeai-prometheus"
DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)

# What Grafana puts in for its interval variables, for checking and running the expressions
# outside Grafana (promtool, the Prometheus HTTP API).
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_VARIABLE = re.compile(r"\$(__[a-z_]+|\{[^}]+\}|[A-Za-z_]\w*)")

CADVISOR = "cAdvisor is off in the lab (it cannot be obtained on the build machines)"


def promql(expr: str) -> str:
    """The expression as Prometheus receives it from Grafana (interval variables replaced)."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    left = _VARIABLE.search(expr)
    if left:
        raise ValueError(f"unknown Grafana variable {left.group(0)} in {expr!r}")
    return expr


@dataclass(frozen=True)
class Q:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    requires: str = ""
    lab_exception: str = ""
    instant: bool = False


class Board:
    """A dashboard under construction and the queries of its panels."""

    def __init__(
        self, uid: str, title: str, folder: str, description: str, tags: list[str]
    ) -> None:
        self.uid = uid
        self.folder = folder
        self.title = title
        self.queries: list[dict[str, Any]] = []
        self._ids = 0
        self.builder = (
            dashboard_builders.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["edgeai", *tags])
            .readonly()
            .refresh("30s")
            .time("now-1h", "now")
            .timezone("browser")
            .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        )

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def row(self, title: str) -> Board:
        self.builder.with_row(dashboard_builders.Row(title).id(self._next_id()))
        return self

    def add(self, panel: Any, title: str, queries: list[Q]) -> Board:
        panel_id = self._next_id()
        for index, query in enumerate(queries):
            target = (
                prometheus.Dataquery()
                .expr(query.expr)
                .ref_id(chr(ord("A") + index))
                .datasource(DATASOURCE)
            )
            if query.legend:
                target.legend_format(query.legend)
            if query.instant:
                target.instant().format(PromQueryFormat.TABLE)
            else:
                target.range()
            panel.with_target(target)
            self.queries.append(
                {
                    "dashboard": self.uid,
                    "panel": title,
                    "panel_id": panel_id,
                    "ref_id": chr(ord("A") + index),
                    "expr": query.expr,
                    "promql": promql(query.expr),
                    "instant": query.instant,
                    "requires": query.requires,
                    "lab_exception": query.lab_exception,
                }
            )
        self.builder.with_panel(panel.id(panel_id).title(title).datasource(DATASOURCE))
        return self

    def graph(
        self,
        title: str,
        queries: list[Q],
        *,
        unit: str = "short",
        description: str = "",
        width: int = 12,
        stacked: bool = False,
    ) -> Board:
        panel = (
            timeseries.Panel()
            .unit(unit)
            .description(description)
            .span(width)
            .height(8)
            .fill_opacity(10)
            .line_width(1)
            .legend(
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["lastNotNull", "max"])
            )
            .tooltip(
                common_builders.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
        )
        if stacked:
            panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        return self.add(panel, title, queries)

    def stat(
        self,
        title: str,
        query: Q,
        *,
        unit: str = "short",
        description: str = "",
        width: int = 4,
        thresholds: list[tuple[float | None, str]] | None = None,
    ) -> Board:
        steps = thresholds or [(None, "green")]
        panel = (
            stat.Panel()
            .unit(unit)
            .description(description)
            .span(width)
            .height(4)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.AREA)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
            .thresholds(
                dashboard_builders.ThresholdsConfig()
                .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
                .steps([dashboard_models.Threshold(value=v, color=c) for v, c in steps])
            )
        )
        return self.add(panel, title, [query])

    def table(
        self,
        title: str,
        queries: list[Q],
        *,
        description: str = "",
        width: int = 24,
        unit: str = "",
    ) -> Board:
        panel = table.Panel().description(description).span(width).height(8)
        if unit:
            panel.unit(unit)
        return self.add(panel, title, queries)

    def build(self) -> dict[str, Any]:
        """The dashboard as Grafana's JSON model (a dict)."""
        built: dict[str, Any] = json.loads(JSONEncoder().encode(self.builder.build()))
        return built


def rate(metric: str, selector: str = "", by: str = "") -> str:
    """``sum [by (...)] (rate(metric{selector}[$__rate_interval]))``."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({_series(metric, selector)}[$__rate_interval]))"


def quantile(q: float, histogram: str, by: str, selector: str = "") -> str:
    """A histogram quantile over ``histogram_bucket``, grouped by ``by``."""
    group = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) "
        f"(rate({_series(histogram + '_bucket', selector)}[$__rate_interval])))"
    )


def _series(metric: str, selector: str) -> str:
    return f"{metric}{{{selector}}}" if selector else metric
