"""The appliance's dashboards, one module each; ``common`` holds what several of them share.

BOARDS lists them in the order the generator writes them (and lists their queries).
"""

from __future__ import annotations

from . import gateway, host, llm_usage, monitoring, ollama, onnx_service, overview

BOARDS = (
    overview.board,
    gateway.board,
    onnx_service.board,
    ollama.board,
    llm_usage.board,
    host.board,
    monitoring.board,
)
