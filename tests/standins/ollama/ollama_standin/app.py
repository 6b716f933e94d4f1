"""The FastAPI application: routers, error shapes and the ``X-Standin`` header."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import native, openai_compat
from .backend import AutoBackend, BackendError, GenerationBackend
from .common import DEFAULT_KEEP_ALIVE, OllamaError, StandinState, now, parse_keep_alive
from .cors import OriginCheck, allowed_origins
from .openai_compat import OpenAIError
from .scheduler import Scheduler
from .store import ModelRecord, ModelStore, default_models_dir

STANDIN_HEADER = (b"x-standin", b"ollama")


@dataclass(frozen=True)
class Settings:
    """Read from the environment like Ollama: OLLAMA_HOST, OLLAMA_MODELS."""

    host: str
    port: int
    models: Path
    token_delay: float
    num_parallel: int = 1
    max_queue: int = 512
    max_loaded: int = 1
    context_length: int = 4096
    keep_alive: timedelta | None = DEFAULT_KEEP_ALIVE
    origins: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        host, port = parse_host(env.get("OLLAMA_HOST", ""))
        return cls(
            host=host,
            port=port,
            models=default_models_dir(),
            token_delay=float(env.get("OLLAMA_STANDIN_TOKEN_DELAY", "0")),
            num_parallel=int(env.get("OLLAMA_NUM_PARALLEL") or 1),
            max_queue=int(env.get("OLLAMA_MAX_QUEUE") or 512),
            max_loaded=int(env.get("OLLAMA_MAX_LOADED_MODELS") or 1),
            context_length=int(env.get("OLLAMA_CONTEXT_LENGTH") or 4096),
            keep_alive=parse_keep_alive(env.get("OLLAMA_KEEP_ALIVE")),
            origins=env.get("OLLAMA_ORIGINS", ""),
        )


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
    token_delay: float = 0.0,
    *,
    num_parallel: int = 1,
    max_queue: int = 512,
    max_loaded: int = 1,
    context_length: int = 4096,
    keep_alive: timedelta | None = DEFAULT_KEEP_ALIVE,
    expiry_interval: float = 1.0,
    origins: str = "",
) -> FastAPI:
    """The stand-in. ``backend`` loads models (default: llama.cpp, deterministic for the
    catalog); ``token_delay`` paces streamed pieces (seconds, for tests of the HTTP layer)."""
    store = ModelStore(models_dir or default_models_dir())

    def blob_path(record: ModelRecord) -> Path:
        layer = record.model_layer
        if layer is None:
            raise BackendError(f"model '{record.name.display}' has no model layer")
        return store.blob_path(layer.digest)

    scheduler = Scheduler(
        backend or AutoBackend(),
        blob_path,
        num_parallel=num_parallel,
        max_queue=max_queue,
        max_loaded=max_loaded,
        context_length=context_length,
        now=now,
    )
    state = StandinState(
        store=store, scheduler=scheduler, token_delay=token_delay, default_keep_alive=keep_alive
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.standin = state
        expiry = asyncio.create_task(scheduler.run_expiry(expiry_interval))
        try:
            yield
        finally:
            expiry.cancel()
            await scheduler.close()

    app = FastAPI(
        title="Ollama stand-in",
        description="Implements a subset of Ollama's HTTP API with llama.cpp. Not Ollama.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.standin = state
    app.include_router(native.router)
    app.include_router(openai_compat.router)
    app.add_middleware(OriginCheck, origins=allowed_origins(origins))
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
