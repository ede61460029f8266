"""Reading due connections soonest first, in bounded windows of the due index.

"Everything due by now, soonest first, 64 of them" is one cheap query on MongoDB, which stops
reading the index after 64 entries. The embedded MongoDB-wire server reads the whole range before
it applies the limit, so a refresher that has fallen behind would read its entire backlog on every
round (measured: 10,000 due connections claimed at 62/s that way). The scanner therefore keeps a
floor (the soonest due time it last saw) and asks for a window above it, narrowing the window when
it comes back full and widening it when it comes back short. Due times written behind the floor
(a schedule set in the past) are found by a full scan every ten seconds, or at once when the
``connection.*`` consumer reports one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from keyway_shared.clock import SYSTEM_CLOCK, Clock

__all__ = ["DueIndex", "DueScanner"]


class DueIndex(Protocol):
    """What the loop reads: ``RefreshStateStore`` in the service, an in-memory fake in unit tests."""

    async def due_batch(
        self, *, now: datetime, limit: int, since: datetime | None = None
    ) -> list[tuple[Any, datetime]]: ...

    async def next_due(self, *, now: datetime, horizon: timedelta) -> datetime | None: ...


class DueScanner:
    def __init__(
        self,
        index: DueIndex,
        *,
        full_scan_every: float = 10.0,
        slack: timedelta = timedelta(seconds=2),
        min_step: float = 0.05,
        max_step: float = 3600.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._index = index
        self._clock = clock
        self._full_scan_every = full_scan_every
        self._slack = slack
        self._min_step = min_step
        self._max_step = max_step
        self._floor: datetime | None = None
        self._step = 1.0
        self._next_full = 0.0
        self.queries = 0

    def rewind(self, due: datetime) -> None:
        """Work falls due at ``due``: if that lies behind the floor, start from the bottom next time."""
        if self._floor is not None and due < self._floor:
            self._floor = None

    async def next_batch(self, *, now: datetime, limit: int) -> list[tuple[Any, datetime]]:
        mono = self._clock.monotonic()
        if self._floor is None or mono >= self._next_full:
            self._next_full = mono + self._full_scan_every
            batch = await self._query(now=now, limit=limit, since=None)
        else:
            batch = await self._windowed(now=now, limit=limit, floor=self._floor)
        # Nothing due: keep a little slack below now, for due times written a moment in the past.
        self._floor = batch[0][1] if batch else now - self._slack
        return batch

    async def _windowed(self, *, now: datetime, limit: int, floor: datetime) -> list[tuple[Any, datetime]]:
        while True:
            upto = min(now, floor + timedelta(seconds=self._step))
            batch = await self._query(now=upto, limit=limit, since=floor)
            if len(batch) >= limit:
                self._step = max(self._step / 2, self._min_step)  # crowded: a narrower window next time
                return batch
            if upto >= now:
                return batch
            self._step = min(self._step * 2, self._max_step)  # short of now and not full: look wider
            if batch:
                return batch
            floor = upto  # an empty stretch below now: move past it

    async def _query(self, *, now: datetime, limit: int, since: datetime | None) -> list[tuple[Any, datetime]]:
        self.queries += 1
        return await self._index.due_batch(now=now, limit=limit, since=since)
