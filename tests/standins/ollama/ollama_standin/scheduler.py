"""Loading, keep_alive and back-pressure, as Ollama 0.12.6's scheduler does them.

- A request for a model that is loaded (and needs no reload) takes a reference to it at once
  (server/sched.go ``GetRunner`` -> ``useLoadedRunner``) and then waits, without limit, for one of
  its ``OLLAMA_NUM_PARALLEL`` slots (llm/server.go ``Completion``: ``sem.Acquire``). It is never
  refused: a loaded model queues every request.
- A request for a model that is not loaded, or must be reloaded (another digest, ``num_ctx`` or
  ``num_thread``), goes to the pending queue, which ``processPending`` works through one request
  at a time; the queue holds ``OLLAMA_MAX_QUEUE`` requests, and one more while it is full is
  refused at once with ``ErrMaxQueue`` (503 "server busy, please try again.  maximum pending
  requests exceeded").
- A model stays loaded for ``keep_alive`` after its last request ends (default
  ``OLLAMA_KEEP_ALIVE``, 5m; negative: forever; 0: unload as soon as it is idle), then its
  runners are closed and their memory returned.
- At most ``OLLAMA_MAX_LOADED_MODELS`` models are loaded; loading one more unloads the least
  recently used idle model.

The stand-in gives each slot its own runner (one llama.cpp context each), made when a request
first needs it; Ollama's runner has all slots in one process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from .backend import GenerationBackend, ModelRunner
from .names import ModelName
from .store import ModelRecord

BUSY = "server busy, please try again.  maximum pending requests exceeded"


class QueueFullError(RuntimeError):
    def __init__(self) -> None:
        super().__init__(BUSY)


@dataclass
class Loaded:
    record: ModelRecord
    context_length: int
    key: tuple[Any, ...]
    runners: list[ModelRunner] = field(default_factory=list)
    idle: list[ModelRunner] = field(default_factory=list)
    starting: int = 0
    busy: int = 0  # references held by requests (Ollama's refCount)
    keep_alive: timedelta | None = None
    expires: datetime | None = None
    used: float = field(default_factory=time.monotonic)

    @property
    def memory_bytes(self) -> int:
        return sum(r.memory_bytes for r in self.runners)


@dataclass
class Slot:
    runner: ModelRunner
    load_seconds: float


class Scheduler:
    def __init__(
        self,
        backend: GenerationBackend,
        blob_path: Any,
        *,
        num_parallel: int = 1,
        max_queue: int = 512,
        max_loaded: int = 1,
        context_length: int = 4096,
        now: Any,
    ) -> None:
        self.backend = backend
        self.blob_path = blob_path
        self.num_parallel = max(1, num_parallel)
        self.max_queue = max(0, max_queue)
        self.max_loaded = max(1, max_loaded)
        self.context_length = context_length
        self.now = now
        self.loaded: dict[ModelName, Loaded] = {}
        self.queued = 0  # requests waiting in the pending queue (not the one being loaded)
        self._loader = asyncio.Lock()  # processPending: one pending request at a time
        self._changed = asyncio.Condition()

    def _num_ctx(self, record: ModelRecord, options: dict[str, Any]) -> int:
        value = options.get("num_ctx") or record.parameters.get("num_ctx") or self.context_length
        return int(value)

    def _key(self, record: ModelRecord, options: dict[str, Any]) -> tuple[Any, ...]:
        """What a loaded model must match to serve a request (Ollama's ``needsReload``)."""
        return (record.digest, self._num_ctx(record, options), options.get("num_thread"))

    async def _evict_for(self, name: ModelName) -> None:
        while len([n for n in self.loaded if n != name]) >= self.max_loaded:
            idle = [m for n, m in self.loaded.items() if n != name and m.busy == 0]
            if not idle:
                await self._changed.wait()
                continue
            victim = min(idle, key=lambda m: m.used)
            await self._unload(victim.record.name)

    async def _unload(self, name: ModelName) -> None:
        model = self.loaded.pop(name, None)
        if model is not None:
            for runner in model.runners:
                await run_in_threadpool(runner.close)

    def _take(self, model: Loaded, keep_alive: timedelta | None) -> Loaded:
        model.busy += 1
        model.used = time.monotonic()
        model.keep_alive = keep_alive
        model.expires = None
        return model

    async def _reference(
        self, record: ModelRecord, keep_alive: timedelta | None, options: dict[str, Any]
    ) -> tuple[Loaded, float]:
        """A reference to the loaded model: at once when it is loaded, else through the
        pending queue (refused when full); returns the seconds spent loading it."""
        name, key = record.name, self._key(record, options)
        async with self._changed:
            model = self.loaded.get(name)
            if model is not None and model.key == key:
                return self._take(model, keep_alive), 0.0
            if self._loader.locked() and self.queued >= self.max_queue:
                raise QueueFullError
            self.queued += 1
        waiting = True
        try:
            async with self._loader:
                async with self._changed:
                    self.queued -= 1
                    waiting = False
                    while True:
                        model = self.loaded.get(name)
                        if model is not None and model.key == key:
                            return self._take(model, keep_alive), 0.0
                        if model is not None:  # another digest or runner options: reload
                            if model.busy:
                                await self._changed.wait()
                                continue
                            await self._unload(name)
                        await self._evict_for(name)
                        if name not in self.loaded:
                            break
                started = time.perf_counter()
                context_length = self._num_ctx(record, options)
                path: Path = self.blob_path(record)
                runner = await run_in_threadpool(self.backend.load, path, context_length, options)
                async with self._changed:
                    model = Loaded(record=record, context_length=context_length, key=key)
                    model.runners.append(runner)
                    model.idle.append(runner)
                    self.loaded[name] = model
                    self._changed.notify_all()
                    return self._take(model, keep_alive), time.perf_counter() - started
        finally:
            if waiting:
                async with self._changed:
                    self.queued -= 1

    async def _acquire(self, model: Loaded, options: dict[str, Any]) -> tuple[ModelRunner, float]:
        """One of the model's NUM_PARALLEL slots; waits as long as it takes (sem.Acquire)."""
        async with self._changed:
            while not model.idle:
                if len(model.runners) + model.starting < self.num_parallel:
                    model.starting += 1
                    break
                await self._changed.wait()
            else:
                return model.idle.pop(), 0.0
        started = time.perf_counter()
        try:
            path: Path = self.blob_path(model.record)
            runner = await run_in_threadpool(self.backend.load, path, model.context_length, options)
        finally:
            async with self._changed:
                model.starting -= 1
                self._changed.notify_all()
        async with self._changed:
            model.runners.append(runner)
        return runner, time.perf_counter() - started

    async def _release(
        self, model: Loaded, runner: ModelRunner | None, keep_alive: timedelta | None
    ) -> None:
        async with self._changed:
            model.busy -= 1
            if runner is not None:
                model.idle.append(runner)
            model.used = time.monotonic()
            if model.busy == 0:
                model.expires = None if keep_alive is None else self.now() + keep_alive
                if keep_alive is not None and keep_alive <= timedelta(0):
                    await self._unload(model.record.name)
            self._changed.notify_all()

    @asynccontextmanager
    async def slot(
        self, record: ModelRecord, keep_alive: timedelta | None, options: dict[str, Any]
    ) -> AsyncIterator[Slot]:
        """A runner of the model (loading it if needed), held while in use."""
        model, load_seconds = await self._reference(record, keep_alive, options)
        runner: ModelRunner | None = None
        try:
            runner, more = await self._acquire(model, options)
            yield Slot(runner=runner, load_seconds=load_seconds + more)
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(model, runner, keep_alive)

    async def load(self, record: ModelRecord, keep_alive: timedelta | None) -> None:
        """Load without generating (an empty prompt), or unload with keep_alive 0."""
        if keep_alive is not None and keep_alive <= timedelta(0):
            async with self._changed:
                model = self.loaded.get(record.name)
                if model is not None and model.busy == 0:
                    await self._unload(record.name)
                elif model is not None:
                    model.keep_alive = keep_alive
                self._changed.notify_all()
            return
        # the model's own parameters (num_thread, num_ctx) apply to a load without a request too
        model, _ = await self._reference(record, keep_alive, dict(record.parameters))
        await self._release(model, None, keep_alive)

    async def unload_model(self, name: ModelName) -> None:
        async with self._changed:
            model = self.loaded.get(name)
            if model is not None and model.busy == 0:
                await self._unload(name)
            self._changed.notify_all()

    async def expire(self) -> None:
        """Unload idle models whose keep_alive has run out."""
        async with self._changed:
            current = self.now()
            for name, model in list(self.loaded.items()):
                if model.busy == 0 and model.expires is not None and model.expires <= current:
                    await self._unload(name)
            self._changed.notify_all()

    async def run_expiry(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.expire()

    async def close(self) -> None:
        async with self._changed:
            for name in list(self.loaded):
                await self._unload(name)
