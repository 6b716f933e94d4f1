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

# What Grafana puts in for its variables, for checking and running the expressions outside Grafana
# (promtool, the Prometheus HTTP API): the interval variables, and the per-host variable at "All".
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$host": ".*",
}

# The per-host dimension (a site of several hosts): every series selector of every panel gets
# this matcher. A single host's series carry no `host` label, and `=~".*"` matches them too.
HOST_MATCHER = 'host=~"$host"'
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset",
}  # fmt: skip
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
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


def _verbatim(expr: str, i: int, previous: str) -> int:
    """Where a part that keeps its text ends: a $variable, a string, a [duration], the label list
    of by/without/on/ignoring; ``i`` itself when expr[i] starts none of them."""
    c = expr[i]
    if c == "$":
        match = _IDENT.match(expr, i + 1)
        return match.end() if match else i + 1
    if c in "\"'":
        return expr.index(c, i + 1) + 1
    if c == "[":
        return expr.index("]", i) + 1
    if c == "(" and previous in _GROUPING:
        return expr.index(")", i) + 1
    return i


def with_host(expr: str) -> str:
    """``expr`` with HOST_MATCHER in every series selector (metric names and bare ``{...}``).

    Functions, aggregations, keywords, label lists of by/without/on/ignoring, durations in
    ``[...]``, strings and ``$variables`` are left alone.
    """
    out: list[str] = []
    i, n = 0, len(expr)
    previous = ""  # the last identifier or symbol outside selectors
    while i < n:
        end = _verbatim(expr, i, previous)
        if end > i:
            out.append(expr[i:end])
            previous = expr[end - 1] if expr[i] == "(" else previous
            i = end
            continue
        if expr[i] == "{":
            end = expr.index("}", i) + 1
            inner = expr[i + 1 : end - 1].strip()
            out.append("{" + HOST_MATCHER + (", " + inner if inner else "") + "}")
            i, previous = end, "}"
            continue
        match = _IDENT.match(expr, i)
        if match and not (i > 0 and (expr[i - 1].isdigit() or expr[i - 1] == ".")):
            name = match.group(0)
            rest = expr[match.end() :].lstrip()
            out.append(name)
            aggregation = re.match(r"(by|without)\b", rest) is not None
            if name not in _KEYWORDS and not aggregation and not rest.startswith(("(", "{")):
                out.append("{" + HOST_MATCHER + "}")
            i, previous = match.end(), name
            continue
        out.append(expr[i])
        previous = previous if expr[i].isspace() else expr[i]
        i += 1
    return "".join(out)


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
            .with_variable(
                dashboard_builders.QueryVariable("host")
                .label("Host")
                .description("The site's hosts (a single host has none: All)")
                .datasource(DATASOURCE)
                .query("label_values(up, host)")
                .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .include_all(True)
                .all_value(".*")
                .multi(True)
                .current(dashboard_models.VariableOption(text="All", value="$__all"))
            )
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
            expr = with_host(query.expr)
            target = (
                prometheus.Dataquery()
                .expr(expr)
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
                    "expr": expr,
                    "promql": promql(expr),
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
