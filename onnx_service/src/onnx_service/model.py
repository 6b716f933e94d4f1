"""A loaded model version: its onnxruntime session, tensor specs and (optional) batcher."""

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from onnx_service.config import ModelConfig
from onnx_service.dtypes import DATATYPE_TO_NUMPY, ORT_TO_DATATYPE
from onnx_service.errors import (
    BackendError,
    InvalidRequestError,
    LoadError,
    ServiceError,
    UnavailableError,
)
from onnx_service.metrics import VersionMetrics
from onnx_service.text import TextPipeline, tokenizer_file

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]

log = logging.getLogger("onnx_service.model")

PEAK_WINDOW = 8  # batches over which the adaptive queue delay remembers the concurrency


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the protocol describes it (-1 marks a dynamic dim)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _spec(arg: Any, kind: str) -> TensorSpec:
    datatype = ORT_TO_DATATYPE.get(arg.type)
    if datatype is None:
        raise LoadError(f"{kind} '{arg.name}' has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape, DATATYPE_TO_NUMPY[datatype])


def _ort_error(exc: Exception, name: str, version: int) -> Exception:
    """onnxruntime's InvalidArgument is the caller's fault; anything else is the backend's.

    A backend failure's text stays in the log: a 500 answer never carries exception text.
    """
    if isinstance(exc, InvalidArgument):
        return InvalidRequestError(f"onnxruntime rejected the inputs: {exc}")
    log.error("model %s version %s: onnxruntime failed: %s", name, version, exc)
    return BackendError(
        f"inference failed in onnxruntime (model '{name}' version {version}; "
        "the reason is in the service log)"
    )


class ModelVersion:
    """One version of a model, ready to run."""

    def __init__(
        self,
        *,
        name: str,
        version: int,
        fingerprint: tuple[Any, ...],
        config: ModelConfig,
        session: ort.InferenceSession,
        metrics: VersionMetrics,
        executor: Executor,
        inline_s: float = 0.0,
        text: TextPipeline | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.fingerprint = fingerprint
        self.config = config
        self.metrics = metrics
        self._session: ort.InferenceSession | None = session
        self._executor = executor
        # Requests whose estimated compute time is under inline_s run on the event loop:
        # for tiny models the thread hop costs more than session.run itself.
        self._inline_s = inline_s
        self._row_cost_s = math.inf  # moving average of compute seconds per row
        self.text = text
        if text is None:
            self.inputs = [_spec(a, "input") for a in session.get_inputs()]
            self.outputs = [_spec(a, "output") for a in session.get_outputs()]
        else:  # what clients see of a text model: texts in, embeddings and token counts out
            cfg = text.config
            self.inputs = [TensorSpec(cfg.input, "BYTES", (-1,), DATATYPE_TO_NUMPY["BYTES"])]
            self.outputs = [
                TensorSpec(cfg.output, "FP32", (-1, text.width), DATATYPE_TO_NUMPY["FP32"]),
                TensorSpec(cfg.tokens_output, "INT64", (-1,), DATATYPE_TO_NUMPY["INT64"]),
            ]
        self.input_map = {s.name: s for s in self.inputs}
        self.output_map = {s.name: s for s in self.outputs}
        self.output_names = [s.name for s in self.outputs]
        self.providers = session.get_providers()
        # The first dimension is a batch dimension when it is dynamic on every tensor.
        self.batched = all(s.shape and s.shape[0] == -1 for s in self.inputs + self.outputs)
        if config.dynamic_batching is not None and not self.batched:
            raise LoadError(
                "dynamic_batching needs a dynamic first dimension on every input and output"
            )
        self.inflight = 0
        self.retired = False
        self.batcher: DynamicBatcher | None = None
        self._instances = asyncio.Semaphore(config.instance_count)

    @classmethod
    def load(
        cls,
        *,
        name: str,
        version: int,
        path: Path,
        fingerprint: tuple[Any, ...],
        config: ModelConfig,
        metrics: VersionMetrics,
        executor: Executor,
        inline_s: float = 0.0,
    ) -> "ModelVersion":
        """Create the session (blocking: call it from a worker thread)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_threads
        options.inter_op_num_threads = config.inter_op_threads
        options.log_severity_level = 3
        spinning = "1" if config.intra_op_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=config.providers()
            )
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise LoadError(f"onnxruntime cannot load {path.name}: {exc}") from exc
        text = (
            TextPipeline(config.text, tokenizer_file(path, config.text), session)
            if config.text is not None
            else None
        )
        return cls(
            name=name,
            version=version,
            fingerprint=fingerprint,
            config=config,
            session=session,
            metrics=metrics,
            executor=executor,
            inline_s=inline_s,
            text=text,
        )

    # --- life cycle -------------------------------------------------------------------------

    def activate(self) -> None:
        """Start serving (must run on the event loop)."""
        batching = self.config.dynamic_batching
        if batching is not None and self.batcher is None:
            self.batcher = DynamicBatcher(
                run=self._run_batch,
                max_batch_size=self.config.max_batch_size,
                max_delay_s=batching.max_queue_delay_us / 1e6,
                adaptive=batching.adaptive_queue_delay,
                executor=self._executor,
                metrics=self.metrics,
                inline=self.runs_inline,
                instances=self.config.instance_count,
            )

    def acquire(self) -> None:
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1
        if self.retired and self.inflight == 0:
            self.close()

    def retire(self) -> None:
        """Stop taking new requests; close once the in-flight ones are done."""
        self.retired = True
        if self.inflight == 0:
            self.close()

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        self._session = None

    # --- inference --------------------------------------------------------------------------

    def batch_size(self, feeds: Feeds) -> int:
        """Rows in a validated request (1 for models without a batch dimension)."""
        if not self.batched:
            return 1
        firsts = {arr.shape[0] for arr in feeds.values()}
        if len(firsts) != 1:
            raise InvalidRequestError("all inputs must have the same first (batch) dimension")
        rows = firsts.pop()
        limit = self.config.max_batch_size
        if limit and rows > limit:
            raise InvalidRequestError(f"batch of {rows} is over the model's max_batch_size {limit}")
        return rows

    async def infer(self, feeds: Feeds, wanted: Sequence[str], rows: int) -> Outputs:
        """Run the model on one request's inputs; returns the wanted outputs."""
        if self._session is None:
            raise UnavailableError(f"model '{self.name}' version {self.version} was unloaded")
        if self.batcher is not None:
            outputs = await self.batcher.submit(feeds, rows)
            return {name: outputs[name] for name in wanted}
        self.metrics.pending.inc()
        queued = perf_counter()
        if self.runs_inline(rows):
            return self._run_single(feeds, list(wanted), rows, queued)
        async with self._instances:  # at most instance_count runs at once, like Triton's
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, self._run_single, feeds, list(wanted), rows, queued
            )

    def runs_inline(self, rows: int) -> bool:
        """Whether a run of ``rows`` rows is cheap enough to do on the event loop."""
        return self._row_cost_s * max(rows, 1) <= self._inline_s

    def record_compute(self, elapsed: float, rows: int) -> None:
        """Update the per-row compute estimate that decides where runs happen."""
        cost = elapsed / max(rows, 1)
        previous = self._row_cost_s
        self._row_cost_s = cost if previous == math.inf else 0.9 * previous + 0.1 * cost

    def _session_or_fail(self) -> ort.InferenceSession:
        session = self._session
        if session is None:
            raise UnavailableError(f"model '{self.name}' version {self.version} was unloaded")
        return session

    def _run_graph(self, wanted: list[str], feeds: Feeds) -> list[np.ndarray]:
        """session.run, or the tokenize-run-pool pipeline of a text model."""
        session = self._session_or_fail()
        if self.text is None:
            return list(session.run(wanted, feeds))
        outputs = self.text.run(session, feeds[self.text.config.input])
        return [outputs[name] for name in wanted]

    def _run_single(self, feeds: Feeds, wanted: list[str], rows: int, queued: float) -> Outputs:
        m = self.metrics
        start = perf_counter()
        m.pending.dec()
        m.queue_duration.observe(start - queued)
        try:
            results = self._run_graph(wanted, feeds)
        except ServiceError:
            raise
        except Exception as exc:
            raise _ort_error(exc, self.name, self.version) from exc
        elapsed = perf_counter() - start
        self.record_compute(elapsed, rows)
        m.compute_duration.observe(elapsed)
        m.exec_count.inc()
        m.inference_count.inc(rows)
        return dict(zip(wanted, results, strict=True))

    def _run_batch(self, batch: Sequence["_Pending"]) -> list[Outputs | ServiceError]:
        """Run a formed batch (in a worker thread): one result or error per request."""
        m = self.metrics
        start = perf_counter()
        m.pending.dec(len(batch))
        for item in batch:
            m.queue_duration.observe(start - item.queued)
        return self._isolate(batch)

    def _isolate(self, batch: Sequence["_Pending"]) -> list[Outputs | ServiceError]:
        """Run ``batch``; when it fails, bisect it so that only the failing requests fail.

        One request that onnxruntime rejects (an index out of range, say) must not fail the
        requests that happened to be batched with it: the halves run again, down to single
        requests, so a batch of n with one bad request costs about 2·log2(n) extra runs.
        """
        try:
            return list(self._execute(batch))
        except UnavailableError as exc:  # the session is gone: nothing to retry
            return [exc] * len(batch)
        except ServiceError as exc:
            if len(batch) == 1:
                return [exc]
            half = len(batch) // 2
            return self._isolate(batch[:half]) + self._isolate(batch[half:])

    def _execute(self, batch: Sequence["_Pending"]) -> list[Outputs]:
        """Concatenate, run once, split back."""
        m = self.metrics
        start = perf_counter()
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {
                name: np.concatenate([item.feeds[name] for item in batch])
                for name in batch[0].feeds
            }
        total = sum(item.rows for item in batch)
        try:
            results = self._run_graph(self.output_names, feeds)
        except ServiceError:
            raise
        except Exception as exc:
            raise _ort_error(exc, self.name, self.version) from exc
        elapsed = perf_counter() - start
        self.record_compute(elapsed, total)
        m.exec_count.inc()
        m.inference_count.inc(total)
        for _ in batch:
            m.compute_duration.observe(elapsed)
        for name, arr in zip(self.output_names, results, strict=True):
            if arr.ndim == 0 or arr.shape[0] != total:
                raise BackendError(
                    f"output '{name}' has {arr.shape[0] if arr.ndim else 0} rows for a batch "
                    f"of {total}; the model cannot be batched"
                )
        split: list[Outputs] = []
        offset = 0
        for item in batch:
            end = offset + item.rows
            split.append(
                {n: r[offset:end] for n, r in zip(self.output_names, results, strict=True)}
            )
            offset = end
        return split


@dataclass
class _Pending:
    feeds: Feeds
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[Outputs]
    queued: float
    held: bool = False  # the batcher put off its batch to wait for more requests


class DynamicBatcher:
    """Coalesces concurrent requests of one model version into one session.run.

    Up to ``instances`` batches run at once (the model's instance_count, as Triton runs one
    batch per model instance); while they run, new requests queue up and form the next batch.
    A batch closes when it holds max_batch_size rows or when its oldest request has waited
    max_queue_delay. Only requests whose non-batch dimensions agree are combined.

    With ``adaptive`` the delay is only an upper bound: a batch also closes as soon as the
    queue holds the rows that the recent concurrency says are coming. The batcher keeps the
    most rows that were in the model (queued plus running) between two batch starts, over the
    last PEAK_WINDOW batches; the next batch waits for that many less the rows running now (at
    least one, at most max_batch_size). One client at a time never waits; N closed-loop
    clients form batches of N instead of one batch running while the other half of them is
    between answer and next request; when the load drops, the window forgets the old peak
    within PEAK_WINDOW + 1 batches (the first period after the drop still saw the last big
    batch running).

    The worker thread that ran a batch hands its results to the event loop and starts the
    next batch itself when one is due (full, or its oldest request waited long enough): under
    load onnxruntime does not sit idle until the busy event loop gets round to the batcher.
    Waiting for a batch to fill stays on the event loop (a timer, no thread blocked).
    """

    def __init__(
        self,
        *,
        run: Callable[[Sequence[_Pending]], list[Outputs | ServiceError]],
        max_batch_size: int,
        max_delay_s: float,
        executor: Executor,
        metrics: VersionMetrics,
        inline: Callable[[int], bool],
        instances: int = 1,
        adaptive: bool = False,
    ) -> None:
        self._run = run
        self._inline = inline
        self._instances = instances
        self._running = 0  # batches handed to worker threads and not finished (under the lock)
        self._max = max_batch_size
        self._delay = max_delay_s
        self._executor = executor
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()  # queue and the counts below: event loop and workers
        self._adaptive = adaptive
        self._queued_rows = 0
        self._running_rows = 0
        self._peak = 0  # most rows queued plus running since the last batch started
        self._peaks: deque[int] = deque(maxlen=PEAK_WINDOW)
        self.delayed = 0  # batches whose start was put off to wait for more requests
        self.expired = 0  # of those, batches that closed at max_queue_delay, not full
        self._wakeup = asyncio.Event()
        self._event_loop = asyncio.get_running_loop()
        self._task = self._event_loop.create_task(self._loop())

    async def submit(self, feeds: Feeds, rows: int) -> Outputs:
        key = tuple((name, arr.shape[1:]) for name, arr in sorted(feeds.items()))
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._metrics.pending.inc()
        with self._lock:
            self._queue.append(_Pending(feeds, rows, key, future, perf_counter()))
            self._queued_rows += rows
            self._peak = max(self._peak, self._queued_rows + self._running_rows)
            # While every instance is busy the worker that finishes takes this request (or
            # wakes the loop when it gives its instance back). Otherwise the loop needs to
            # look only when the queue starts (a timer for its head) or may have filled up.
            wake = self._running < self._instances and (
                len(self._queue) == 1 or self._queued_rows >= self._target()
            )
        if wake:
            self._wakeup.set()
        return await future

    def close(self) -> None:
        self._task.cancel()
        with self._lock:
            left, self._queue = self._queue, deque()
            self._queued_rows = 0
        for item in left:
            if not item.future.done():
                item.future.set_exception(UnavailableError("the model version was unloaded"))

    def _ready_rows(self) -> int:
        head = self._queue[0].key
        return sum(item.rows for item in self._queue if item.key == head)

    def _target(self) -> int:
        """Rows the queue should hold before a batch closes early (call with the lock held)."""
        if not self._adaptive:
            return self._max
        expected = max(self._peak, *self._peaks) if self._peaks else self._peak
        return min(self._max, max(1, expected - self._running_rows))

    def _due(self) -> bool:
        """Whether the next batch should run now (call with the lock held)."""
        if not self._queue:
            return False
        waited = perf_counter() - self._queue[0].queued
        return waited >= self._delay or self._ready_rows() >= self._target()

    def _wait_s(self) -> float | None:
        """Seconds until the event loop should start the next batch, 0 for now, None while
        nothing is queued or every instance is busy (call with the lock held)."""
        if not self._queue or self._running >= self._instances:
            return None
        if self._ready_rows() >= self._target():
            return 0.0
        return max(0.0, self._queue[0].queued + self._delay - perf_counter())

    def _take(self) -> list[_Pending]:
        """The next batch, out of the queue and counted as running until ``_finish``
        (call with the lock held)."""
        head = self._queue[0].key
        if self._queue[0].held and self._ready_rows() < self._target():
            self.expired += 1
        batch: list[_Pending] = []
        rest: deque[_Pending] = deque()
        rows = 0
        for item in self._queue:
            if item.key == head and rows + item.rows <= self._max:
                batch.append(item)
                rows += item.rows
            else:
                rest.append(item)
        self._queue = rest
        self._queued_rows -= rows
        self._running_rows += rows
        self._peaks.append(self._peak)
        self._peak = self._queued_rows + self._running_rows
        if batch[0].held:
            self.delayed += 1
        return batch

    def _finish(self, batch: Sequence[_Pending]) -> None:
        """``batch`` has run: its rows leave the model (call with the lock held)."""
        self._running_rows -= sum(item.rows for item in batch)

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()  # before looking: a wake-up from now on is not lost
            with self._lock:
                wait = self._wait_s()
                if wait == 0.0:
                    batch = self._take()
                    inline = self._inline(sum(item.rows for item in batch))
                    if not inline:
                        self._running += 1
                elif wait is not None:
                    self._queue[0].held = True
            if wait is None:
                await self._wakeup.wait()
            elif wait > 0.0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
            elif inline:
                results = self._guarded(batch)
                with self._lock:
                    self._finish(batch)
                _deliver(batch, results)
            else:
                self._start(batch)

    def _start(self, batch: list[_Pending]) -> None:
        """Hand ``batch`` to a worker thread (its instance is counted as running)."""
        try:
            self._executor.submit(self._work, batch)
        except RuntimeError:  # the thread pool is shut down: the service is stopping
            with self._lock:
                self._running -= 1
                self._finish(batch)
            _deliver(batch, UnavailableError("the service is shutting down"))

    def _guarded(self, batch: list[_Pending]) -> list[Outputs | ServiceError] | Exception:
        try:
            return self._run(batch)
        except Exception as exc:  # forwarded to every request of the batch
            return exc

    def _work(self, batch: list[_Pending]) -> None:
        """In a worker thread: run ``batch``, hand its results to the event loop, and go on
        with the next batch while one is due; then give the instance back."""
        try:
            while True:
                results = self._guarded(batch)
                with self._lock:
                    self._finish(batch)
                self._event_loop.call_soon_threadsafe(_deliver, batch, results)
                with self._lock:
                    if not self._due() or self._inline(self._ready_rows()):
                        return
                    batch = self._take()
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            return
        finally:
            with self._lock:
                self._running -= 1
            with suppress(RuntimeError):
                self._event_loop.call_soon_threadsafe(self._wakeup.set)


def _deliver(batch: Sequence[_Pending], results: list[Outputs | ServiceError] | Exception) -> None:
    """Hand each waiting request its outputs or its error."""
    for i, item in enumerate(batch):
        if item.future.done():  # the client went away
            continue
        result = results if isinstance(results, Exception) else results[i]
        if isinstance(result, Exception):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)
