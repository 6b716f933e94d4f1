"""The LLM usage dashboard: tokens and budgets per API key, latency per model (gateway llm.js)."""

from __future__ import annotations

from ..panels import Board, Q, quantile
from .common import COMPONENTS

TOKENS = "edgeai_llm_tokens_total"
TTFT = "edgeai_llm_time_to_first_token_seconds"
TPS = "edgeai_llm_tokens_per_second"
QUEUE = "edgeai_llm_queue_seconds"
DURATION = "edgeai_llm_request_duration_seconds"
NEEDS_STREAM = "a streamed LLM answer (time to first token, tokens per second)"
NEEDS_BUDGET = "an API key with a token_budget (the lab's `budget` key)"


def board() -> Board:
    b = Board(
        "edgeai-llm-usage",
        "LLM usage",
        COMPONENTS,
        "Who used how many tokens of which model, budgets, and the LLM latency clients see, "
        "from the gateway's metering (the token counts the model server reports).",
        ["ollama", "llm", "usage"],
    )
    b.row("Per API key")
    b.table(
        "Tokens per key in the last day",
        [Q(f"sum by (key, kind) (increase({TOKENS}[1d]))", instant=True)],
        width=12,
        description="Prompt and completion tokens per key name (never the key) over 24 hours.",
    )
    b.table(
        "Budget used",
        [
            Q(
                "max by (key, per) (edgeai_llm_budget_used_tokens) / "
                "max by (key, per) (edgeai_llm_budget_tokens)",
                instant=True,
                requires=NEEDS_BUDGET,
            )
        ],
        width=12,
        unit="percentunit",
        description="Share of each key's token_budget used in the current window (UTC).",
    )
    b.graph(
        "Tokens per second by key",
        [Q(f"sum by (key) (rate({TOKENS}[$__rate_interval]))", "{{key}}")],
        stacked=True,
    )
    b.graph(
        "LLM requests by key and status",
        [
            Q(
                "sum by (key, status) (rate(edgeai_llm_requests_total[$__rate_interval]))",
                "{{key}} {{status}}",
            )
        ],
        unit="reqps",
    )
    b.row("Per model")
    b.graph(
        "Time to first token (p50, p95)",
        [
            Q(quantile(0.5, TTFT, "model"), "p50 {{model}}", requires=NEEDS_STREAM),
            Q(quantile(0.95, TTFT, "model"), "p95 {{model}}", requires=NEEDS_STREAM),
        ],
        unit="s",
    )
    b.graph(
        "Tokens per second (p50)",
        [Q(quantile(0.5, TPS, "model"), "{{model}}", requires=NEEDS_STREAM)],
        description="Completion tokens after the first over the time after the first chunk.",
    )
    b.graph(
        "Completion tokens per second by model",
        [Q(f'sum by (model) (rate({TOKENS}{{kind="completion"}}[$__rate_interval]))', "{{model}}")],
    )
    b.graph(
        "Queueing and request duration (p95)",
        [
            Q(quantile(0.95, QUEUE, "model"), "queue {{model}}"),
            Q(quantile(0.95, DURATION, "model"), "total {{model}}"),
        ],
        unit="s",
        description="Queue: until the model server's response headers (waiting for a slot, "
        "loading the model); total: the whole request.",
    )
    return b
