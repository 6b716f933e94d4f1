"""The ONNX service dashboard: inference, queueing, batching and model loads."""

from __future__ import annotations

from ..panels import Board, Q, rate
from .common import COMPONENTS, NEEDS_LOAD_FAILURE, batch_size_panel, percentiles


def board() -> Board:
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
