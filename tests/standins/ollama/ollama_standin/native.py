"""Ollama's native API (/api/*), the subset the appliance's module, gateway and tests use."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from . import gguf
from .backend import BackendError, Prompt
from .catalog import CATALOG
from .common import (
    VERSION,
    GenerationResult,
    OllamaError,
    StandinState,
    collect,
    generate_tokens,
    get_state,
    guarded,
    now,
    os_error_text,
    parse_body,
    parse_name,
    timestamp,
    unless_disconnected,
)
from .gotemplate import TemplateError, go_float, go_quote
from .names import ModelName
from .prompt import DEFAULT_TEMPLATE, Message, chat_messages, generate_messages, parse
from .scheduler import QueueFullError
from .store import (
    MEDIA_LICENSE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    InvalidDigestError,
    Layer,
    ModelRecord,
    normalize_digest,
)

router = APIRouter()
State = Annotated[StandinState, Depends(get_state)]
NDJSON = "application/x-ndjson"
CHUNK = 64 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class NameRequest(_Body):
    model: str = ""
    name: str = ""
    verbose: bool = False
    insecure: bool = False
    stream: bool = True

    @property
    def target(self) -> str:
        return self.model or self.name


class CreateRequest(NameRequest):
    files: dict[str, str] | None = None
    from_: str | None = Field(default=None, alias="from")
    adapters: dict[str, str] | None = None
    quantize: str | None = None
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None


class GenerateRequest(_Body):
    model: str = ""
    prompt: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    stream: bool = True
    keep_alive: float | str | None = None
    debug_render_only: bool = Field(default=False, alias="_debug_render_only")
    suffix: str = ""


class ChatMessage(_Body):
    role: str
    content: str = ""


class ChatRequest(_Body):
    model: str = ""
    messages: list[ChatMessage] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    stream: bool = True
    keep_alive: float | str | None = None
    debug_render_only: bool = Field(default=False, alias="_debug_render_only")


async def _stream_or_single(stream: bool, factory: Any, request: Request | None = None) -> Response:
    """NDJSON when streaming; otherwise the last object, or the error with its status.

    A stream answers only once its first object is ready (as Ollama answers after the request
    got a runner), so a refused or failed request still gets its HTTP status.
    """
    if not stream:
        if request is None:
            return JSONResponse(await collect(factory))
        last = await unless_disconnected(request, collect(factory))
        return JSONResponse(last) if last is not None else Response(status_code=499)
    items = factory()
    try:
        first = await anext(items)
    except StopAsyncIteration:
        first = None
    except OllamaError:
        await items.aclose()
        raise

    async def chained() -> AsyncIterator[dict[str, Any]]:
        if first is not None:
            yield first
        async for item in items:
            yield item

    return StreamingResponse(guarded(chained), media_type=NDJSON)


def _model_json(record: ModelRecord) -> dict[str, Any]:
    return {
        "name": record.name.display,
        "model": record.name.display,
        "modified_at": timestamp(record.modified_at),
        "size": record.size,
        "digest": record.digest,
        "details": record.details,
    }


def _require(state: StandinState, raw: str) -> tuple[ModelName, ModelRecord]:
    if not raw:
        raise OllamaError(400, "model is required")
    name = parse_name(raw)
    record = state.store.get(name)
    if record is None:
        raise OllamaError(404, f"model '{raw}' not found")
    return name, record


@router.api_route("/", methods=["GET", "HEAD"], response_class=PlainTextResponse)
async def root() -> str:
    return "Ollama is running"


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> dict[str, str]:
    return {"version": VERSION}


@router.get("/api/tags")
async def tags(state: State) -> dict[str, Any]:
    return {"models": [_model_json(r) for r in state.store.list()]}


@router.get("/api/ps")
async def ps(state: State) -> dict[str, Any]:
    models = []
    for loaded in state.running().values():
        entry = _model_json(loaded.record)
        del entry["modified_at"]
        if loaded.busy or loaded.expires is None:
            keep = loaded.keep_alive
            expires = None if keep is None else now() + keep
        else:
            expires = loaded.expires
        entry["size"] = loaded.memory_bytes
        entry["expires_at"] = timestamp(expires) if expires else "2318-01-01T00:00:00Z"
        entry["size_vram"] = 0
        entry["context_length"] = loaded.context_length
        models.append(entry)
    return {"models": models}


def _go_value(value: Any, quoted: bool) -> str:
    """A parameter value as Ollama prints it: Go's %#v in /api/show's ``parameters`` (strings
    quoted with Go escapes, numbers as float64: 2048, 0.5, 1e+06), %v in the Modelfile."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_float(float(value))  # parameters are JSON numbers, float64 in Go
    text = str(value)
    return go_quote(text) if quoted else text


