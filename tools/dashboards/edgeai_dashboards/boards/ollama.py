"""The Ollama dashboard: LLM traffic through the gateway and the models in memory."""

from __future__ import annotations

from ..panels import Board, Q, quantile
from .common import (
    COMPONENTS,
    DUR,
    GREEN_WHEN_UP,
    LLM_ALL_ROUTES,
    LLM_ROUTES,
    NEEDS_LOADED_LLM,
    requests_by_client,
    requests_by_route_and_status,
    ttfb_panel,
)


def board() -> Board:
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
