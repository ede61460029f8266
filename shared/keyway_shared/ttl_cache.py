"""A process's short-lived copy of what it reads often from the database: one cache for every service.

What each of its users relies on:

- **Expiry.** An entry answers for ``ttl`` seconds after it was stored, then never again: however a
  change was missed, staleness is bounded.
- **Single flight.** Concurrent misses for one key share one load, which runs in a task of its own:
  a caller that gives up (its request was cancelled) does not cancel the others' load, and an expiry
  under load costs one database read, not one per waiting request. A user whose readers must each
  see a database read made after they arrived turns this off (``share_loads=False``).
- **Generation check.** An invalidation (:meth:`drop`, :meth:`drop_where`, :meth:`put`,
  :meth:`clear`) marks the loads then in flight for what it invalidates: they still answer their
  callers but store nothing, since what they read may predate the change; and no later read joins
  them.
- **Refresh ahead** (optional). A hit after ``refresh_ahead`` of the entry's life reloads it in the
  background while the entry goes on answering, so a key in steady use never misses.
- **One bound.** At most ``max_entries`` entries; beyond that the least recently used one goes.

Times are read from an injected :class:`~keyway_shared.clock.Clock` (``monotonic`` only), so tests
step them. Values are shared with every later reader: callers must not mutate what they get.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .clock import SYSTEM_CLOCK, Clock
from .logging import get_logger

__all__ = ["Cached", "TtlCache"]

log = get_logger(__name__)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Load = Callable[[], Awaitable[V]]


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    value: V
    reload_at: float  # by the clock's monotonic(): a hit after this reloads in the background
    expires_at: float  # not served from this time on


class _Flight(Generic[V]):
    """One load in flight; ``stale`` once an invalidation overtook it."""

    __slots__ = ("stale", "task")

    def __init__(self) -> None:
        self.stale = False
        self.task: asyncio.Task[V] | None = None  # None: run in its caller's task, not joinable


def _always(_value: object) -> bool:
    return True


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int,
        refresh_ahead: float | None = None,
        share_loads: bool = True,
        keep: Callable[[V], bool] = _always,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``refresh_ahead``: the share of an entry's life after which a hit reloads it (None: never).
        ``keep``: whether a loaded value is stored (a cache that must not remember "not found" says no
        to None)."""
        if refresh_ahead is not None and not 0 < refresh_ahead < 1:
            raise ValueError("refresh_ahead is a share of the entry's life, between 0 and 1")
        self._ttl = ttl
        self._max = max_entries
        self._refresh_ahead = refresh_ahead
        self._share = share_loads
        self._keep = keep
        self.clock = clock  # tests may replace it after construction
        self._entries: OrderedDict[K, Cached[V]] = OrderedDict()
        self._flights: dict[K, list[_Flight[V]]] = {}

    @property
    def enabled(self) -> bool:
        """False when configured to hold nothing (no life or no room): every read loads."""
        return self._ttl > 0 and self._max > 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        """An entry that still answers (an expired one is removed on the way)."""
        return self._unexpired(key) is not None

    async def get(self, key: K, load: Load[V]) -> V:
        """The cached value, or ``load``'s answer (stored unless overtaken by an invalidation)."""
        if not self.enabled:
            return await load()
        hit = self.lookup(key, reload=load)
        if hit is not None:
            return hit.value
        return await self.load(key, load)

    def lookup(self, key: K, *, reload: Load[V] | None = None) -> Cached[V] | None:
        """The entry if it still answers, counted as a use; with ``reload``, refreshed ahead if due."""
        entry = self._unexpired(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        if (
            reload is not None
            and entry.reload_at <= self.clock.monotonic()
            and key not in self._flights  # one reload at a time, and none while a miss is loading
        ):
            self._start(key, reload)
        return entry

    async def load(self, key: K, load: Load[V]) -> V:
        """The miss path: join the key's current load if sharing, else load (and store) now."""
        if not self._share:
            return await self._fly(key, load, self._board(key))
        for flight in reversed(self._flights.get(key, ())):
            if flight.task is not None and not flight.stale:
                return await asyncio.shield(flight.task)
        # Shielded: one reader cancelled does not cancel the load the others wait for.
        return await asyncio.shield(self._start(key, load))

    def put(self, key: K, value: V) -> None:
        """Store a value known to be current; a load in flight for the key does not overwrite it."""
        self._overtake(key)
        if self.enabled:
            self._store(key, value)

    def drop(self, key: K) -> None:
        self._overtake(key)
        self._entries.pop(key, None)

    def drop_where(self, match: Callable[[K, V], bool]) -> None:
        """Forget the entries ``match`` picks. Every load in flight is overtaken: what it will bring back
        is not known yet, so neither is whether it matches."""
        self._overtake_all()
        for key in [key for key, entry in self._entries.items() if match(key, entry.value)]:
            del self._entries[key]

    def clear(self) -> None:
        self._overtake_all()
        self._entries.clear()

    def close(self) -> None:
        """Cancel the loads running in tasks of their own (at shutdown)."""
        for flights in self._flights.values():
            for flight in flights:
                if flight.task is not None:
                    flight.task.cancel()

    # -- inside ----------------------------------------------------------------------------------

    def _unexpired(self, key: K) -> Cached[V] | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self.clock.monotonic():
            del self._entries[key]
            return None
        return entry

    def _board(self, key: K) -> _Flight[V]:
        # Registered before the load starts, so an invalidation from here on overtakes it.
        flight: _Flight[V] = _Flight()
        self._flights.setdefault(key, []).append(flight)
        return flight

    def _start(self, key: K, load: Load[V]) -> asyncio.Task[V]:
        flight = self._board(key)
        task = asyncio.create_task(self._fly(key, load, flight))
        flight.task = task
        task.add_done_callback(_retrieve)
        return task

    async def _fly(self, key: K, load: Load[V], flight: _Flight[V]) -> V:
        try:
            value = await load()
        finally:
            flights = self._flights.get(key)
            if flights is not None:
                flights.remove(flight)
                if not flights:
                    del self._flights[key]
        if not flight.stale and self.enabled and self._keep(value):
            self._store(key, value)
        return value

    def _store(self, key: K, value: V) -> None:
        now = self.clock.monotonic()
        reload_at = math.inf if self._refresh_ahead is None else now + self._ttl * self._refresh_ahead
        self._entries[key] = Cached(value=value, reload_at=reload_at, expires_at=now + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)  # the least recently used

    def _overtake(self, key: K) -> None:
        for flight in self._flights.get(key, ()):
            flight.stale = True

    def _overtake_all(self) -> None:
        for flights in self._flights.values():
            for flight in flights:
                flight.stale = True


def _retrieve(task: asyncio.Task[object]) -> None:
    # A load nobody waits for any more (a refresh ahead, or all its readers gave up) failing is no
    # error: the entry expires as usual and a later read loads it.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("cache load failed", error=exc.__class__.__name__)
