"""OpenAI-compatible embeddings: ``POST /openai/v1/embeddings`` for the text models.

Request and answer have OpenAI's shapes (``input`` a string or a list of strings, ``model``,
``encoding_format`` ``float`` or ``base64``, ``dimensions``; ``{"object": "list", "data":
[{"object": "embedding", "index", "embedding"}], "model", "usage": {"prompt_tokens",
"total_tokens"}}``) and errors too (``{"error": {"message", "type", "param", "code"}}``), so
the official ``openai`` client works unchanged. The path is the gateway's: it routes
``/openai/v1/embeddings`` here when ``model`` names an ONNX text model and to Ollama otherwise.
The texts go through the same version, batching and metrics as an OIP infer request.
"""

import base64
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onnx_service.codec import check_elements, describe
from onnx_service.deps import Repository, counted, json_body
from onnx_service.errors import InvalidRequestError, NotFoundError, ServiceError

router = APIRouter(prefix="/openai/v1", tags=["openai"])

TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error"}


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI's clients send more (user, ...)

    model: str
    input: str | Annotated[list[str], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


def _error(exc: ServiceError) -> Response:
    code = "model_not_found" if isinstance(exc, NotFoundError) else None
    body = {
        "error": {
            "message": exc.message,
            "type": TYPES.get(exc.status_code, "server_error"),
            "param": None,
            "code": code,
        }
    }
    return Response(orjson.dumps(body), status_code=exc.status_code, media_type="application/json")


def _parse(raw: bytes) -> EmbeddingsRequest:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"malformed JSON: {exc}") from exc
    items = obj.get("input") if isinstance(obj, dict) else None
    if isinstance(items, list) and any(not isinstance(item, str) for item in items):
        raise InvalidRequestError(
            "'input' must be a string or a list of strings (token arrays are not accepted: "
            "the model's own tokenizer runs in the service)"
        )
    try:
        return EmbeddingsRequest.model_validate(obj)
    except ValidationError as exc:
        raise InvalidRequestError(describe(exc)) from exc


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    responses={code: {"model": OpenAIError} for code in (400, 404, 413, 500, 503)},
    openapi_extra=json_body(EmbeddingsRequest),
)
async def embeddings(request: Request, repository: Repository) -> Response:
    try:
        body = _parse(await request.body())
        mv = repository.get(body.model)  # counted in flight below, without an await between
        text = mv.text
        if text is None:
            raise InvalidRequestError(
                f"model '{body.model}' is not an embeddings model (its config.yaml has no "
                "text section)"
            )
        texts = [body.input] if isinstance(body.input, str) else body.input
        check_elements([len(texts)], request.app.state.settings.max_request_elements)
        if body.dimensions is not None and body.dimensions != text.width:
            raise InvalidRequestError(
                f"model '{body.model}' makes {text.width}-dimensional embeddings; "
                f"dimensions {body.dimensions} cannot be served"
            )
        cfg = text.config
        feeds = {cfg.input: np.array(texts, dtype=object)}

        async def work() -> dict[str, np.ndarray]:
            return await mv.infer(feeds, [cfg.output, cfg.tokens_output], len(texts))

        outputs = await counted(mv, work)
    except ServiceError as exc:
        return _error(exc)
    vectors = outputs[cfg.output]
    data: list[dict[str, Any]] = []
    for i, row in enumerate(vectors):
        value: Any = (
            base64.b64encode(row.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else row
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = int(outputs[cfg.tokens_output].sum())
    answer = {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Response(
        orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )
