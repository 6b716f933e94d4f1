"""Ollama's OpenAI-compatible API (/v1/chat/completions, /v1/models)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .backend import Prompt
from .common import (
    GenerationResult,
    OllamaError,
    StandinState,
    generate_tokens,
    get_state,
    unless_disconnected,
)
from .names import InvalidNameError, ModelName
from .native import render
from .prompt import chat_messages
from .store import ModelRecord

router = APIRouter(prefix="/v1")
State = Annotated[StandinState, Depends(get_state)]


class OpenAIError(Exception):
    """Answered as ``{"error": {"message", "type", "param", "code"}}``, Ollama's OpenAI shape.

    The type comes from openai/openai.go ``NewError``: the middleware's own checks pass their
    status (400 -> ``invalid_request_error``), while an error of the native handler behind it is
    rewritten by middleware/openai.go ``writeError`` with ``NewError(500, ...)``: ``api_error``,
    whatever the HTTP status (a missing model is 404 with ``api_error``)."""

    def __init__(self, status: int, message: str, *, from_handler: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.from_handler = from_handler

    @property
    def kind(self) -> str:
        if self.from_handler:
            return "api_error"
        kinds = {400: "invalid_request_error", 404: "not_found_error"}
        return kinds.get(self.status, "api_error")

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": None, "code": None}
        return JSONResponse({"error": error}, status_code=self.status)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


def _lookup(state: StandinState, raw: str) -> ModelRecord:
    try:
        record = state.store.get(ModelName.parse(raw))
    except InvalidNameError:
        record = None
    if record is None:
        raise OpenAIError(404, f"model '{raw}' not found", from_handler=True)
    return record


async def _parse(request: Request) -> ChatCompletionRequest:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise OpenAIError(400, str(exc)) from None
    if isinstance(data, dict) and not data.get("messages"):
        # middleware/openai.go ChatMiddleware
        raise OpenAIError(400, "[] is too short - 'messages'")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValueError as exc:
        raise OpenAIError(400, f"invalid request: {exc}".splitlines()[0]) from None


@router.post("/chat/completions")
async def chat_completions(request: Request, state: State) -> Response:
    body = await _parse(request)
    record = _lookup(state, body.model)
    options: dict[str, Any] = {}
    limit = (
        body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    )
    if limit is not None:
        options["num_predict"] = limit
    # Ollama maps these OpenAI fields onto its own options
    for field_name in (
        "temperature",
        "top_p",
        "seed",
        "stop",
        "frequency_penalty",
        "presence_penalty",
    ):
        value = getattr(body, field_name)
        if value is not None:
            options[field_name] = value
    messages = chat_messages([(m.role, m.text) for m in body.messages], record.system)
    try:
        prompt = Prompt(render(record, messages))
    except OllamaError as exc:
        raise OpenAIError(exc.status, exc.message, from_handler=True) from None
    keep_alive = state.keep_alive(None)
    result = GenerationResult()
    ident = f"chatcmpl-{secrets.randbelow(1000)}"
    created = int(time.time())
    base = {"id": ident, "created": created, "model": body.model, "system_fingerprint": "fp_ollama"}

    def usage() -> dict[str, int]:
        stats = result.stats()
        prompt_tokens, completion = stats["prompt_eval_count"], stats["eval_count"]
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    def finish() -> str:
        return "length" if result.done_reason == "length" else "stop"

    if not body.stream:

        async def run() -> bool:
            async for _ in generate_tokens(state, record, prompt, options, keep_alive, result):
                pass
            return True

        try:
            if await unless_disconnected(request, run()) is None:
                return Response(status_code=499)
        except OllamaError as exc:
            raise OpenAIError(exc.status, exc.message, from_handler=True) from None
        message = {"role": "assistant", "content": "".join(result.text)}
        choice = {"index": 0, "message": message, "finish_reason": finish()}
        return JSONResponse(
            {**base, "object": "chat.completion", "choices": [choice], "usage": usage()}
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    pieces = generate_tokens(state, record, prompt, options, keep_alive, result)
    try:
        # answer only once the request got a runner, so a refused one still gets its status
        first: str | None = await anext(pieces)
    except StopAsyncIteration:
        first = None
    except OllamaError as exc:
        await pieces.aclose()
        raise OpenAIError(exc.status, exc.message, from_handler=True) from None

    async def events() -> AsyncIterator[bytes]:
        if first is not None:
            delta = {"role": "assistant", "content": first}
            yield chunk([{"index": 0, "delta": delta, "finish_reason": None}])
        try:
            async for piece in pieces:
                delta = {"role": "assistant", "content": piece}
                yield chunk([{"index": 0, "delta": delta, "finish_reason": None}])
        except OllamaError as exc:
            error = {"message": exc.message, "type": "api_error", "param": None, "code": None}
            yield f"data: {json.dumps({'error': error})}\n\n".encode()
            return
        delta = {"role": "assistant", "content": ""}
        yield chunk([{"index": 0, "delta": delta, "finish_reason": finish()}])
        if include_usage:
            yield chunk([], usage=usage())
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _model_entry(record: ModelRecord, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": int(record.modified_at.timestamp()),
        "owned_by": ModelName.parse(name).namespace,
    }


@router.get("/models")
async def list_models(state: State) -> dict[str, Any]:
    # openai/openai.go ToListCompletion: a nil slice when there are no models, "data": null
    data = [_model_entry(r, r.name.display) for r in state.store.list()]
    return {"object": "list", "data": data or None}


@router.get("/models/{model:path}")
async def retrieve_model(model: str, state: State) -> dict[str, Any]:
    # openai/openai.go ToModel: the id is the name as requested
    return _model_entry(_lookup(state, model), model)