def _parameter_lines(parameters: dict[str, Any], quoted: bool) -> list[tuple[str, str]]:
    """One line per value (a list gives several); Ollama walks a Go map, in no fixed order: the
    stand-in sorts by name."""
    lines = []
    for key in sorted(parameters):
        values = parameters[key] if isinstance(parameters[key], list) else [parameters[key]]
        lines.extend((key, _go_value(v, quoted)) for v in values)
    return lines


def _modelfile_quote(text: str) -> str:
    """parser/parser.go ``quote``: quotes only text with a newline or an outer space."""
    if "\n" in text or text.startswith(" ") or text.endswith(" "):
        return f'"""{text}"""' if '"' in text else f'"{text}"'
    return text


def _modelfile(state: StandinState, record: ModelRecord) -> str:
    """server/images.go ``Model.String`` through parser.Command ``String``."""
    model_layer = record.model_layer
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {record.name.display}",
        "",
    ]
    if model_layer is not None:
        lines.append(f"FROM {state.store.blob_path(model_layer.digest)}")
    lines.append(f"TEMPLATE {_modelfile_quote(record.template or DEFAULT_TEMPLATE)}")
    if record.system:
        lines.append(f"SYSTEM {_modelfile_quote(record.system)}")
    lines.extend(
        f"PARAMETER {key} {_modelfile_quote(value)}"
        for key, value in _parameter_lines(record.parameters, quoted=False)
    )
    if record.license:
        lines.append(f"LICENSE {_modelfile_quote(record.license)}")
    return "\n".join(lines) + "\n"


@router.post("/api/show")
async def show(request: Request, state: State) -> dict[str, Any]:
    body = await parse_body(request, NameRequest)
    _, record = _require(state, body.target)
    response: dict[str, Any] = {
        "license": record.license,
        "modelfile": _modelfile(state, record),
        "parameters": "\n".join(
            f"{k:<30} {v}" for k, v in _parameter_lines(record.parameters, quoted=True)
        ),
        "template": record.template or DEFAULT_TEMPLATE,
        "details": record.details,
        "model_info": {
            "general.architecture": record.config.get("model_family", ""),
            "general.file_type": record.config.get("file_type", ""),
            "general.parameter_count": 0,
            "standin.note": "Ollama stand-in: llama.cpp runs GGUF files with weights; "
            "the built-in catalog models have none and answer deterministic text",
        },
        "capabilities": ["completion"],
        "modified_at": timestamp(record.modified_at),
    }
    if record.system:
        response["system"] = record.system
    return response


@router.delete("/api/delete")
async def delete(request: Request, state: State) -> Response:
    body = await parse_body(request, NameRequest)
    if not body.target:
        raise OllamaError(400, "model is required")
    name = parse_name(body.target)
    await state.scheduler.unload_model(name)
    if not state.store.delete(name):
        raise OllamaError(404, f"model '{body.target}' not found")
    return Response(status_code=200)


async def _write_blob(state: StandinState, digest: str, data: bytes) -> AsyncIterator[int]:
    """Store catalog bytes chunk by chunk, yielding the bytes completed so far."""
    fd, partial = state.store.partial_blob()
    sha = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for offset in range(0, len(data), CHUNK):
                chunk = data[offset : offset + CHUNK]
                out.write(chunk)
                sha.update(chunk)
                yield offset + len(chunk)
        state.store.commit_blob(partial, digest, "sha256:" + sha.hexdigest())
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OllamaError(500, os_error_text(exc)) from None


@router.post("/api/pull")
async def pull(request: Request, state: State) -> Response:
    body = await parse_body(request, NameRequest)
    name = parse_name(body.target)

    async def events() -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        entry = CATALOG.get(name)
        if entry is None and name.namespace == "standin":
            # the built-in catalog answers like a registry without that manifest
            raise OllamaError(500, "pull model manifest: file does not exist")
        if entry is None:
            # there is no registry behind the stand-in: answer as an offline Ollama does
            url = f"https://{name.host}/v2/{name.namespace}/{name.model}/manifests/{name.tag}"
            raise OllamaError(
                500, f'pull model manifest: Get "{url}": dial tcp: lookup {name.host}: no such host'
            )
        model = entry.model_bytes
        parts = [(MEDIA_MODEL, model), (MEDIA_TEMPLATE, entry.template.encode())]
        if entry.system:
            parts.append((MEDIA_SYSTEM, entry.system.encode()))
        parts.append((MEDIA_PARAMS, json.dumps(entry.parameters, sort_keys=True).encode()))
        layers = []
        for media_type, data in parts:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            status = f"pulling {digest[7:19]}"
            layers.append(Layer(media_type, digest, len(data)))
            total = len(data)
            if state.store.has_blob(digest):
                yield {"status": status, "digest": digest, "total": total, "completed": total}
                continue
            yield {"status": status, "digest": digest, "total": total}
            async for done in _write_blob(state, digest, data):
                yield {"status": status, "digest": digest, "total": total, "completed": done}
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        try:
            state.store.write_manifest(name, entry.config(layers[0].digest), layers)
        except OSError as exc:
            raise OllamaError(500, os_error_text(exc)) from None
        yield {"status": "removing any unused layers"}
        yield {"status": "success"}

    return await _stream_or_single(body.stream, events)


