"""The FastAPI application: routers, error shapes and the ``X-Standin`` header."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import native, openai_compat
from .backend import DeterministicBackend, GenerationBackend
from .common import OllamaError, StandinState
from .openai_compat import OpenAIError
from .store import ModelStore, default_models_dir

STANDIN_HEADER = (b"x-standin", b"ollama")


@dataclass(frozen=True)
class Settings:
    """Read from the environment like Ollama: OLLAMA_HOST, OLLAMA_MODELS."""

    host: str
    port: int
    models: Path
    token_delay: float

    @classmethod
    def from_env(cls) -> Settings:
        host, port = parse_host(os.environ.get("OLLAMA_HOST", ""))
        delay = float(os.environ.get("OLLAMA_STANDIN_TOKEN_DELAY", "0.005"))
        return cls(host=host, port=port, models=default_models_dir(), token_delay=delay)


def parse_host(value: str) -> tuple[str, int]:
    """OLLAMA_HOST as Ollama reads it: ``[scheme://]host[:port]``, default 127.0.0.1:11434."""
    text = value.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.rstrip("/")
    host, port = text, 11434
    if text.startswith("["):
        closing = text.index("]")
        host = text[1:closing]
        if text[closing + 1 :].startswith(":"):
            port = int(text[closing + 2 :])
    elif text.count(":") == 1:
        host, raw_port = text.split(":")
        port = int(raw_port)
    return host or "127.0.0.1", port


class StandinHeader:
    """Pure ASGI middleware: mark every response as coming from the stand-in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), STANDIN_HEADER]
            await send(message)

        await self.app(scope, receive, marked)


def create_app(
    models_dir: Path | None = None,
    backend: GenerationBackend | None = None,
    token_delay: float = 0.005,
) -> FastAPI:
    store = ModelStore(models_dir or default_models_dir())
    state = StandinState(
        store=store, backend=backend or DeterministicBackend(), token_delay=token_delay
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.standin = state
        yield

    app = FastAPI(
        title="Ollama stand-in",
        description="Implements a subset of Ollama's HTTP API for tests. Not Ollama.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.standin = state
    app.include_router(native.router)
    app.include_router(openai_compat.router)
    app.add_middleware(StandinHeader)

    @app.exception_handler(OllamaError)
    async def ollama_error(_: Request, exc: OllamaError) -> Response:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(OpenAIError)
    async def openai_error(_: Request, exc: OpenAIError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def not_found(_: Request, exc: StarletteHTTPException) -> Response:
        # Ollama's router (gin) answers unknown paths and methods with plain text 404.
        if exc.status_code in (404, 405):
            return PlainTextResponse("404 page not found", status_code=404)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    return app
