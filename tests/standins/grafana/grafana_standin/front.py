"""An honest HTML front for the stand-in: a login page, the provisioned folders and dashboards, and
each dashboard's panels drawn from the real Prometheus (the provisioned default datasource) over
the last hour, as static PNG plots in the dashboard's grid layout. Every page says, in a banner,
that this is the lab's Grafana stand-in: there is no Grafana UI here, no editing, no live queries.

The login is Grafana's: the admin user and password (the same lockout), a ``grafana_session``
cookie after ``POST /login`` (a form, or JSON ``{"user", "password"}`` as Grafana's login API).
"""

from __future__ import annotations

import html
import io
import json
import re
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# the Figure API, not pyplot: FastAPI draws each panel on a thread of its pool, and pyplot keeps
# every figure in one global registry (matplotlib's advice for web servers)
from matplotlib.figure import Figure

# Grafana's classic palette; "No data" and axes are drawn in greys, never in these colours.
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9"]
BACKGROUND = "#181b1f"
MUTED = "#8e8e8e"
RANGE_SECONDS = 3600
STEP_SECONDS = 60
SCRAPE_SECONDS = 15
SESSION_SECONDS = 24 * 3600
COOKIE = "grafana_session"

_STYLE = """
body { background: #111217; color: #ccccdc; font-family: sans-serif; margin: 0; }
.banner { background: #FF780A; color: #111; padding: 8px 16px; font-weight: bold; }
main { padding: 16px; }
a { color: #6e9fff; }
.grid { display: grid; grid-template-columns: repeat(24, 1fr); grid-auto-rows: 32px; gap: 6px; }
.panel { background: #181b1f; border: 1px solid #2c3235; overflow: hidden; margin: 0; }
.panel img { width: 100%; height: calc(100% - 22px); object-fit: contain; }
.panel figcaption { font-size: 13px; padding: 2px 6px; height: 18px; }
.row { grid-column: 1 / span 24; font-weight: bold; border-bottom: 1px solid #2c3235; }
form { max-width: 320px; } input { display: block; margin: 6px 0; width: 100%; }
"""

BANNER = (
    "Grafana stand-in of the edgeai lab: not Grafana. It shows the provisioned dashboards, each "
    "panel a static plot of its query on the real Prometheus over the last hour."
)


def page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} - Grafana stand-in</title><style>{_STYLE}</style></head>"
        f"<body><div class='banner' id='standin-banner'>{html.escape(BANNER)}</div>"
        f"<main>{body}</main></body></html>"
    )


def login_page(base: str, error: str = "") -> str:
    message = f"<p class='error'>{html.escape(error)}</p>" if error else ""
    return page(
        "Log in",
        f"<h1>Log in</h1>{message}<form method='post' action='{base}/login'>"
        "<label>User <input name='user' id='user' autocomplete='username'></label>"
        "<label>Password <input name='password' id='password' type='password' "
        "autocomplete='current-password'></label>"
        "<button type='submit' id='login'>Log in</button></form>",
    )


