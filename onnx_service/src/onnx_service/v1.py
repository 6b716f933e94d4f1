"""KServe V1 on /v1: model list, model status, :predict with instances or inputs."""

from fastapi import APIRouter, Request, Response

from onnx_service.codec import (
    check_elements,
    check_json_values,
    decompress,
    load_json,
    v1_feeds,
    v1_response,
)
from onnx_service.deps import Repository, counted, errors, json_body
from onnx_service.schemas import ModelReady, V1ModelList, V1PredictRequest, V1PredictResponse

router = APIRouter(prefix="/v1", tags=["v1"])


@router.get("/models", response_model=V1ModelList)
async def list_models(repository: Repository) -> V1ModelList:
    return V1ModelList(models=repository.ready_names())


@router.get("/models/{model_name}", response_model=ModelReady, responses=errors(404))
async def model_status(model_name: str, repository: Repository) -> ModelReady:
    if not repository.ready and model_name not in repository.names():  # still loading
        return ModelReady(name=model_name, ready=False)
    return ModelReady(name=model_name, ready=bool(repository.entry(model_name).serving))


@router.post(
    "/models/{model_name}:predict",
    response_model=V1PredictResponse,
    responses=errors(400, 404, 413, 500, 503),
    openapi_extra=json_body(V1PredictRequest),
)
async def predict(model_name: str, request: Request, repository: Repository) -> Response:
    body = await request.body()
    mv = repository.get(model_name)  # counted in flight (below) without an await in between
    settings = request.app.state.settings
    encoding = request.headers.get("content-encoding")

    async def work() -> Response:
        raw = decompress(body, encoding, settings.max_request_bytes)
        check_json_values(raw, settings.max_request_elements)
        feeds, rows = v1_feeds(load_json(raw), mv)
        check_elements((arr.size for arr in feeds.values()), settings.max_request_elements)
        outputs = await mv.infer(feeds, mv.output_names, mv.batch_size(feeds))
        return Response(v1_response(outputs, rows), media_type="application/json")

    return await counted(mv, work)
