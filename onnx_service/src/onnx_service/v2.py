"""Open Inference Protocol (KServe V2 / Triton HTTP) on /v2, with the repository extension.

Inference itself (the hot path) is served by :mod:`onnx_service.fastpath`.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from onnx_service import __version__
from onnx_service.codec import load_json, validate
from onnx_service.deps import Repository, errors, json_body, parse_version
from onnx_service.dtypes import CONFIG_TYPE
from onnx_service.errors import LoadError, NotFoundError, ServiceError
from onnx_service.model import ModelVersion
from onnx_service.repository import ModelRepository
from onnx_service.schemas import (
    LiveResponse,
    ModelConfigResponse,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelMetadata,
    ModelReady,
    ReadyResponse,
    RepositoryIndexEntry,
    RepositoryIndexRequest,
    ServerMetadata,
)

EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration"]
PLATFORM = "onnxruntime_onnx"

router = APIRouter(prefix="/v2", tags=["v2"])


class LoadFailedError(ServiceError):
    status_code = 400


# --- server metadata and health ------------------------------------------------------------


@router.get("", response_model=ServerMetadata)
async def server_metadata(request: Request) -> ServerMetadata:
    name: str = request.app.state.settings.server_name
    return ServerMetadata(name=name, version=__version__, extensions=EXTENSIONS)


@router.get("/health/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    return LiveResponse(live=True)


@router.get(
    "/health/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Start-up loading not finished"}},
)
async def ready(repository: Repository) -> JSONResponse:
    return JSONResponse({"ready": repository.ready}, status_code=200 if repository.ready else 503)


# --- model metadata, readiness and configuration -------------------------------------------


def _metadata(repository: ModelRepository, name: str, version: int | None) -> ModelMetadata:
    mv = repository.get(name, version)
    entry = repository.entry(name)
    return ModelMetadata(
        name=name,
        versions=[str(v) for v in sorted(entry.serving)],
        platform=PLATFORM,
        inputs=[s.metadata() for s in mv.inputs],
        outputs=[s.metadata() for s in mv.outputs],
    )


@router.get("/models/{model_name}", response_model=ModelMetadata, responses=errors(404, 503))
async def model_metadata(model_name: str, repository: Repository) -> ModelMetadata:
    return _metadata(repository, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadata,
    responses=errors(400, 404, 503),
)
async def model_version_metadata(
    model_name: str, model_version: str, repository: Repository
) -> ModelMetadata:
    return _metadata(repository, model_name, parse_version(model_version))


def _ready(repository: ModelRepository, name: str, version: int | None) -> JSONResponse:
    if not repository.ready and name not in repository.names():  # still loading at start-up
        return JSONResponse({"name": name, "ready": False}, status_code=503)
    entry = repository.entry(name)
    if version is not None and version not in entry.serving and version not in entry.statuses:
        raise NotFoundError(f"unknown version {version} of model '{name}'")
    ok = bool(entry.serving) if version is None else version in entry.serving
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **errors(400, 404),
    503: {"model": ModelReady, "description": "Known but not ready"},
}


@router.get("/models/{model_name}/ready", response_model=ModelReady, responses=READY_RESPONSES)
async def model_ready(model_name: str, repository: Repository) -> JSONResponse:
    return _ready(repository, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReady,
    responses=READY_RESPONSES,
)
async def model_version_ready(
    model_name: str, model_version: str, repository: Repository
) -> JSONResponse:
    return _ready(repository, model_name, parse_version(model_version))


def _config(mv: ModelVersion) -> ModelConfigResponse:
    cfg = mv.config
    batch_dims = 1 if cfg.max_batch_size and mv.batched else 0

    def tensors(specs: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "data_type": CONFIG_TYPE[s.datatype],
                "dims": list(s.shape[batch_dims:]),
            }
            for s in specs
        ]

    return ModelConfigResponse(
        name=mv.name,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=cfg.max_batch_size if batch_dims else 0,
        input=tensors(mv.inputs),
        output=tensors(mv.outputs),
        dynamic_batching=(
            {"max_queue_delay_microseconds": cfg.dynamic_batching.max_queue_delay_us}
            if cfg.dynamic_batching
            else None
        ),
        instance_group=[{"count": cfg.instance_count, "kind": "KIND_CPU"}],
        version_policy=cfg.version_policy.model_dump(exclude_defaults=True) or {"latest": 1},
        parameters={
            "execution_providers": mv.providers,
            # not a field of Triton's ModelDynamicBatching: a model parameter, as in gRPC
            **(
                {"adaptive_queue_delay": cfg.dynamic_batching.adaptive_queue_delay}
                if cfg.dynamic_batching
                else {}
            ),
        },
    )


@router.get(
    "/models/{model_name}/config", response_model=ModelConfigResponse, responses=errors(404, 503)
)
async def model_config(model_name: str, repository: Repository) -> ModelConfigResponse:
    return _config(repository.get(model_name))


@router.get(
    "/models/{model_name}/versions/{model_version}/config",
    response_model=ModelConfigResponse,
    responses=errors(400, 404, 503),
)
async def model_version_config(
    model_name: str, model_version: str, repository: Repository
) -> ModelConfigResponse:
    return _config(repository.get(model_name, parse_version(model_version)))


# --- repository extension -------------------------------------------------------------------


@router.post(
    "/repository/index",
    response_model=list[RepositoryIndexEntry],
    responses=errors(400),
    openapi_extra=json_body(RepositoryIndexRequest, required=False),
)
async def repository_index(request: Request, repository: Repository) -> JSONResponse:
    options = validate(RepositoryIndexRequest, load_json(await request.body(), empty={}))
    return JSONResponse(repository.index(ready_only=options.ready))


def _check_load_parameters(parameters: dict[str, Any] | None) -> None:
    for key in parameters or {}:
        if key == "config" or key.startswith("file:"):
            raise LoadFailedError(f"load parameter '{key}' (config override) is not supported")


@router.post(
    "/repository/models/{model_name}/load",
    response_model=ModelLoadResponse,
    responses=errors(400, 404),
    openapi_extra=json_body(ModelLoadRequest, required=False),
)
async def load_model(model_name: str, request: Request, repository: Repository) -> JSONResponse:
    options = validate(ModelLoadRequest, load_json(await request.body(), empty={}))
    _check_load_parameters(options.parameters)
    try:
        versions = await repository.load(model_name)
    except LoadError as exc:
        raise LoadFailedError(str(exc)) from exc
    return JSONResponse({"name": model_name, "versions": [str(v) for v in versions]})


@router.post(
    "/repository/models/{model_name}/unload",
    response_model=ModelLoadResponse,
    responses=errors(400, 404),
    openapi_extra=json_body(ModelLoadRequest, required=False),
)
async def unload_model(model_name: str, request: Request, repository: Repository) -> JSONResponse:
    validate(ModelLoadRequest, load_json(await request.body(), empty={}))
    await repository.unload(model_name)
    return JSONResponse({"name": model_name, "versions": []})
