"""Group commit: concurrent callers' writes share one database round trip, each gets its own answer.

By default nothing waits on a timer. The first call of an idle committer is flushed at the end
of the current turn of the event loop (so calls made together, such as the refresh loop starting a
round of refreshes, go together); calls arriving while a flush runs wait for it to end and then go
together in the next. A lone caller therefore pays no delay, and under load the batch grows by
itself to what arrived during one round trip. ``linger`` trades a little latency for bigger
batches when calls come in a trickle.

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
    """``linger``: how long a batch started while idle waits for company (0: to the end of the
    current turn of the loop). A batch that reaches ``max_size`` goes at once."""

    def __init__(
        self, flush: Callable[[list[T]], Awaitable[list[R]]], *, max_size: int = 64, linger: float = 0.0
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._flush = flush
        self._max_size = max_size
        self._linger = linger
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled: asyncio.Handle | None = None  # a start waiting for the turn's end or the linger
        self._running: asyncio.Task[None] | None = None  # the one flush at a time

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, done))
        if self._running is None:  # else the running flush's end starts the next
            if len(self._pending) >= self._max_size:
                self._start()
            elif self._scheduled is None:
                self._scheduled = (
                    loop.call_later(self._linger, self._start) if self._linger > 0 else loop.call_soon(self._start)
                )
        # Shielded: a cancelled caller must not cancel the future; its write may still happen.
        return await asyncio.shield(done)

    def _start(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._running is not None or not self._pending:
            return
        batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
        self._running = asyncio.get_running_loop().create_task(self._run(batch), name="group-commit")

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
            self._running = None
            self._start()  # what arrived meanwhile goes now, in one batch

    async def close(self) -> None:
        """Start what waits, and wait for the flushes until nothing is left."""
        self._start()
        while self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)


def _consume_exception(future: asyncio.Future[R]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()
