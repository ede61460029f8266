"""Group commit: concurrent callers' writes share one database round trip, each gets its own answer.

Unlike :class:`keyway_shared.batching.Batcher`, nothing waits on a timer. The first call of an
idle committer is flushed at the end of the current turn of the event loop (so calls made together,
such as the refresh loop starting a round of refreshes, go together); calls arriving while a flush
runs wait for it to end and then go together in the next. A lone caller therefore pays no delay,
and under load the batch grows by itself to what arrived during one round trip.

``flush`` gets the items in arrival order and returns one result per item, in the same order. When
it raises, every caller of that batch gets the exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]], *, max_size: int = 64) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._flush = flush
        self._max_size = max_size
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False  # a flush is running, or one is scheduled for the end of this turn
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, done))
        if not self._busy:
            self._busy = True
            loop.call_soon(self._start)
        # Shielded: a cancelled caller must not cancel the future; its write may still happen.
        return await asyncio.shield(done)

    def _start(self) -> None:
        if not self._pending:
            self._busy = False
            return
        batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
        task = asyncio.get_running_loop().create_task(self._run(batch), name="group-commit")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush answered {len(results)} results for {len(batch)} items")
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    if isinstance(exc, asyncio.CancelledError):
                        done.cancel()
                    else:
                        done.set_exception(exc)
                        done.add_done_callback(_consume_exception)  # callers that left log nothing
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
        finally:
            self._start()  # what arrived meanwhile goes now, in one batch

    async def close(self) -> None:
        """Wait for the running flush (and what it leaves pending)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _consume_exception(future: asyncio.Future[R]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()
