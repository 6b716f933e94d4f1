"""The appliance's dashboards. Metric names follow the monitoring contract (docs in
roles/grafana/README.md): gateway request metrics from mtail, onnx_service's Triton-named metrics,
the Ollama exporter, node_exporter with the recovery service's textfile, nginx and blackbox
exporters, cAdvisor (production only), Prometheus, Alertmanager and Grafana themselves.
"""

from __future__ import annotations

from .panels import CADVISOR, Board, Q, quantile, rate

APPLIANCE = "Appliance"
COMPONENTS = "Components"

REQ = "edgeai_gateway_requests_total"
DUR = "edgeai_gateway_request_duration_seconds"
TTFB = "edgeai_gateway_upstream_header_duration_seconds"
LIMITED = "edgeai_gateway_rate_limited_total"
LLM_ROUTES = 'route=~"ollama|openai"'
FIVEXX = 'status_class="5xx"'
ERRORS = 'status_class=~"4xx|5xx"'
# node_exporter drops pseudo file systems itself; tmpfs and ramfs are memory, not disk
DISK = 'fstype!~"tmpfs|ramfs"'

CPU_BY_CONTAINER = (
    'sum by (name) (rate(container_cpu_usage_seconds_total{name!=""}[$__rate_interval]))'
)
MEMORY_BY_CONTAINER = 'sum by (name) (container_memory_working_set_bytes{name!=""})'
LLM_ALL_ROUTES = 'route=~"ollama|openai|ollama_admin"'
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


def overview() -> Board:
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


def gateway() -> Board:
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


def onnx_service() -> Board:
    b = Board(
        "edgeai-onnx-service",
        "ONNX service",
        COMPONENTS,
        "The ONNX inference service (Triton-named metrics): requests by outcome, throughput, "
        "batching, queue and compute time, loaded models.",
        ["onnx"],
    )
    b.row("Throughput")
    b.graph(
        "Requests by model and outcome",
        [
            Q(
                rate("onnx_service_inference_requests_total", by="model, outcome"),
                "{{model}} {{outcome}}",
            )
        ],
        unit="reqps",
    )
    b.graph(
        "Inferences per second by model and version",
        [
            Q(
                rate("onnx_service_inference_count_total", by="model, version"),
                "{{model}} v{{version}}",
            )
        ],
        unit="ops",
    )
    batch_size_panel(b)
    b.graph(
        "Pending requests by model",
        [Q("sum by (model) (onnx_service_inference_pending_requests)", "{{model}}")],
    )
    b.row("Latency")
    for title, histogram in (
        ("Request duration", "onnx_service_request_duration_seconds"),
        ("Queue duration", "onnx_service_queue_duration_seconds"),
        ("Compute duration", "onnx_service_compute_duration_seconds"),
    ):
        b.graph(f"{title} by model (p50, p95)", percentiles(histogram, "model"), unit="s", width=8)
    b.row("Models")
    b.table(
        "Loaded model versions",
        [Q("max by (instance, model, version) (onnx_service_model_loaded)", instant=True)],
        width=12,
    )
    b.graph(
        "Average model load time",
        [
            Q(
                "sum by (model) (onnx_service_model_load_duration_seconds_sum) / "
                "sum by (model) (onnx_service_model_load_duration_seconds_count)",
                "{{model}}",
            )
        ],
        unit="s",
        width=12,
    )
    b.graph(
        "Model load failures (last hour)",
        [
            Q(
                "sum by (model) (increase(onnx_service_model_load_failures_total[1h]))",
                "{{model}}",
                requires=NEEDS_LOAD_FAILURE,
            )
        ],
        width=12,
    )
    b.graph(
        "Replicas up",
        [Q('sum(up{job="onnx_service"})', "up"), Q('count(up{job="onnx_service"})', "scraped")],
        width=12,
    )
    return b


def ollama() -> Board:
    b = Board(
        "edgeai-ollama",
        "Ollama",
        COMPONENTS,
        "The LLM server: availability, version and models (Ollama exporter), requests and time "
        "to first byte at the gateway.",
        ["ollama", "llm"],
    )
    b.row("Server")
    b.stat("Ollama up", Q("min(ollama_up)"), thresholds=GREEN_WHEN_UP)
    b.stat("Models present", Q("count(ollama_model_present)"))
    b.stat("Models loaded", Q("sum(ollama_model_loaded)"))
    b.table(
        "Version",
        [Q("max by (instance, version) (ollama_build_info)", instant=True)],
        width=12,
    )
    b.row("Models")
    b.table(
        "Model size",
        [Q("max by (model) (ollama_model_size_bytes)", instant=True)],
        width=12,
        unit="bytes",
    )
    b.graph(
        "Loaded model memory",
        [
            Q(
                "max by (model) (ollama_model_loaded_memory_bytes)",
                "{{model}}",
                requires=NEEDS_LOADED_LLM,
            )
        ],
        unit="bytes",
    )
    b.row("Requests through the gateway")
    requests_by_route_and_status(b, "Requests by route and status class", LLM_ALL_ROUTES)
    requests_by_client(b, LLM_ROUTES)
    ttfb_panel(b, "Time to first byte (p50, p95)", LLM_ROUTES)
    b.graph(
        "Full response time (p95)",
        [Q(quantile(0.95, DUR, "route", LLM_ROUTES), "{{route}}")],
        unit="s",
    )
    return b


