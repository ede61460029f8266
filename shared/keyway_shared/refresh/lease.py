"""Keeping a refresh's lease while the refresh is alive.

A lease exists so that a replica that died mid-refresh does not block its connection for long. A
replica that is alive but slow (a provider near its timeout, a database write retried through a
failover) must not lose it: the lease running out under a live holder lets a sibling spend the same
rotating refresh token, and the provider then revokes the whole grant. So the holder extends its
lease every third of its length for as long as it works; only a holder that stopped extending (it
died, or cannot reach the database) is overtaken.

Nothing is written for refreshes shorter than a third of the lease, which is nearly all of them
(60 s lease, 15 s provider timeout by default): the first extension is a timer, not a task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from pymongo.errors import PyMongoError

from ..logging import get_logger

__all__ = ["kept_lease"]

log = get_logger(__name__)


@contextlib.asynccontextmanager
async def kept_lease(extend: Callable[[], Awaitable[bool]], lease: timedelta) -> AsyncIterator[None]:
    """Call ``extend`` every third of ``lease`` while the block runs; it answers whether we still hold it."""
    period = lease.total_seconds() / 3
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    keeper: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal keeper
        keeper = loop.create_task(_keep(extend, period, done), name="refresh-lease-keeper")

    timer = loop.call_later(period, start)
    try:
        yield
    finally:
        timer.cancel()
        done.set()
        if keeper is not None:
            # Not cancelled: an extension cut off mid-flight could still land after the block's
            # own release and hold the connection for a whole lease. Waiting costs one round trip.
            await keeper


async def _keep(extend: Callable[[], Awaitable[bool]], period: float, done: asyncio.Event) -> None:
    while not done.is_set():
        try:
            held = await extend()
        except PyMongoError as exc:
            # The lease still runs for two more periods; try again at the next one.
            log.warning("cannot extend a refresh lease", error=exc.__class__.__name__)
        else:
            if not held:
                if not done.is_set():  # else our own write released it as the block ended
                    # Taken over after it ran out (or, rarely, released by our own write a moment
                    # ago); either way the compare-and-swap keeps our write from overwriting theirs.
                    log.warning("refresh lease no longer held; renewal stopped")
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), period)
