"""The FastAPI application: routers, error answers, body limit, metrics, lifespan."""

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from time import perf_counter
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onnx_service import __version__, embeddings, grpc_server, v1, v2
from onnx_service.embeddings import EmbeddingsRequest
from onnx_service.errors import OverloadedError, PayloadTooLargeError, ServiceError
from onnx_service.fastpath import InferEndpoint, infer_match, infer_openapi_paths
from onnx_service.metrics import Metrics
from onnx_service.repository import ModelRepository
from onnx_service.schemas import (
    ErrorResponse,
    InferRequest,
    InferResponse,
    ModelLoadRequest,
    RepositoryIndexRequest,
    V1PredictRequest,
)
from onnx_service.settings import Settings

log = logging.getLogger("onnx_service")

# Bodies that routes parse themselves; their schemas are added to the OpenAPI components.
SELF_PARSED: tuple[type[BaseModel], ...] = (
    InferRequest,
    RepositoryIndexRequest,
    ModelLoadRequest,
    V1PredictRequest,
    EmbeddingsRequest,
)


class BodyLimit:
    """Answers 413 for request bodies over the limit, declared or streamed (pure ASGI)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = _error(PayloadTooLargeError(self._message()))
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLargeError(self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body is over the {self.limit}-byte limit"


# POSTs under these prefixes are inference: /v2/models/{m}[/versions/{v}]/infer,
# /v1/models/{m}:predict, /openai/v1/embeddings.
INFERENCE_PREFIXES = ("/v2/models/", "/v1/models/", "/openai/")


class Admission:
    """The bound on inference requests in flight, shared by HTTP and gRPC."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.metrics = metrics
        self.inflight = 0

    def enter(self) -> None:
        """Count one request in; raises OverloadedError at the limit."""
        if self.inflight >= self.limit:
            self.metrics.overload_rejections.inc()
            raise OverloadedError(self.limit)
        self.inflight += 1
        self.metrics.inflight.set(self.inflight)

    def leave(self) -> None:
        self.inflight -= 1
        self.metrics.inflight.set(self.inflight)


class InflightLimit:
    """Bounds the inference requests handled at once (pure ASGI, outermost).

    A request counts from its first byte until its answer is sent, so the memory that bodies,
    parsed tensors and outputs take is bounded by the limit times the per-request limits.
    Over the limit the answer is an immediate ``503`` with ``Retry-After: 1``; health,
    metadata, repository and metrics routes are never refused.
    """

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(INFERENCE_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        try:
            self.admission.enter()
        except OverloadedError as exc:
            response = _error(exc)
            response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave()


class ServiceApp(FastAPI):
    """FastAPI, with OIP infer requests answered before its per-request machinery.

    ``POST /v2/models/{m}[/versions/{v}]/infer`` goes straight to a plain ASGI chain (the
    in-flight bound, the body limit, the endpoint); FastAPI's own middleware (its error pages
    and telemetry) costs more per request than a small model's session.run. Every other
    request takes FastAPI's path. An unexpected exception on the fast path gets the same
    answer as anywhere else: a generic JSON 500, the details in the log.
    """

    infer_route: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.infer_route
        if route is None or infer_match(scope) is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await route(scope, receive, tracked)
        except Exception as exc:
            log.error("unhandled error on POST %s", scope["path"], exc_info=exc)
            if not started:
                answer = JSONResponse(
                    {"error": "internal error (the reason is in the service log)"},
                    status_code=500,
                )
                await answer(scope, receive, send)


def _error(exc: ServiceError) -> Response:
    return Response(
        orjson.dumps({"error": exc.message}),
        status_code=exc.status_code,
        media_type="application/json",
    )


async def _service_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return _error(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": message or "invalid request"}, status_code=400)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The exception's text goes to the log only: it can hold paths, values and internals.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": "internal error (the reason is in the service log)"}, status_code=500
    )


async def _poll_forever(repository: ModelRepository, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await repository.poll()
        except Exception:
            log.exception("repository poll failed")


async def _load_then_poll(repository: ModelRepository, settings: Settings) -> None:
    """Start-up loading, in the background: the server listens (and is live) at once and
    becomes ready when every model has been tried; then polling, if configured."""
    if settings.model_repository.is_dir():
        started = perf_counter()
        await repository.load_all()
        log.info(
            "start-up loading done in %.1f s: serving %s",
            perf_counter() - started,
            ", ".join(repository.ready_names()) or "no model",
        )
    else:
        log.error("model repository %s does not exist", settings.model_repository)
        repository.ready = True
    if settings.poll_interval_s > 0:
        await _poll_forever(repository, settings.poll_interval_s)


def _lifespan(
    settings: Settings, metrics: Metrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up and shut-down: the repository (loading in the background), the thread pool,
    the gRPC server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers = settings.inference_threads or os.cpu_count() or 1
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ort")
        repository = ModelRepository(
            settings.model_repository, metrics, executor, settings.inline_compute_us / 1e6
        )
        app.state.repository = repository
        background = asyncio.create_task(_load_then_poll(repository, settings))
        grpc = None
        if settings.grpc_port:
            grpc = await grpc_server.start(
                app.state, settings.host, settings.grpc_port, settings.max_request_bytes
            )
            app.state.grpc_port = grpc.bound_port
        try:
            yield
        finally:
            if grpc is not None:
                await grpc.stop(grace=5)
            background.cancel()
            with suppress(asyncio.CancelledError):
                await background
            repository.close()
            executor.shutdown(wait=True)

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. The lifespan starts loading the models in the background: the
    server listens at once (live), and is ready when start-up loading is done."""
    settings = settings or Settings()
    metrics = Metrics()

    app = ServiceApp(
        title="onnx_service",
        version=__version__,
        description=(
            "ONNX inference: KServe V1 on /v1, Open Inference Protocol on /v2, "
            "OpenAI-compatible embeddings on /openai/v1/embeddings."
        ),
        lifespan=_lifespan(settings, metrics),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(v2.router)
    app.include_router(v1.router)
    app.include_router(embeddings.router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    admission = Admission(settings.max_inflight_requests, metrics)
    app.state.admission = admission
    app.add_middleware(InflightLimit, admission=admission)
    # OIP infer: the same bound and limit, without FastAPI's machinery (ServiceApp)
    app.infer_route = InflightLimit(
        BodyLimit(InferEndpoint(), limit=settings.max_request_bytes), admission=admission
    )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus metrics"}},
        tags=["metrics"],
    )
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            schema["paths"] = {**infer_openapi_paths(), **schema["paths"]}
            for model in (*SELF_PARSED, InferResponse, ErrorResponse):
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            for path in schema["paths"].values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
