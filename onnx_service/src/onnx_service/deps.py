"""FastAPI dependencies and helpers shared by both protocol routers."""

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from onnx_service.errors import InvalidRequestError, ServiceError
from onnx_service.model import ModelVersion
from onnx_service.repository import ModelRepository
from onnx_service.schemas import ErrorResponse

T = TypeVar("T")


async def get_repository(request: Request) -> ModelRepository:
    # async on purpose: FastAPI would run a plain def in its thread pool on every request
    repository: ModelRepository = request.app.state.repository
    return repository


Repository = Annotated[ModelRepository, Depends(get_repository)]


def parse_version(version: str) -> int:
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise InvalidRequestError(f"model version must be a positive integer, not '{version}'")
    return int(version)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error answers a route can give."""
    return {code: {"model": ErrorResponse} for code in codes}


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """OpenAPI request body for routes that parse their body themselves (for speed)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": ref}}}}


async def counted(mv: ModelVersion, work: Callable[[], Awaitable[T]]) -> T:
    """Run one inference request against a version: in-flight tracking and outcome metrics.

    Call it right after ``repository.get`` with no await in between.
    """
    metrics = mv.metrics
    started = perf_counter()
    mv.acquire()
    try:
        result = await work()
    except ServiceError as exc:
        outcome = "invalid_argument" if exc.status_code < 500 else "backend_error"
        metrics.requests[outcome].inc()
        raise
    finally:
        mv.release()
    metrics.requests["success"].inc()
    metrics.request_duration.observe(perf_counter() - started)
    return result
