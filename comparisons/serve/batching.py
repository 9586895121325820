"""Dynamic batching: concurrent requests queue up and run through the model together.

One worker task owns the model. It takes the oldest waiting request, then keeps taking
more until the batch holds `max_batch` examples or `max_wait_s` has passed since the first,
runs them as one model call in a single worker thread (the event loop keeps parsing
requests meanwhile), and hands each request its own rows back. Requests never split: one
larger than the room left starts the next batch. Without batching (`max_batch=0`) every
request is its own model call, which is the baseline the load test compares against.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

Batch = dict[str, np.ndarray]


class QueueFull(Exception):
    """More requests are waiting or running than the queue admits (answered with 503)."""


@dataclasses.dataclass
class _Item:
    inputs: Batch
    size: int
    future: asyncio.Future


class Batcher:
    """Queues requests and runs them through `predict` in batches (see the module docstring)."""

    def __init__(
        self,
        predict: Callable[[Batch], np.ndarray],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        queue_size: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.predict = predict
        self.max_batch = max_batch  # 0: no batching, one request per model call
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.on_batch = on_batch  # (examples, seconds) of each model call, for the metrics
        self.admitted = 0  # requests waiting or running: what the queue bound counts
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: _Item | None = None
        # One thread: the model is called by one caller at a time, never concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish every admitted request, then stop the worker and its thread."""
        while self.admitted:
            await asyncio.sleep(0.01)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, inputs: Batch, timeout_s: float) -> np.ndarray:
        """The model's outputs for `inputs`; QueueFull, or asyncio.TimeoutError past `timeout_s`."""
        if self.admitted >= self.queue_size:
            raise QueueFull(f"{self.admitted} requests already queued (limit {self.queue_size})")
        size = len(next(iter(inputs.values())))
        item = _Item(inputs, size, asyncio.get_running_loop().create_future())
        self.admitted += 1
        try:
            self._queue.put_nowait(item)
            # shield: a timed-out request leaves the batch it is in untouched; the worker
            # skips it if it has not started, or drops its rows if it has.
            return await asyncio.wait_for(asyncio.shield(item.future), timeout_s)
        finally:
            if not item.future.done():
                item.future.cancel()
            self.admitted -= 1

    async def _next_batch(self) -> list[_Item]:
        first = self._carry or await self._queue.get()
        self._carry = None
        items, size = [first], first.size
        if self.max_batch <= 0:
            return items
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if size + item.size > self.max_batch:
                self._carry = item
                break
            items.append(item)
            size += item.size
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [i for i in await self._next_batch() if not i.future.done()]
            if not items:
                continue
            start = time.perf_counter()
            try:
                keys = items[0].inputs.keys()
                batch = {k: np.concatenate([i.inputs[k] for i in items]) for k in keys}
                outputs = await loop.run_in_executor(self._executor, self.predict, batch)
            except Exception as err:  # noqa: BLE001 - the requests get the error; the worker lives
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            if self.on_batch is not None:
                self.on_batch(sum(i.size for i in items), time.perf_counter() - start)
            offset = 0
            for item in items:
                if not item.future.done():
                    item.future.set_result(outputs[offset : offset + item.size])
                offset += item.size
