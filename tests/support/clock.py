"""A clock that moves only when the test steps it (a ``keyway_shared.clock.Clock``).

``await clock.step(seconds)`` walks time forward timer by timer: each timer fires at its own time,
and the event loop runs what it started (a task, a wake-up) before the next one fires, so a chain
of timers (a lease kept every period, a loop sleeping between rounds) plays out as it would in real
time, without the wait.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["SteppedClock", "settle"]

START = datetime(2026, 1, 1, tzinfo=UTC)
_SETTLE_TURNS = 50  # loop turns after each timer: ample for work that awaits nothing outside the process


async def settle() -> None:
    """Let the event loop run everything that is ready (tasks started, futures resolved) for a while."""
    for _ in range(_SETTLE_TURNS):
        await asyncio.sleep(0)


class _Timer:
    __slots__ = ("callback", "cancelled", "due", "order")

    def __init__(self, due: float, order: int, callback: Callable[[], object]) -> None:
        self.due = due
        self.order = order
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.due, self.order) < (other.due, other.order)

    def cancel(self) -> None:
        self.cancelled = True


class SteppedClock:
    def __init__(self, start: datetime = START) -> None:
        self._start = start
        self._elapsed = 0.0
        self._timers: list[_Timer] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return 1000.0 + self._elapsed  # any origin; not zero, so no code can take it for "unset"

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(self._elapsed + max(delay, 0.0), next(self._order), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def step(self, seconds: float) -> None:
        """Move ``seconds`` forward, firing every timer due on the way at its own time."""
        target = self._elapsed + seconds
        await settle()
        while self._timers and self._timers[0].due <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._elapsed = max(self._elapsed, timer.due)
            timer.callback()
            await settle()
        self._elapsed = target
        await settle()