def _blob_digest(raw: str) -> str:
    try:
        return normalize_digest(raw)
    except InvalidDigestError as exc:
        raise OllamaError(400, str(exc)) from None


@router.head("/api/blobs/{digest}")
async def blob_exists(digest: str, state: State) -> Response:
    found = state.store.has_blob(_blob_digest(digest))
    return Response(status_code=200 if found else 404)


@router.post("/api/blobs/{digest}")
async def blob_upload(digest: str, request: Request, state: State) -> Response:
    expected = _blob_digest(digest)
    if state.store.has_blob(expected):
        return Response(status_code=200)
    fd, partial = state.store.partial_blob()
    sha = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
                sha.update(chunk)
        state.store.commit_blob(partial, expected, "sha256:" + sha.hexdigest())
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OllamaError(500, os_error_text(exc)) from None
    except ValueError as exc:
        raise OllamaError(400, str(exc)) from None
    return Response(status_code=201)


def _check_create(body: CreateRequest) -> ModelName:
    name = parse_name(body.target)
    if body.from_:
        raise OllamaError(400, "the Ollama stand-in creates models from 'files' only, not 'from'")
    if body.adapters or body.quantize:
        raise OllamaError(400, "the Ollama stand-in supports neither 'adapters' nor 'quantize'")
    if not body.files:
        raise OllamaError(400, "neither 'from' or 'files' was specified")
    if len(body.files) != 1:
        raise OllamaError(400, "the Ollama stand-in creates models from exactly one GGUF file")
    for filename in body.files:
        if filename.startswith("/") or ".." in filename.split("/"):
            raise OllamaError(400, "file path must be relative")
    if body.template:  # an empty template is ignored (server/create.go createModel)
        try:
            parse(body.template)
        except TemplateError as exc:
            raise OllamaError(400, f"template error: {exc}") from None
    return name


def _normalized_parameters(parameters: dict[str, Any] | None) -> dict[str, Any]:
    result = dict(parameters or {})
    if "stop" in result and not isinstance(result["stop"], list):
        result["stop"] = [result["stop"]]
    return result


@router.post("/api/create")
async def create(request: Request, state: State) -> Response:
    body = await parse_body(request, CreateRequest)
    name = _check_create(body)
    filename, raw_digest = next(iter((body.files or {}).items()))
    digest = _blob_digest(raw_digest)

    async def events() -> AsyncIterator[dict[str, Any]]:
        yield {"status": "parsing GGUF"}
        path = state.store.blob_path(digest)
        try:
            with path.open("rb") as stream:
                info = gguf.read_info(stream)
        except FileNotFoundError:
            raise OllamaError(500, f"open {path}: no such file or directory") from None
        except gguf.NotGGUFError as exc:
            status = 500 if filename.endswith(".gguf") else 400
            raise OllamaError(status, str(exc) if status == 500 else "unknown type") from None
        layers = [Layer(MEDIA_MODEL, digest, path.stat().st_size)]
        yield {"status": f"using existing layer {digest}"}
        texts = [(MEDIA_TEMPLATE, body.template), (MEDIA_SYSTEM, body.system)]
        license_text = "\n".join(body.license) if isinstance(body.license, list) else body.license
        texts.append((MEDIA_LICENSE, license_text))
        parameters = _normalized_parameters(body.parameters)
        if parameters:
            texts.append((MEDIA_PARAMS, json.dumps(parameters, sort_keys=True)))
        try:
            for media_type, text in texts:
                if not text:
                    continue
                layer = state.store.layer(media_type, text.encode())
                layers.append(layer)
                yield {"status": f"creating new layer {layer.digest}"}
            config = {
                "model_format": "gguf",
                "model_family": info.architecture,
                "model_families": [info.architecture],
                "model_type": str(info.metadata.get("general.size_label", "")),
                "file_type": str(info.metadata.get("general.file_type", "")),
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [digest]},
            }
            yield {"status": "writing manifest"}
            state.store.write_manifest(name, config, layers)
        except OSError as exc:
            raise OllamaError(500, os_error_text(exc)) from None
        yield {"status": "success"}

    return await _stream_or_single(body.stream, events)


def _final(result: GenerationResult) -> dict[str, Any]:
    return {"done": True, "done_reason": result.done_reason, **result.stats()}


