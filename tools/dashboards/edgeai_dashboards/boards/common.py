"""What several dashboards share: metric names, selectors, thresholds and the panels that more
than one dashboard shows. Metric names follow the monitoring contract (docs in
roles/grafana/README.md): gateway request metrics from mtail, onnx_service's Triton-named metrics,
the Ollama exporter, node_exporter with the recovery service's textfile, nginx and blackbox
exporters, cAdvisor (production only), Prometheus, Alertmanager and Grafana themselves.
"""

from __future__ import annotations

from ..panels import CADVISOR, Board, Q, quantile, rate
from ..settings import NOT_DISK_FSTYPES, route_selector

APPLIANCE = "Appliance"
COMPONENTS = "Components"

REQ = "edgeai_gateway_requests_total"
DUR = "edgeai_gateway_request_duration_seconds"
TTFB = "edgeai_gateway_upstream_header_duration_seconds"
LIMITED = "edgeai_gateway_rate_limited_total"
# the gateway's route names (settings.ROUTES): the LLM routes, and those with Ollama's admin API
LLM_ROUTES = route_selector("ollama", admin=False)
FIVEXX = 'status_class="5xx"'
ERRORS = 'status_class=~"4xx|5xx"'
# node_exporter drops pseudo file systems itself; the rest that are not disks (memory, container
# layers, images) are the ones the disk alerts leave out
DISK = f'fstype!~"{NOT_DISK_FSTYPES}"'

CPU_BY_CONTAINER = (
    'sum by (name) (rate(container_cpu_usage_seconds_total{name!=""}[$__rate_interval]))'
)
MEMORY_BY_CONTAINER = 'sum by (name) (container_memory_working_set_bytes{name!=""})'
LLM_ALL_ROUTES = route_selector("ollama")
NOT_LO = 'device!="lo"'

NEEDS_429 = "a request refused with 429 by the gateway's rate limits"
NEEDS_ALERT = "an alert pending or firing"
NEEDS_TEXTFILE = "the recovery service's container textfile (edgeai_container_*)"
NEEDS_5XX = "a 5xx answer at the gateway"
NEEDS_LOAD_FAILURE = "a failed ONNX model load"
NEEDS_LOADED_LLM = "an Ollama model loaded in memory (after a generation)"

RED_ABOVE = [(None, "green"), (1.0, "red")]
GREEN_WHEN_UP = [(None, "red"), (1.0, "green")]


# Panels that more than one dashboard shows: each shape is written once here.


def percentiles(
    histogram: str, by: str, selector: str = "", qs: tuple[float, ...] = (0.5, 0.95)
) -> list[Q]:
    """One query per quantile of ``histogram`` grouped by ``by``, legend ``p50 {{by}}`` etc."""
    return [Q(quantile(q, histogram, by, selector), f"p{round(q * 100)} {{{{{by}}}}}") for q in qs]


def requests_by_route_and_status(b: Board, title: str, routes: str = "") -> None:
    b.graph(
        title,
        [Q(rate(REQ, routes, "route, status_class"), "{{route}} {{status_class}}")],
        unit="reqps",
    )


def requests_by_client(b: Board, routes: str = "", description: str = "") -> None:
    b.graph(
        "Requests by client",
        [Q(rate(REQ, routes, "client"), "{{client}}")],
        unit="reqps",
        description=description,
    )


def ttfb_panel(b: Board, title: str, routes: str, description: str = "") -> None:
    """Upstream time to first byte (p50, p95) by route."""
    b.graph(title, percentiles(TTFB, "route", routes), unit="s", description=description)


def rate_limited_panel(b: Board, width: int = 12) -> None:
    b.graph(
        "Rate limited (429) by route and client",
        [Q(rate(LIMITED, by="route, client"), "{{route}} {{client}}", requires=NEEDS_429)],
        unit="reqps",
        width=width,
    )


def batch_size_panel(b: Board, width: int = 12, description: str = "") -> None:
    b.graph(
        "Average batch size by model",
        [
            Q(
                f"{rate('onnx_service_inference_count_total', by='model')} / "
                f"{rate('onnx_service_inference_exec_count_total', by='model')}",
                "{{model}}",
            )
        ],
        width=width,
        description=description,
    )


def disk_used_panel(b: Board, width: int = 12) -> None:
    b.graph(
        "Disk used by mount point",
        [
            Q(
                f"1 - node_filesystem_avail_bytes{{{DISK}}} / node_filesystem_size_bytes{{{DISK}}}",
                "{{mountpoint}}",
            )
        ],
        unit="percentunit",
        width=width,
    )


def container_usage_panels(b: Board, width: int = 12) -> None:
    """Container CPU and memory from cAdvisor (absent in the lab)."""
    b.graph(
        "Container CPU (cAdvisor)",
        [Q(CPU_BY_CONTAINER, "{{name}}", lab_exception=CADVISOR)],
        unit="percentunit",
        width=width,
    )
    b.graph(
        "Container memory (cAdvisor)",
        [Q(MEMORY_BY_CONTAINER, "{{name}}", lab_exception=CADVISOR)],
        unit="bytes",
        width=width,
    )
