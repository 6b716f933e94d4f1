"""The monitoring dashboard: Prometheus, Alertmanager, Grafana and the exporters."""

from __future__ import annotations

from ..panels import Board, Q, rate
from .common import COMPONENTS, NEEDS_ALERT


def board() -> Board:
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
