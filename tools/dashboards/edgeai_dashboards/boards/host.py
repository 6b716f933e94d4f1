"""The host dashboard: CPU, memory, disk, network, containers and certificates."""

from __future__ import annotations

from ..panels import Board, Q, rate
from .common import (
    COMPONENTS,
    DISK,
    NEEDS_TEXTFILE,
    NOT_LO,
    container_usage_panels,
    disk_used_panel,
)


def board() -> Board:
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
