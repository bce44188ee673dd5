"""Dynamic batching: requests from every connection share one inference thread.

Connections put requests on an asyncio queue. A collector task takes the first waiting request, then
keeps taking more until the batch holds ``max_batch_size`` requests or ``max_wait_ms`` has passed, and
hands the batch to a single worker thread, so the event loop never blocks on the model and the model
sees one batch at a time (torch already uses every core for one batch). While a batch runs, new
requests pile up and form the next one, which is where the throughput comes from under load.
``max_batch_size=1`` turns batching off: every request runs alone, in arrival order.

Waiting is cut short when every possible sender has already sent: ``expected()`` (the server passes
its number of open connections; each connection has at most one request outstanding) caps the batch
the collector waits for, so a lone robot never pays ``max_wait_ms`` and a fleet in lockstep is
batched whole instead of in fragments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Req = TypeVar("Req")

RunBatch = Callable[[Sequence[Any]], Sequence[Any]]
"""Runs in the worker thread: one result (or an Exception) per request, in order."""


@dataclass
class BatchResult:
    """What a single request gets back from the batcher."""

    value: Any
    """The run function's result for this request, or the Exception it returned for it."""
    queue_ms: float
    """Time from enqueueing to the start of its batch."""
    infer_ms: float
    """Wall time of the whole batch in the worker thread."""
    batch_size: int
    """How many requests shared the batch."""


@dataclass
class _Item(Generic[Req]):
    request: Req
    future: asyncio.Future
    enqueued: float


class QueueFullError(RuntimeError):
    """More requests are waiting than ``max_queue`` allows."""


class DynamicBatcher:
    """Collects requests into batches and runs them one batch at a time in a dedicated thread."""

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        on_batch: Callable[[int], None] | None = None,
        expected: Callable[[], int] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_ms / 1000.0
        self.on_batch, self.expected = on_batch, expected
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qt-infer")
        self._task: asyncio.Task | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The inference thread; anything else that touches the model must run here too."""
        return self._executor

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="qt-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("server is shutting down"))
        self._executor.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def submit(self, request: Any) -> BatchResult:
        """Queue ``request`` and wait for its result. Raises :class:`QueueFullError` when saturated."""
        fut = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(request, fut, time.perf_counter()))
        except asyncio.QueueFull:
            raise QueueFullError(f"{self._queue.maxsize} requests already waiting; retry later") from None
        return await fut

    async def _next_batch(self) -> list[_Item]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            if self.expected is not None and len(batch) >= self.expected():
                break  # nobody else can send before this batch is answered
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    def _timed_run(self, requests: list[Any]) -> tuple[Sequence[Any], float, float]:
        start = time.perf_counter()
        try:
            results = self.run_batch(requests)
        except Exception as e:  # a result per request is the contract; keep serving regardless
            results = [e] * len(requests)
        return results, start, time.perf_counter()

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [item for item in batch if not item.future.done()]  # the client may have gone
            if not live:
                continue
            results, start, end = await loop.run_in_executor(
                self._executor, self._timed_run, [item.request for item in live]
            )
            if self.on_batch is not None:
                self.on_batch(len(live))
            infer_ms = (end - start) * 1000.0
            for item, value in zip(live, results):
                if not item.future.done():
                    item.future.set_result(
                        BatchResult(value, (start - item.enqueued) * 1000.0, infer_ms, len(live))
                    )
