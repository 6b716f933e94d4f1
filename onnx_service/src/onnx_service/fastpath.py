"""OIP inference as plain ASGI, in front of FastAPI: the hot path skips FastAPI's routing,
dependency and middleware machinery (which costs more than a small model's session.run).
:func:`infer_route` builds the chain that :class:`onnx_service.app.ServiceApp` hands infer
requests to; its OpenAPI description is added to the schema by :func:`infer_openapi_paths`.
"""

import re
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from onnx_service.codec import decode_infer, decompress, encode_infer
from onnx_service.deps import counted, parse_version
from onnx_service.errors import ServiceError
from onnx_service.repository import ModelRepository

INFER_PATH = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


class _DisconnectedError(Exception):
    """The client went away before its request body arrived."""


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def infer(
    *,
    repository: ModelRepository,
    limit: int,
    max_elements: int,
    name: str,
    version: str | None,
    body: bytes,
    headers: Headers,
) -> tuple[bytes, dict[str, str]]:
    """One OIP infer request: the response body and its extra headers."""
    number = parse_version(version) if version is not None else None
    # No await between choosing the version and counting the request in flight: a swap in
    # between could otherwise retire (and close) the version this request holds.
    mv = repository.get(name, number)

    async def work() -> tuple[bytes, dict[str, str]]:
        raw = decompress(body, headers.get("content-encoding"), limit)
        split = headers.get("inference-header-content-length")
        decoded = decode_infer(raw, split, mv, max_elements)
        outputs = await mv.infer(decoded.feeds, decoded.wanted, mv.batch_size(decoded.feeds))
        return encode_infer(mv, decoded.request.id, outputs, decoded.binary)

    return await counted(mv, work)


def infer_match(scope: Scope) -> re.Match[str] | None:
    """The model and version of an OIP infer request; None for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    return INFER_PATH.match(scope["path"])


class InferEndpoint:
    """Answers ``POST /v2/models/{m}[/versions/{v}]/infer`` (and nothing else)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = infer_match(scope)
        assert match is not None, "only infer requests are routed here"
        state = scope["app"].state
        try:
            body = await _read_body(receive)
            content, extra = await infer(
                repository=state.repository,
                limit=state.settings.max_request_bytes,
                max_elements=state.settings.max_request_elements,
                name=match["model"],
                version=match["version"],
                body=body,
                headers=Headers(scope=scope),
            )
            status = 200
        except _DisconnectedError:
            return
        except ServiceError as exc:
            content, extra, status = orjson.dumps({"error": exc.message}), {}, exc.status_code
        media = b"application/octet-stream" if extra else b"application/json"
        headers = [
            (b"content-type", media),
            (b"content-length", str(len(content)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in extra.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def infer_openapi_paths() -> dict[str, Any]:
    """OpenAPI path items for the two infer routes (components: InferRequest/Response)."""

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    error = {"content": {"application/json": {"schema": ref("ErrorResponse")}}}
    responses = {
        "200": {
            "description": "Outputs; binary_tensor_data answers put raw tensors after the JSON",
            "content": {
                "application/json": {"schema": ref("InferResponse")},
                "application/octet-stream": {},
            },
        },
        "400": {"description": "Bad request", **error},
        "404": {"description": "Unknown model or version", **error},
        "413": {"description": "Body over the limit", **error},
        "500": {"description": "onnxruntime failed", **error},
        "503": {"description": "Model or version not ready", **error},
    }

    def param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    def operation(operation_id: str, params: list[str]) -> dict[str, Any]:
        return {
            "post": {
                "tags": ["v2"],
                "summary": "Infer",
                "operationId": operation_id,
                "parameters": [param(p) for p in params],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("InferRequest")}},
                },
                "responses": responses,
            }
        }

    return {
        "/v2/models/{model_name}/infer": operation("infer", ["model_name"]),
        "/v2/models/{model_name}/versions/{model_version}/infer": operation(
            "infer_version", ["model_name", "model_version"]
        ),
    }