class Sessions:
    """Login sessions (the ``grafana_session`` cookie), in memory."""

    def __init__(self) -> None:
        self.active: dict[str, tuple[str, float]] = {}

    def open(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        self.active[token] = (user, time.monotonic() + SESSION_SECONDS)
        return token

    def user(self, token: str | None) -> str | None:
        if not token or token not in self.active:
            return None
        user, until = self.active[token]
        if until < time.monotonic():
            del self.active[token]
            return None
        return user


# --- panels -------------------------------------------------------------------------------
def panels_in_order(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Panels in the grid's reading order; a collapsed row brings its own panels after it."""
    for panel in sorted(model.get("panels", []), key=_position):
        yield panel
        if panel.get("type") == "row":
            yield from sorted(panel.get("panels", []), key=_position)


def _position(panel: dict[str, Any]) -> tuple[int, int]:
    grid = panel.get("gridPos", {})
    return int(grid.get("y", 0)), int(grid.get("x", 0))


def template_values(model: dict[str, Any]) -> dict[str, str]:
    """The dashboard's template variables as Grafana interpolates them into PromQL, at their
    current (provisioned) value: "All" is the variable's ``allValue`` (the appliance's dashboards
    set ``.*``); without one, Grafana joins every value its query finds, which the stand-in
    approximates with ``.+`` (any non-empty value) instead of running the query; several values
    are a regex alternation of the escaped values, as Grafana's Prometheus data source writes it."""
    values: dict[str, str] = {}
    for variable in model.get("templating", {}).get("list", []):
        current = variable.get("current", {}).get("value", "")
        chosen = current if isinstance(current, list) else [current]
        if "$__all" in chosen:
            values[variable["name"]] = variable.get("allValue") or ".+"
        elif len(chosen) == 1:
            values[variable["name"]] = str(chosen[0])
        else:
            values[variable["name"]] = "(" + "|".join(re.escape(str(v)) for v in chosen) + ")"
    return values


def resolve(expr: str, variables: dict[str, str] | None = None) -> str:
    """Grafana's interval variables for a 1 h range at a 60 s step and a 15 s scrape interval,
    and the dashboard's own variables (``$name`` and ``${name}``)."""
    for name, value in sorted((variables or {}).items(), key=lambda v: -len(v[0])):
        pattern = r"\$(?:\{" + re.escape(name) + r"\}|" + re.escape(name) + r"(?![A-Za-z0-9_]))"
        expr = re.sub(pattern, value.replace("\\", "\\\\"), expr)
    rate = max(STEP_SECONDS + SCRAPE_SECONDS, 4 * SCRAPE_SECONDS)
    return (
        expr.replace("$__rate_interval", f"{rate}s")
        .replace("$__interval", f"{STEP_SECONDS}s")
        .replace("$__range", f"{RANGE_SECONDS}s")
    )


@dataclass
class Series:
    label: str
    times: list[float]
    values: list[float]


def query_range(
    datasource: str, expr: str, end: float, variables: dict[str, str] | None = None
) -> list[Series]:
    params = urllib.parse.urlencode(
        {
            "query": resolve(expr, variables),
            "start": f"{end - RANGE_SECONDS:.0f}",
            "end": f"{end:.0f}",
            "step": f"{STEP_SECONDS}",
        }
    )
    url = f"{datasource.rstrip('/')}/api/v1/query_range?{params}"
    with urllib.request.urlopen(url, timeout=20) as response:
        answer = json.load(response)
    series = []
    for item in answer.get("data", {}).get("result", []):
        points = [(float(t), float(v)) for t, v in item.get("values", []) if v not in ("NaN",)]
        if points:
            labels = item.get("metric", {})
            series.append(Series(_label(labels), [p[0] for p in points], [p[1] for p in points]))
    return series


def _label(labels: dict[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", "")


def render_panel(
    panel: dict[str, Any], datasource: str, end: float, variables: dict[str, str] | None = None
) -> tuple[bytes, int]:
    """The panel as a PNG, and how many series with data it shows."""
    series: list[Series] = []
    for target in panel.get("targets", []):
        if target.get("expr"):
            series += query_range(datasource, target["expr"], end, variables)
    grid = panel.get("gridPos", {})
    width = max(3.0, int(grid.get("w", 12)) * 0.55)
    height = max(1.6, int(grid.get("h", 8)) * 0.42)
    figure = Figure(figsize=(width, height), dpi=80, facecolor=BACKGROUND)
    axes = figure.add_axes((0.08, 0.15, 0.9, 0.8), facecolor=BACKGROUND)
    for spine in axes.spines.values():
        spine.set_color("#2c3235")
    axes.tick_params(colors=MUTED, labelsize=7)
    kind = panel.get("type")
    if not series:
        axes.set_axis_off()
        axes.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center", fontsize=12)
    elif kind == "stat":
        axes.set_axis_off()
        last = series[0].values[-1]
        axes.plot(series[0].times, series[0].values, color=PALETTE[0], alpha=0.5, marker=".")
        axes.text(
            0.5, 0.5, _number(last), color=PALETTE[0], ha="center", va="center",
            fontsize=20, fontweight="bold", transform=axes.transAxes,
        )  # fmt: skip
    elif kind == "table":
        axes.set_axis_off()
        for row, item in enumerate(series[:8]):
            axes.text(
                0.01, 0.92 - row * 0.12, f"{item.label}: {_number(item.values[-1])}",
                color=PALETTE[row % len(PALETTE)], fontsize=8, transform=axes.transAxes,
            )  # fmt: skip
    else:
        start = end - RANGE_SECONDS
        for index, item in enumerate(series[:12]):
            minutes = [(t - start) / 60 for t in item.times]
            # a series with few points gets markers: one point alone draws no line; 2.5 px
            # so that even a flat line covers whole pixels in its colour
            marker = "o" if len(item.times) <= 5 else None
            axes.plot(
                minutes, item.values, color=PALETTE[index % len(PALETTE)], linewidth=2.5,
                marker=marker, markersize=4,
            )  # fmt: skip
        axes.set_xlim(0, 60)
        axes.set_xlabel("minutes in the last hour", color=MUTED, fontsize=7)
    out = io.BytesIO()
    figure.savefig(out, format="png", facecolor=BACKGROUND)
    return out.getvalue(), len(series)


def _number(value: float) -> str:
    if abs(value) >= 1000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def dashboard_page(base: str, uid: str, title: str, model: dict[str, Any]) -> str:
    cells = []
    for panel in panels_in_order(model):
        grid = panel.get("gridPos", {})
        place = (
            f"grid-column: {int(grid.get('x', 0)) + 1} / span {int(grid.get('w', 24))}; "
            f"grid-row: {int(grid.get('y', 0)) + 1} / span {max(1, int(grid.get('h', 1)))};"
        )
        name = html.escape(str(panel.get("title", "")))
        if panel.get("type") == "row":
            cells.append(f"<div class='row' style='{place}'>{name}</div>")
            continue
        source = f"{base}/render/panel/{urllib.parse.quote(uid)}/{int(panel.get('id', 0))}.png"
        cells.append(
            f"<figure class='panel' style='{place}' data-panel='{name}'>"
            f"<figcaption>{name}</figcaption><img src='{source}' alt='{name}'></figure>"
        )
    return page(
        title,
        f"<p><a href='{base}/'>Dashboards</a></p><h1 id='dashboard-title'>{html.escape(title)}</h1>"
        f"<p>Last hour, from the provisioned Prometheus datasource.</p>"
        f"<div class='grid'>{''.join(cells)}</div>",
    )
