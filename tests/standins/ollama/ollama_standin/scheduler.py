"""Loading, keep_alive and the request queue, as Ollama's scheduler does them.

- ``OLLAMA_NUM_PARALLEL`` requests run at once per model (one runner context each); more wait.
- ``OLLAMA_MAX_QUEUE`` requests may wait; one more is refused at once with 503 and Ollama's text.
- A model stays loaded for ``keep_alive`` after its last request ends (default
  ``OLLAMA_KEEP_ALIVE``, 5m; negative: forever; 0: unload as soon as it is idle), then its
  runners are closed and their memory returned.
- At most ``OLLAMA_MAX_LOADED_MODELS`` models are loaded; loading one more unloads the least
  recently used idle model.
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

from starlette.concurrency import run_in_threadpool

from .backend import BackendError, GenerationBackend, ModelRunner
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
    runners: list[ModelRunner] = field(default_factory=list)
    idle: list[ModelRunner] = field(default_factory=list)
    busy: int = 0
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
        self.pending = 0
        self._changed = asyncio.Condition()

    def admit(self) -> None:
        """Count a request in, or refuse it when the running and waiting ones are all taken."""
        if self.pending >= self.num_parallel + self.max_queue:
            raise QueueFullError
        self.pending += 1

    def leave(self) -> None:
        self.pending -= 1

    def _num_ctx(self, record: ModelRecord, options: dict[str, Any]) -> int:
        value = options.get("num_ctx") or record.parameters.get("num_ctx") or self.context_length
        return int(value)

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

    @asynccontextmanager
    async def slot(
        self, record: ModelRecord, keep_alive: timedelta | None, options: dict[str, Any]
    ) -> AsyncIterator[Slot]:
        """Wait for a free runner of the model (loading it if needed); hold it while in use."""
        name = record.name
        load_seconds = 0.0
        async with self._changed:
            while True:
                model = self.loaded.get(name)
                if model is not None and model.record.digest != record.digest:
                    if model.busy:
                        await self._changed.wait()
                        continue
                    await self._unload(name)
                    model = None
                if model is None:
                    await self._evict_for(name)
                    if name in self.loaded:
                        continue
                    model = Loaded(record=record, context_length=self._num_ctx(record, options))
                    self.loaded[name] = model
                if model.idle:
                    runner = model.idle.pop()
                    break
                if len(model.runners) < self.num_parallel:
                    model.busy += 1  # reserve while loading
                    started = time.perf_counter()
                    try:
                        path: Path = self.blob_path(record)
                        runner = await run_in_threadpool(
                            self.backend.load, path, model.context_length, options
                        )
                    except BackendError:
                        model.busy -= 1
                        if not model.runners:
                            self.loaded.pop(name, None)
                        self._changed.notify_all()
                        raise
                    model.busy -= 1
                    model.runners.append(runner)
                    load_seconds = time.perf_counter() - started
                    break
                await self._changed.wait()
            model.busy += 1
            model.used = time.monotonic()
            model.keep_alive = keep_alive
            model.expires = None
        try:
            yield Slot(runner=runner, load_seconds=load_seconds)
        finally:
            async with self._changed:
                model.busy -= 1
                model.idle.append(runner)
                model.used = time.monotonic()
                if model.busy == 0:
                    model.expires = None if keep_alive is None else self.now() + keep_alive
                    if keep_alive is not None and keep_alive <= timedelta(0):
                        await self._unload(name)
                self._changed.notify_all()

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
        async with self.slot(record, keep_alive, dict(record.parameters)):
            pass

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
