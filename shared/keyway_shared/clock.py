"""The clock a component reads, passed in, so that its tests step time instead of sleeping through it.

A :class:`Clock` gives two readings and one timer:

- ``now()``: aware UTC, for times compared with stored ones or shown to people;
- ``monotonic()``: seconds from an arbitrary origin, for ages and intervals (a cache entry's life);
- ``call_later(delay, callback)``: run ``callback`` once ``delay`` seconds have passed by this clock.

Waiting goes through the timer (:func:`sleep`, :func:`wait_for_event`), so code that waits on an
injected clock wakes when a test steps it past the deadline. :data:`SYSTEM_CLOCK` is the real clock
of every service; ``tests/support/clock.py`` has the one tests step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "Timer", "sleep", "wait_for_event"]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer: ...


class SystemClock:
    """The wall clock, the monotonic clock and the running event loop's timers."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


SYSTEM_CLOCK: Final = SystemClock()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def sleep(clock: Clock, seconds: float) -> None:
    """``asyncio.sleep`` by ``clock``."""
    rung: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    timer = clock.call_later(seconds, lambda: _resolve(rung))
    try:
        await rung
    finally:
        timer.cancel()


async def wait_for_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set (True) or ``seconds`` have passed by ``clock`` (False)."""
    if event.is_set():
        return True
    expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiter = asyncio.ensure_future(event.wait())
    timer = clock.call_later(seconds, lambda: _resolve(expired))
    try:
        await asyncio.wait((waiter, expired), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        waiter.cancel()
        expired.cancel()
    return event.is_set()
