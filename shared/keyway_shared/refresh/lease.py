"""Keeping a refresh's lease while the refresh is alive.

A lease exists so that a replica that died mid-refresh does not block its connection for long. A
replica that is alive but slow (a provider near its timeout, a database write retried through a
failover) must not lose it: the lease running out under a live holder lets a sibling spend the same
rotating refresh token, and the provider then revokes the whole grant. So the holder extends its
lease every third of its length for as long as it works; only a holder that stopped extending (it
died, or cannot reach the database) is overtaken.

Nothing is written for refreshes shorter than a third of the lease, which is nearly all of them
(60 s lease, 15 s provider timeout by default): the first extension is a timer, not a task.

The periods are counted on an injected clock (tests step it). The lease's end itself is a time
stored on the connection and compared with each replica's ``now`` in the claims
(``store/refresh_state.py``): a time every replica must agree on, so it stays the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from pymongo.errors import PyMongoError

from ..clock import SYSTEM_CLOCK, Clock, wait_for_event
from ..logging import get_logger

__all__ = ["kept_lease"]

log = get_logger(__name__)


@contextlib.asynccontextmanager
async def kept_lease(
    extend: Callable[[], Awaitable[bool]], lease: timedelta, *, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[None]:
    """Call ``extend`` every third of ``lease`` while the block runs; it answers whether we still hold it."""
    period = lease.total_seconds() / 3
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    keeper: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal keeper
        keeper = loop.create_task(_keep(extend, period, done, clock), name="refresh-lease-keeper")

    timer = clock.call_later(period, start)
    try:
        yield
    finally:
        timer.cancel()
        done.set()
        if keeper is not None:
            # Not cancelled: an extension cut off mid-flight could still land after the block's
            # own release and hold the connection for a whole lease. Waiting costs one round trip.
            await keeper


async def _keep(extend: Callable[[], Awaitable[bool]], period: float, done: asyncio.Event, clock: Clock) -> None:
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
        await wait_for_event(clock, done, period)
