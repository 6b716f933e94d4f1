"""Shared state, errors and helpers for the stand-in's routers."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import iterate_in_threadpool

from .backend import Completion, GenerationBackend
from .names import InvalidNameError, ModelName
from .store import ModelRecord, ModelStore

VERSION = "0.12.0-standin"
DEFAULT_KEEP_ALIVE = timedelta(minutes=5)
_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ns|us|ms|s|m|h)?$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

M = TypeVar("M", bound=BaseModel)


class OllamaError(Exception):
    """An error answered as Ollama does: ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class StandinState:
    store: ModelStore
    backend: GenerationBackend
    token_delay: float
    loaded: dict[ModelName, datetime | None] = field(default_factory=dict)

    def touch(self, name: ModelName, keep_alive: Any) -> None:
        """Mark a model loaded until its keep_alive runs out (None: forever; 0: unload)."""
        duration = parse_keep_alive(keep_alive)
        if duration is not None and duration <= timedelta(0):
            self.loaded.pop(name, None)
            return
        self.loaded[name] = None if duration is None else now() + duration

    def running(self) -> dict[ModelName, datetime | None]:
        current = now()
        for name, expires in list(self.loaded.items()):
            if expires is not None and expires <= current:
                del self.loaded[name]
        return dict(self.loaded)


def get_state(request: Request) -> StandinState:
    state: StandinState = request.app.state.standin
    return state


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 with fractional seconds, like Go's time.Time JSON encoding."""
    return (moment or now()).isoformat().replace("+00:00", "Z")


def parse_keep_alive(value: Any) -> timedelta | None:
    """Ollama's keep_alive: seconds as a number or a Go duration; negative keeps it forever."""
    if value is None or value == "":
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, bool):
        raise OllamaError(400, f"invalid keep_alive {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise OllamaError(400, f'time: invalid duration "{value}"')
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        return None
    return timedelta(seconds=seconds)


def parse_name(raw: str) -> ModelName:
    try:
        return ModelName.parse(raw)
    except InvalidNameError as exc:
        raise OllamaError(400, str(exc)) from None


async def parse_body(request: Request, model: type[M]) -> M:
    """Decode and validate a JSON body, answering 400 with Ollama's messages on failure."""
    raw = await request.body()
    if not raw.strip():
        raise OllamaError(400, "missing request body")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise OllamaError(400, f"invalid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise OllamaError(400, f"invalid {where}: {first['msg']}") from None


def os_error_text(exc: OSError, action: str = "write") -> str:
    """Go-style ``write <path>: no space left on device`` for an OSError."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    return f"{action} {exc.filename}: {reason}" if exc.filename else f"{action}: {reason}"


@dataclass
class GenerationResult:
    """What one generation produced, filled in while the tokens stream."""

    text: list[str] = field(default_factory=list)
    done_reason: str = "stop"
    prompt_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: float | None = None

    def stats(self) -> dict[str, int]:
        finished = self.finished or time.perf_counter()
        first = self.first_token or finished
        total = int((finished - self.started) * 1e9)
        prompt_ns = int((first - self.started) * 1e9)
        return {
            "total_duration": total,
            "load_duration": 0,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": len([t for t in self.text if t]),
            "eval_duration": max(0, total - prompt_ns),
        }


async def generate_tokens(
    state: StandinState,
    record: ModelRecord,
    prompt: str,
    options: dict[str, Any],
    result: GenerationResult,
) -> AsyncIterator[str]:
    """Run the backend in a worker thread and yield text pieces, pacing them like a model."""
    result.prompt_tokens = state.backend.count_tokens(prompt)
    pieces: Iterator[Completion] = state.backend.generate(record, prompt, options)
    async for piece in iterate_in_threadpool(pieces):
        if result.first_token is None:
            result.first_token = time.perf_counter()
        result.text.append(piece.text)
        if piece.done_reason:
            result.done_reason = piece.done_reason
        if piece.text:
            yield piece.text
        if state.token_delay:
            await asyncio.sleep(state.token_delay)
    result.finished = time.perf_counter()


def ndjson(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, separators=(",", ":")) + "\n").encode()


def guarded(factory: Callable[[], AsyncIterator[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """Encode a stream of objects as NDJSON; an OllamaError mid-stream becomes an error line."""

    async def encode() -> AsyncIterator[bytes]:
        try:
            async for item in factory():
                yield ndjson(item)
        except OllamaError as exc:
            yield ndjson({"error": exc.message})

    return encode()


async def collect(factory: Callable[[], AsyncIterator[dict[str, Any]]]) -> dict[str, Any]:
    """The non-streaming form: the last object, or the stream's error with its status."""
    last: dict[str, Any] = {}
    async for item in factory():
        last = item
    return last
