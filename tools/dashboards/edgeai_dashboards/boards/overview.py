"""The appliance overview: the whole edge appliance at a glance."""

from __future__ import annotations

from ..panels import Board, Q, quantile, rate
from .common import (
    APPLIANCE,
    DUR,
    ERRORS,
    FIVEXX,
    GREEN_WHEN_UP,
    LLM_ROUTES,
    NEEDS_ALERT,
    NEEDS_TEXTFILE,
    RED_ABOVE,
    REQ,
    batch_size_panel,
    container_usage_panels,
    disk_used_panel,
    rate_limited_panel,
    requests_by_client,
    requests_by_route_and_status,
    ttfb_panel,
)


def board() -> Board:
    b = Board(
        "edgeai-overview",
        "Appliance overview",
        APPLIANCE,
        "The whole edge appliance at a glance: traffic through the gateway, ONNX and LLM "
        "serving, the host, the containers, certificates and firing alerts.",
        ["overview"],
    )
    b.row("Health")
    b.stat("Requests per second", Q(rate(REQ)), unit="reqps")
    b.stat(
        "5xx ratio",
        Q(f"({rate(REQ, FIVEXX)} or vector(0)) / {rate(REQ)}"),
        unit="percentunit",
        thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
    )
    b.stat(
        "Targets down",
        Q("count(up == 0) or vector(0)"),
        thresholds=RED_ABOVE,
    )
    b.stat(
        "Firing alerts",
        Q('count(ALERTS{alertstate="firing"}) or vector(0)'),
        thresholds=RED_ABOVE,
    )
    b.stat(
        "Certificate expires in",
        Q("min(probe_ssl_earliest_cert_expiry) - time()"),
        unit="s",
        thresholds=[(None, "red"), (14 * 86400, "orange"), (30 * 86400, "green")],
    )
    b.stat("Ollama up", Q("min(ollama_up)"), thresholds=GREEN_WHEN_UP)

    b.row("Traffic")
    b.graph("Requests by route", [Q(rate(REQ, by="route"), "{{route}}")], unit="reqps")
    b.graph(
        "Requests by status class",
        [Q(rate(REQ, by="status_class"), "{{status_class}}")],
        unit="reqps",
        stacked=True,
    )
    requests_by_client(b, description='Client is the API key name; "" is anonymous.')
    b.graph(
        "Errors by route (4xx and 5xx)",
        [Q(rate(REQ, ERRORS, "route, status_class"), "{{route}} {{status_class}}")],
        unit="reqps",
    )
    b.graph("p95 latency by route", [Q(quantile(0.95, DUR, "route"), "{{route}}")], unit="s")
    b.graph("p95 latency by client", [Q(quantile(0.95, DUR, "client"), "{{client}}")], unit="s")
    rate_limited_panel(b, width=24)

    b.row("ONNX models")
    b.graph(
        "Inferences per second by model",
        [Q(rate("onnx_service_inference_count_total", by="model"), "{{model}}")],
        unit="ops",
        width=8,
    )
    b.graph(
        "p95 request latency by model",
        [Q(quantile(0.95, "onnx_service_request_duration_seconds", "model"), "{{model}}")],
        unit="s",
        width=8,
    )
    batch_size_panel(
        b,
        width=8,
        description="Inferences per execution: above 1 when dynamic batching coalesces requests.",
    )

    b.row("LLM")
    requests_by_route_and_status(b, "LLM requests by route and status", LLM_ROUTES)
    ttfb_panel(
        b,
        "LLM time to first byte (p50, p95)",
        LLM_ROUTES,
        description="Time until the model server sent its response header (first token).",
    )

    b.row("Host")
    b.graph(
        "CPU busy",
        [Q('1 - avg(rate(node_cpu_seconds_total{mode="idle"}[$__rate_interval]))', "busy")],
        unit="percentunit",
        width=8,
    )
    b.graph(
        "Memory used",
        [Q("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "used")],
        unit="percentunit",
        width=8,
    )
    disk_used_panel(b, width=8)

    b.row("Containers")
    b.stat(
        "Containers running",
        Q("sum(edgeai_container_running)", requires=NEEDS_TEXTFILE),
        width=6,
    )
    b.stat(
        "Containers unhealthy or stopped",
        Q(
            "sum(edgeai_container_unhealthy) + (count(edgeai_container_running == 0) or vector(0))",
            requires=NEEDS_TEXTFILE,
        ),
        width=6,
        thresholds=RED_ABOVE,
    )
    container_usage_panels(b, width=6)

    b.row("Certificates and alerts")
    b.table(
        "Certificate expiry by probed URL (days)",
        [
            Q(
                "(min by (instance) (probe_ssl_earliest_cert_expiry) - time()) / 86400",
                instant=True,
            )
        ],
        width=8,
    )
    b.table(
        "Firing alerts (list)",
        [Q('ALERTS{alertstate="firing"}', instant=True, requires=NEEDS_ALERT)],
        width=16,
    )
    return b