def host() -> Board:
    b = Board(
        "edgeai-host",
        "Host",
        COMPONENTS,
        "The edge host (node_exporter) and its containers (recovery service textfile; cAdvisor "
        "in production).",
        ["host"],
    )
    b.row("CPU and memory")
    b.graph(
        "CPU by mode",
        [
            Q(
                'sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval])) '
                '/ scalar(count(node_cpu_seconds_total{mode="idle"}))',
                "{{mode}}",
            )
        ],
        unit="percentunit",
        stacked=True,
    )
    b.graph(
        "Load average",
        [Q("node_load1", "1m"), Q("node_load5", "5m"), Q("node_load15", "15m")],
    )
    b.graph(
        "Memory",
        [
            Q("node_memory_MemTotal_bytes", "total"),
            Q("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", "used"),
            Q("node_memory_MemAvailable_bytes", "available"),
        ],
        unit="bytes",
    )
    b.graph(
        "Network traffic",
        [
            Q(rate("node_network_receive_bytes_total", NOT_LO, "device"), "in {{device}}"),
            Q(
                rate("node_network_transmit_bytes_total", NOT_LO, "device"),
                "out {{device}}",
            ),
        ],
        unit="Bps",
    )
    b.row("Disks")
    disk_used_panel(b)
    b.graph(
        "Free space in 24 h (linear prediction)",
        [
            Q(
                f"predict_linear(node_filesystem_avail_bytes{{{DISK}}}[1h], 24 * 3600)",
                "{{mountpoint}}",
            )
        ],
        unit="bytes",
        description="Below zero: the disk fills within a day at the last hour's pace.",
    )
    b.graph(
        "Disk throughput",
        [
            Q(rate("node_disk_read_bytes_total", by="device"), "read {{device}}"),
            Q(rate("node_disk_written_bytes_total", by="device"), "write {{device}}"),
        ],
        unit="Bps",
        width=24,
    )
    b.row("Containers")
    b.table(
        "Containers",
        [
            Q(
                "max by (name, role) (edgeai_container_running)",
                instant=True,
                requires=NEEDS_TEXTFILE,
            ),
            Q(
                "max by (name, role) (edgeai_container_unhealthy)",
                instant=True,
                requires=NEEDS_TEXTFILE,
            ),
            Q(
                "max by (name, role) (edgeai_container_restarts)",
                instant=True,
                requires=NEEDS_TEXTFILE,
            ),
        ],
        width=12,
    )
    b.graph(
        "Automatic restarts (last hour)",
        [
            Q(
                "sum by (name) (increase(edgeai_autoheal_restarts_total[1h]))",
                "{{name}}",
                requires=NEEDS_TEXTFILE,
            )
        ],
    )
    container_usage_panels(b)
    return b


def monitoring() -> Board:
    b = Board(
        "edgeai-monitoring",
        "Monitoring",
        COMPONENTS,
        "The monitoring stack itself: scrape targets, Prometheus storage and rules, "
        "Alertmanager notifications, Grafana.",
        ["monitoring"],
    )
    b.row("Targets")
    b.table("Scrape targets", [Q("max by (job, instance) (up)", instant=True)], width=12)
    b.graph(
        "Scrape duration by job",
        [Q("max by (job) (scrape_duration_seconds)", "{{job}}")],
        unit="s",
    )
    b.row("Prometheus")
    b.graph("Head series", [Q("sum(prometheus_tsdb_head_series)", "series")], width=8)
    b.graph(
        "Samples appended per second",
        [Q(rate("prometheus_tsdb_head_samples_appended_total"), "samples")],
        width=8,
    )
    b.graph(
        "Storage used by blocks",
        [Q("sum(prometheus_tsdb_storage_blocks_bytes)", "blocks")],
        unit="bytes",
        width=8,
    )
    b.graph(
        "Rule evaluations and failures",
        [
            Q(rate("prometheus_rule_evaluations_total"), "evaluations"),
            Q(rate("prometheus_rule_evaluation_failures_total"), "failures"),
        ],
        unit="ops",
    )
    b.table(
        "Firing and pending alerts",
        [Q("ALERTS", instant=True, requires=NEEDS_ALERT)],
        width=12,
    )
    b.row("Alertmanager")
    b.graph(
        "Alerts by state",
        [Q("sum by (state) (alertmanager_alerts)", "{{state}}")],
    )
    b.graph(
        "Notifications and failures by integration",
        [
            Q(rate("alertmanager_notifications_total", by="integration"), "sent {{integration}}"),
            Q(
                rate("alertmanager_notifications_failed_total", by="integration"),
                "failed {{integration}}",
            ),
        ],
        unit="ops",
    )
    b.row("Grafana")
    b.table(
        "Grafana version",
        [Q("max by (instance, version, edition) (grafana_build_info)", instant=True)],
        width=12,
    )
    b.graph(
        "Grafana HTTP requests by status",
        [
            Q(
                rate("grafana_http_request_duration_seconds_count", by="status_code"),
                "{{status_code}}",
            )
        ],
        unit="reqps",
    )
    return b


BOARDS = (overview, gateway, onnx_service, ollama, host, monitoring)