async def load_or_unload(state: StandinState, record: ModelRecord, keep_alive: Any) -> str:
    """An empty prompt or message list loads the model, or unloads it with keep_alive 0."""
    duration = state.keep_alive(keep_alive)
    try:
        await state.scheduler.load(record, duration)
    except QueueFullError as exc:
        raise OllamaError(503, str(exc)) from None
    except BackendError as exc:
        raise OllamaError(500, str(exc)) from None
    return "unload" if duration is not None and duration.total_seconds() <= 0 else "load"


def check_suffix(record: ModelRecord, suffix: str) -> None:
    """A suffix asks for the insert capability (server/routes.go GenerateHandler): a model whose
    template has no ``.Suffix`` refuses it (server/images.go CheckCapabilities, the error text of
    errCapabilities); the stand-in does not render suffixes, and says so."""
    if not suffix:
        return
    if "Suffix" not in record.template:
        raise OllamaError(400, "does not support insert")
    raise OllamaError(501, "the Ollama stand-in does not render suffixes (fill-in-the-middle)")


def render(record: ModelRecord, messages: list[Message], template: str | None = None) -> str:
    """The prompt through the request's or the model's template (template/template.go)."""
    try:
        return parse(template or record.template).execute(messages)
    except TemplateError as exc:
        raise OllamaError(500, str(exc)) from None


async def _debug_render(
    state: StandinState, record: ModelRecord, keep_alive: Any, base: dict[str, Any], text: str
) -> JSONResponse:
    """``_debug_render_only``: the rendered prompt instead of a generation (after the model is
    scheduled, as Ollama does it)."""
    await load_or_unload(state, record, keep_alive)
    debug = {"rendered_template": text}
    return JSONResponse({**base, "created_at": timestamp(), "done": False, "_debug_info": debug})


@router.post("/api/generate")
async def generate(request: Request, state: State) -> Response:
    body = await parse_body(request, GenerateRequest)
    _, record = _require(state, body.model)
    keep_alive = state.keep_alive(body.keep_alive)
    base = {"model": body.model}
    if body.raw and (body.template or body.system or body.context):
        raise OllamaError(400, "raw mode does not support template, system, or context")
    check_suffix(record, body.suffix)
    if not body.prompt:
        reason = await load_or_unload(state, record, body.keep_alive)
        return JSONResponse(
            {**base, "created_at": timestamp(), "response": "", "done": True, "done_reason": reason}
        )
    text = body.prompt
    if not body.raw:
        messages = generate_messages(body.prompt, body.system, record.system)
        text = render(record, messages, body.template)
    if body.debug_render_only:
        return await _debug_render(state, record, body.keep_alive, {**base, "response": ""}, text)
    prompt = Prompt(text)
    result = GenerationResult()

    def context() -> list[int]:
        return [int.from_bytes(hashlib.sha256(t.encode()).digest()[:2]) for t in result.text]

    async def events() -> AsyncIterator[dict[str, Any]]:
        async for piece in generate_tokens(state, record, prompt, body.options, keep_alive, result):
            if body.stream:
                yield {**base, "created_at": timestamp(), "response": piece, "done": False}
        text = "" if body.stream else "".join(result.text)
        final = {**base, "created_at": timestamp(), "response": text, **_final(result)}
        yield final if body.raw else {**final, "context": context()}

    return await _stream_or_single(body.stream, events, request)


@router.post("/api/chat")
async def chat(request: Request, state: State) -> Response:
    body = await parse_body(request, ChatRequest)
    _, record = _require(state, body.model)
    keep_alive = state.keep_alive(body.keep_alive)
    base = {"model": body.model}
    if not body.messages:
        reason = await load_or_unload(state, record, body.keep_alive)
        message = {"role": "assistant", "content": ""}
        return JSONResponse(
            {
                **base,
                "created_at": timestamp(),
                "message": message,
                "done": True,
                "done_reason": reason,
            }
        )
    messages = chat_messages([(m.role, m.content) for m in body.messages], record.system)
    text = render(record, messages)
    if body.debug_render_only:
        empty = {**base, "message": {"role": "", "content": ""}}
        return await _debug_render(state, record, body.keep_alive, empty, text)
    prompt = Prompt(text)
    result = GenerationResult()

    async def events() -> AsyncIterator[dict[str, Any]]:
        async for piece in generate_tokens(state, record, prompt, body.options, keep_alive, result):
            if body.stream:
                message = {"role": "assistant", "content": piece}
                yield {**base, "created_at": timestamp(), "message": message, "done": False}
        content = "" if body.stream else "".join(result.text)
        message = {"role": "assistant", "content": content}
        yield {**base, "created_at": timestamp(), "message": message, **_final(result)}

    return await _stream_or_single(body.stream, events, request)
