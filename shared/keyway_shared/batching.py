"""Micro-batching of concurrent writes: many callers submit one item each, one flush writes them all.

aio-pika runs each delivery's callback as its own task, so up to ``prefetch`` handlers await
:meth:`Batcher.submit` at once; they share one round trip to the database instead of one each.
``submit`` returns only once the flush holding its item succeeded, so a handler that returns has
its item stored and may acknowledge the message. When a flush fails, every submitter of that batch
gets the flush's exception (and the broker retries each message).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Batcher", "BatcherClosedError"]

T = TypeVar("T")


class BatcherClosedError(RuntimeError):
    """``submit`` was called after ``close``."""


class Batcher(Generic[T]):
    """Collects items and flushes them when ``max_size`` are pending or ``max_delay`` after the first."""

    def __init__(
        self, flush: Callable[[list[T]], Awaitable[None]], *, max_size: int = 500, max_delay: float = 0.05
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_delay < 0:
            raise ValueError("max_delay must not be negative")
        self._flush = flush
        self._max_size = max_size
        self._max_delay = max_delay
        self._pending: list[T] = []
        self._done: asyncio.Future[None] | None = None  # settles when the pending batch's flush ends
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def submit(self, item: T) -> None:
        """Add ``item``; return once it was flushed, or raise what its flush raised."""
        if self._closed:
            raise BatcherClosedError("the batcher is closed")
        loop = asyncio.get_running_loop()
        if self._done is None:
            self._done = loop.create_future()
            self._timer = loop.call_later(self._max_delay, self._start_flush)
        done = self._done
        self._pending.append(item)
        if len(self._pending) >= self._max_size:
            self._start_flush()
        # Shielded: one submitter being cancelled must not cancel the batch its neighbours wait on.
        await asyncio.shield(done)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, done = self._pending, self._done
        self._pending, self._done = [], None
        if done is None:
            return
        task = asyncio.get_running_loop().create_task(self._run(items, done), name="batcher-flush")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _run(self, items: list[T], done: asyncio.Future[None]) -> None:
        try:
            await self._flush(items)
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as exc:
            done.set_exception(exc)
            # Retrieve it here too, so a batch whose submitters were all cancelled logs no warning.
            done.add_done_callback(_consume_exception)
        else:
            done.set_result(None)

    async def close(self) -> None:
        """Flush what is pending and wait for every running flush; later submits are refused."""
        self._closed = True
        self._start_flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


def _consume_exception(future: asyncio.Future[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()
