"""Shared state, errors and helpers for the stand-in's routers."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from .backend import BackendError, Completion, Prompt
from .names import InvalidNameError, ModelName
from .scheduler import Loaded, QueueFullError, Scheduler
from .store import ModelRecord, ModelStore

VERSION = "0.12.0-standin"
DEFAULT_KEEP_ALIVE = timedelta(minutes=5)
_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ns|us|ms|s|m|h)?$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class OllamaError(Exception):
    """An error answered as Ollama does: ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class StandinState:
    store: ModelStore
    scheduler: Scheduler
    token_delay: float
    default_keep_alive: timedelta = DEFAULT_KEEP_ALIVE

    def keep_alive(self, value: Any) -> timedelta | None:
        """A request's keep_alive (None: forever), OLLAMA_KEEP_ALIVE when it gives none."""
        if value is None or value == "":
            return self.default_keep_alive
        return parse_keep_alive(value)

    def running(self) -> dict[ModelName, Loaded]:
        return dict(self.scheduler.loaded)


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
    eval_tokens: int = 0
    load_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    prompt_started: float | None = None
    first_token: float | None = None
    finished: float | None = None

    def stats(self) -> dict[str, int]:
        finished = self.finished or time.perf_counter()
        prompt_started = self.prompt_started or self.started
        first = self.first_token or finished
        return {
            "total_duration": int((finished - self.started) * 1e9),
            "load_duration": int(self.load_seconds * 1e9),
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": int((first - prompt_started) * 1e9),
            "eval_count": self.eval_tokens,
            "eval_duration": int((finished - first) * 1e9),
        }


def stop_sequences(options: dict[str, Any]) -> list[str]:
    raw = options.get("stop")
    if raw is None:
        return []
    values = raw if isinstance(raw, list) else [raw]
    return [str(v) for v in values if str(v)]


def num_predict(options: dict[str, Any]) -> int | None:
    """Ollama's num_predict: a positive limit, or -1/-2/absent for none."""
    value = options.get("num_predict")
    if value is None or isinstance(value, bool):
        return None
    limit = int(value)
    return limit if limit >= 0 else None


def _held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of ``text`` could start a stop sequence."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


async def generate_tokens(
    state: StandinState,
    record: ModelRecord,
    prompt: Prompt,
    options: dict[str, Any],
    keep_alive: timedelta | None,
    result: GenerationResult,
) -> AsyncIterator[str]:
    """Queue for a runner, run it in a worker thread and yield text as it is sampled.

    ``num_predict`` and ``stop`` are applied here: the runner is stopped (its iterator closed)
    as soon as the limit is reached or a stop sequence appears; a stop sequence is not sent.
    Text that could be the start of a stop sequence is held back until it is clear.
    """
    merged = {**record.parameters, **options}
    stops = stop_sequences(merged)
    limit = num_predict(merged)
    try:
        async with state.scheduler.slot(record, keep_alive, merged) as slot:
            result.load_seconds = slot.load_seconds
            result.prompt_started = time.perf_counter()
            if limit == 0:
                result.done_reason = "length"
                result.first_token = result.finished = time.perf_counter()
                return
            pieces = slot.runner.generate(prompt, merged)
            held = ""
            try:
                async for piece in iterate_in_threadpool(pieces):
                    if result.first_token is None:
                        result.first_token = time.perf_counter()
                    if piece.prompt_tokens is not None:
                        result.prompt_tokens = piece.prompt_tokens
                    result.eval_tokens += piece.tokens
                    held += piece.text
                    if piece.done_reason:
                        result.done_reason = piece.done_reason
                    found = [held.index(s) for s in stops if s in held]
                    if found:
                        held, result.done_reason = held[: min(found)], "stop"
                    elif limit is not None and result.eval_tokens >= limit:
                        result.done_reason = "length"
                    elif not piece.done_reason:
                        keep = _held_back(held, stops)
                        ready, held = held[: len(held) - keep], held[len(held) - keep :]
                        if ready:
                            result.text.append(ready)
                            yield ready
                        if state.token_delay:
                            await asyncio.sleep(state.token_delay)
                        continue
                    if held:
                        result.text.append(held)
                        yield held
                    break
            finally:
                # also when the client went away: the runner must be idle before it is reused
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(close_when_idle, pieces)
    except QueueFullError as exc:
        raise OllamaError(503, str(exc)) from None
    except BackendError as exc:
        raise OllamaError(500, str(exc)) from None
    result.finished = time.perf_counter()


def close_when_idle(pieces: Iterator[Completion]) -> None:
    """Close a runner's iterator; a worker thread may still be computing its current token."""
    close = getattr(pieces, "close", None)
    if close is None:
        return
    while True:
        try:
            close()
            return
        except ValueError:  # generator already executing
            time.sleep(0.005)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Await ``work``, cancelling it (and so the generation) when the client disconnects."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None


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
