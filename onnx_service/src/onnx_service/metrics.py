"""Prometheus metrics with the semantics of Triton's nv_inference_* family."""

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

OUTCOMES = ("success", "invalid_argument", "backend_error")


@dataclass(frozen=True)
class VersionMetrics:
    """The labelled children for one model version, bound once at load time."""

    requests: dict[str, Counter]
    inference_count: Counter
    exec_count: Counter
    pending: Gauge
    request_duration: Histogram
    queue_duration: Histogram
    compute_duration: Histogram


class Metrics:
    """All metrics of one service instance, in their own registry."""

    def __init__(self) -> None:
        # Triton exports no *_created series; they only add noise here (process-wide switch).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        labels = ("model", "version")
        self.requests = Counter(
            "onnx_service_inference_requests",
            "Inference requests that reached a model, by outcome.",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.inference_count = Counter(
            "onnx_service_inference_count",
            "Inferences performed (a request with a batch of N counts N).",
            labels,
            registry=self.registry,
        )
        self.exec_count = Counter(
            "onnx_service_inference_exec_count",
            "Model executions (session.run calls); inference_count / exec_count = batch size.",
            labels,
            registry=self.registry,
        )
        self.pending = Gauge(
            "onnx_service_inference_pending_requests",
            "Requests waiting for an execution to start.",
            labels,
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "onnx_service_request_duration_seconds",
            "Time from the request body being read to the response being ready.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_duration = Histogram(
            "onnx_service_queue_duration_seconds",
            "Time a request waited before its execution started.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_duration = Histogram(
            "onnx_service_compute_duration_seconds",
            "Time of the session.run that served a request.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "onnx_service_model_loaded",
            "1 while a model version is loaded and serving.",
            labels,
            registry=self.registry,
        )
        self.load_failures = Counter(
            "onnx_service_model_load_failures",
            "Failed attempts to load a model (bad config or a version that would not load).",
            ("model",),
            registry=self.registry,
        )
        self.inflight = Gauge(
            "onnx_service_inflight_requests",
            "Inference requests being handled now (read, queued, run or answered).",
            registry=self.registry,
        )
        self.overload_rejections = Counter(
            "onnx_service_overload_rejections",
            "Inference requests refused with 503 because max_inflight_requests were in flight.",
            registry=self.registry,
        )
        self.load_duration = Histogram(
            "onnx_service_model_load_duration_seconds",
            "Time to create an onnxruntime session for a model version.",
            ("model",),
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )

    def for_version(self, model: str, version: int) -> VersionMetrics:
        """Labelled children for one version (created eagerly so they show up as 0)."""
        v = str(version)
        return VersionMetrics(
            requests={o: self.requests.labels(model, v, o) for o in OUTCOMES},
            inference_count=self.inference_count.labels(model, v),
            exec_count=self.exec_count.labels(model, v),
            pending=self.pending.labels(model, v),
            request_duration=self.request_duration.labels(model, v),
            queue_duration=self.queue_duration.labels(model, v),
            compute_duration=self.compute_duration.labels(model, v),
        )
