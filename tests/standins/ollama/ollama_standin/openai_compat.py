"""Ollama's OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
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
from .native import check_suffix, load_or_unload, render
from .prompt import chat_messages, generate_messages
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


class _Generation:
    """One generation behind an OpenAI route: the tokens as they come, then Ollama's usage and
    finish reason (openai/openai.go ToUsage/ToUsageGenerate, and ``finish_reason`` from
    ``done_reason``)."""

    def __init__(
        self, state: StandinState, record: ModelRecord, prompt: Prompt, options: dict[str, Any]
    ) -> None:
        self.result = GenerationResult()
        keep_alive = state.keep_alive(None)
        self.pieces = generate_tokens(state, record, prompt, options, keep_alive, self.result)

    def usage(self) -> dict[str, int]:
        stats = self.result.stats()
        prompt_tokens, completion = stats["prompt_eval_count"], stats["eval_count"]
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    def finish(self) -> str:
        return "length" if self.result.done_reason == "length" else "stop"

    @property
    def text(self) -> str:
        return "".join(self.result.text)

    async def run(self, request: Request) -> bool:
        """The whole generation; False when the client went away first (Ollama cancels it)."""

        async def drain() -> bool:
            async for _ in self.pieces:
                pass
            return True

        try:
            return await unless_disconnected(request, drain()) is not None
        except OllamaError as exc:
            raise OpenAIError(exc.status, exc.message, from_handler=True) from None

    async def first(self) -> str | None:
        """The first piece, awaited before answering: a refused request still gets its status."""
        try:
            return await anext(self.pieces)
        except StopAsyncIteration:
            return None
        except OllamaError as exc:
            await self.pieces.aclose()
            raise OpenAIError(exc.status, exc.message, from_handler=True) from None

    async def events(
        self,
        first: str | None,
        choice: Callable[[str, str | None], dict[str, Any]],
        chunk: Callable[[list[dict[str, Any]], dict[str, int] | None], bytes],
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        """A stream's server-sent events: ``first`` and every later piece as a chunk, the chunk
        with the finish reason, the usage chunk (no choices) when asked for, ``[DONE]``; an error
        of the runner ends it as an error event."""
        try:
            if first is not None:
                yield chunk([choice(first, None)], None)
            async for piece in self.pieces:
                yield chunk([choice(piece, None)], None)
        except OllamaError as exc:
            yield _error_event(exc)
            return
        yield chunk([choice("", self.finish())], None)
        if include_usage:
            yield chunk([], self.usage())
        yield b"data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _error_event(exc: OllamaError) -> bytes:
    error = {"message": exc.message, "type": "api_error", "param": None, "code": None}
    return f"data: {json.dumps({'error': error})}\n\n".encode()


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
    generation = _Generation(state, record, prompt, options)
    ident = f"chatcmpl-{secrets.randbelow(1000)}"
    created = int(time.time())
    base = {"id": ident, "created": created, "model": body.model, "system_fingerprint": "fp_ollama"}

    if not body.stream:
        if not await generation.run(request):
            return Response(status_code=499)
        message = {"role": "assistant", "content": generation.text}
        choice = {"index": 0, "message": message, "finish_reason": generation.finish()}
        return JSONResponse(
            {**base, "object": "chat.completion", "choices": [choice], "usage": generation.usage()}
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        extra = {} if usage is None else {"usage": usage}
        return _event({**base, "object": "chat.completion.chunk", "choices": choices, **extra})

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        delta = {"role": "assistant", "content": text}
        return {"index": 0, "delta": delta, "finish_reason": finish}

    events = generation.events(await generation.first(), choice, chunk, include_usage)
    return StreamingResponse(events, media_type="text/event-stream")


class CompletionRequest(BaseModel):
    """openai/openai.go CompletionRequest: one string prompt (no token arrays, ollama#5259)."""

    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str = ""
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float = 0.0
    seed: int | None = None
    stop: Any = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    suffix: str = ""


# the %T of a JSON value decoded into ``any`` (encoding/json), for Ollama's error texts
GO_TYPES = {
    int: "float64",
    float: "float64",
    bool: "bool",
    str: "string",
    dict: "map[string]interface {}",
    type(None): "<nil>",
}


def _completion_options(body: CompletionRequest) -> dict[str, Any]:
    """openai/openai.go FromCompleteRequest: temperature and top_p default to 1.0 here (not to
    the model's parameters), the penalties are always passed, ``stop`` may be a string or a list
    of strings."""
    options: dict[str, Any] = {}
    if isinstance(body.stop, str):
        options["stop"] = [body.stop]
    elif isinstance(body.stop, list):
        wrong = [s for s in body.stop if not isinstance(s, str)]
        if wrong:
            kind = GO_TYPES.get(type(wrong[0]), "[]interface {}")
            raise OpenAIError(400, f"invalid type for 'stop' field: {kind}")
        options["stop"] = body.stop
    if body.max_tokens is not None:
        options["num_predict"] = body.max_tokens
    options["temperature"] = 1.0 if body.temperature is None else body.temperature
    if body.seed is not None:
        options["seed"] = body.seed
    options["frequency_penalty"] = body.frequency_penalty
    options["presence_penalty"] = body.presence_penalty
    options["top_p"] = body.top_p if body.top_p != 0.0 else 1.0
    return options


@router.post("/completions")
async def completions(request: Request, state: State) -> Response:
    """middleware/openai.go CompletionsMiddleware in front of the /api/generate handler, with
    CompleteWriter's answer shapes: ``text_completion`` objects; in a stream with
    ``stream_options.include_usage`` every chunk carries a zeroed ``usage`` (ToCompleteChunk's
    ``c.Usage = &openai.Usage{}``) and the real one follows in a chunk with no choices."""
    raw = await request.body()
    try:
        body = CompletionRequest.model_validate(json.loads(raw or b"{}"))
    except ValueError as exc:
        raise OpenAIError(400, str(exc).splitlines()[0]) from None
    options = _completion_options(body)
    record = _lookup(state, body.model)
    try:
        check_suffix(record, body.suffix)
    except OllamaError as exc:
        raise OpenAIError(exc.status, exc.message, from_handler=True) from None
    ident = f"cmpl-{secrets.randbelow(999)}"
    base = {"id": ident, "object": "text_completion"}
    tail = {"model": body.model, "system_fingerprint": "fp_ollama"}
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        return {"text": text, "index": 0, "finish_reason": finish}

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        payload = {**base, "created": int(time.time()), "choices": choices, **tail}
        if include_usage:
            payload["usage"] = usage or zero
        return _event(payload)

    if not body.prompt:
        # the generate handler only loads the model: one answer saying so
        try:
            reason = await load_or_unload(state, record, None)
        except OllamaError as exc:
            raise OpenAIError(exc.status, exc.message, from_handler=True) from None
        if body.stream:
            return StreamingResponse(
                iter([chunk([choice("", reason)], None), b"data: [DONE]\n\n"]),
                media_type="text/event-stream",
            )
        whole = {**base, "created": int(time.time()), **tail, "choices": [choice("", reason)]}
        return JSONResponse({**whole, "usage": zero})
    messages = generate_messages(body.prompt, None, record.system)
    try:
        prompt = Prompt(render(record, messages))
    except OllamaError as exc:
        raise OpenAIError(exc.status, exc.message, from_handler=True) from None
    generation = _Generation(state, record, prompt, options)

    if not body.stream:
        if not await generation.run(request):
            return Response(status_code=499)
        choices = [choice(generation.text, generation.finish())]
        whole = {**base, "created": int(time.time()), **tail, "choices": choices}
        return JSONResponse({**whole, "usage": generation.usage()})

    events = generation.events(await generation.first(), choice, chunk, include_usage)
    return StreamingResponse(events, media_type="text/event-stream")


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
