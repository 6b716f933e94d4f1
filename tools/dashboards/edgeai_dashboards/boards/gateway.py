"""The gateway dashboard: traffic, latency, limits and errors by route and client."""

from __future__ import annotations

from ..panels import Board, Q, quantile, rate
from .common import (
    COMPONENTS,
    DUR,
    ERRORS,
    FIVEXX,
    GREEN_WHEN_UP,
    LIMITED,
    NEEDS_5XX,
    NEEDS_429,
    REQ,
    TTFB,
    percentiles,
    rate_limited_panel,
    requests_by_client,
    requests_by_route_and_status,
)


def board() -> Board:
    b = Board(
        "edgeai-gateway",
        "Gateway",
        COMPONENTS,
        "The nginx gateway: requests, errors and latency per route and client from its access "
        "log (mtail), rate limiting, nginx connections and the end-to-end probes.",
        ["gateway"],
    )
    b.row("Requests")
    requests_by_route_and_status(b, "Requests by route and status class")
    requests_by_client(b)
    b.graph(
        "Error ratio by route",
        [
            Q(
                f"{rate(REQ, ERRORS, 'route')} / {rate(REQ, by='route')}",
                "{{route}}",
            )
        ],
        unit="percentunit",
    )
    b.graph(
        "5xx by route",
        [Q(rate(REQ, FIVEXX, "route"), "{{route}}", requires=NEEDS_5XX)],
        unit="reqps",
    )
    b.row("Latency")
    b.graph(
        "Latency by route (p50, p95, p99)",
        percentiles(DUR, "route", qs=(0.5, 0.95, 0.99)),
        unit="s",
    )
    b.graph("p95 latency by client", [Q(quantile(0.95, DUR, "client"), "{{client}}")], unit="s")
    b.graph(
        "Upstream time to first byte by route (p95)",
        [Q(quantile(0.95, TTFB, "route"), "{{route}}")],
        unit="s",
        width=24,
    )
    b.row("Rate limiting")
    rate_limited_panel(b)
    b.graph(
        "Rate limited share by route",
        [
            Q(
                f"{rate(LIMITED, by='route')} / {rate(REQ, by='route')}",
                "{{route}}",
                requires=NEEDS_429,
            )
        ],
        unit="percentunit",
    )
    b.row("nginx")
    b.stat("nginx up", Q("min(nginx_up)"), thresholds=GREEN_WHEN_UP)
    b.stat("Active connections", Q("sum(nginx_connections_active)"))
    b.graph(
        "Connections by state",
        [
            Q("sum(nginx_connections_reading)", "reading"),
            Q("sum(nginx_connections_writing)", "writing"),
            Q("sum(nginx_connections_waiting)", "waiting"),
        ],
        width=8,
    )
    b.graph(
        "nginx requests per second",
        [Q(rate("nginx_http_requests_total"), "requests")],
        unit="reqps",
        width=8,
    )
    b.row("Probes (blackbox, end to end through the gateway)")
    b.graph(
        "Probe success by route",
        [Q("min by (route) (probe_success)", "{{route}}")],
        description="1 when the probe through the gateway succeeded.",
    )
    b.graph(
        "Probe duration by route",
        [Q("max by (route) (probe_duration_seconds)", "{{route}}")],
        unit="s",
    )
    b.table(
        "Probe HTTP status by URL",
        [Q("max by (instance, route) (probe_http_status_code)", instant=True)],
    )
    return b
