"""One thread that takes the requests waiting for it together, as one batch.

Questions that arrive together (a class opening the chat at nine, clients whose answers ended
at once) each need their embedding before their first token. On threads of their own they
share the CPU and all finish late: four at once took 25 ms against 7 ms for one. Embedded as
one batch they cost less together (padding a question of a few tokens is cheap) and each is
handed on as soon as its own result is ready: 19 ms for the four (measured with MiniLM on one
core, docs/benchmarks.md).

``run_batch`` gets the waiting items in arrival order and yields one result per item, in that
order; an item whose work failed yields its exception, which is raised to that item's caller
alone. If ``run_batch`` itself fails, every item it has not answered gets the exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

_STOP = object()


class BatchLane(Generic[I, O]):
    def __init__(
        self,
        run_batch: Callable[[list[I]], Iterator[O | BaseException]],
        max_batch: int = 16,
        name: str = "batch-lane",
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self._name = name
        self._thread: threading.Thread | None = None  # started by the first request
        self._lock = threading.Lock()

    async def submit(self, item: I) -> O:
        """``item``'s result, once its batch has reached it."""
        if self._closed:
            raise RuntimeError("the lane is closed")
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._serve, name=self._name, daemon=True
                    )
                    self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[O] = loop.create_future()
        self._queue.put((item, future, loop))
        return await future

    def close(self) -> None:
        """Stop after the batches already waiting (their callers get their results)."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[I, asyncio.Future[O], asyncio.AbstractEventLoop]] = []
            first = self._queue.get()
            if first is _STOP:
                return
            batch.append(first)  # type: ignore[arg-type]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)  # type: ignore[arg-type]
            self._run(batch)

    def _run(self, batch: list[tuple[I, asyncio.Future[O], asyncio.AbstractEventLoop]]) -> None:
        done = 0
        try:
            for result in self._run_batch([item for item, _, _ in batch]):
                _, future, loop = batch[done]
                _settle(loop, future, result)
                done += 1
                if done == len(batch):
                    break
            if done < len(batch):
                raise RuntimeError(f"the batch gave {done} results for {len(batch)} items")
        except Exception as exc:  # handed to the callers, never lost
            log.exception("a batch of %d failed", len(batch))
            for _, future, loop in batch[done:]:
                _settle(loop, future, exc)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[O], result: object) -> None:
    def settle() -> None:
        if future.done():  # its caller was cancelled
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(settle)
