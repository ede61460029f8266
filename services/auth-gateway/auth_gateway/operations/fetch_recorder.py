"""``last_fetched_at`` without a database write per read: reads are noted in memory and flushed in bulk.

The value is bookkeeping (which connections are in use, for the daily keep-alive refresh of idle
ones; a read's own answer carries the time of that read), so it is stored at a granularity of five
minutes: a connection read a thousand times a minute costs one write every five minutes, not five
thousand. On the embedded server an update of a connection costs about 4 ms of CPU, so at a
minute's granularity a replica serving 1,000 connections spent 7 % of a core on this alone.
Losing the last minutes of it in a crash costs nothing; paying a write on the hottest path for it
would (on the embedded server an update costs more than a read).

It is also written on a budget: at most ``per_flush`` connections a flush, the ones noted first
first. A replica that starts serving a thousand connections notes them all within a second; written
at once, they were a thousand updates (seconds of the embedded server's CPU, and more when two
replicas wrote the same documents at once) in the middle of the traffic that noted them. Paced, they
trickle in over the next minute, and a replica serving more connections than its budget covers
stores each of them less often rather than loading the database more.

A write the database refuses (not one it could not be reached for) is tried again a few times and
then dropped with a log line: the embedded server refuses every update of a document nested
hundreds of levels deep, and one such connection must neither be retried forever nor keep the
others in its batch from being recorded.

The flush loop never ends but by cancellation: a flush that fails, whatever the exception, is
logged and the next one waits longer (capped, jittered) while they keep failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

from aiohttp import web
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from keyway_shared.backoff import Backoff, is_cancellation
from keyway_shared.events import utcnow
from keyway_shared.logging import get_logger
from keyway_shared.store import ConnectionStore
from keyway_shared.unavailability import is_unavailability

from ..resources import STORES

__all__ = ["FETCH_RECORDER", "FetchRecorder", "fetch_recorder_context"]

log = get_logger(__name__)

Key = tuple[str, str, str]  # environment, provider_config_key, connection_id


class FetchRecorder:
    def __init__(
        self,
        connections: ConnectionStore,
        *,
        every: float = 1.0,
        granularity: timedelta = timedelta(minutes=5),
        max_refusals: int = 5,
        per_flush: int = 20,
    ) -> None:
        self._connections = connections
        self._every = every
        self._per_flush = per_flush
        self._granularity = granularity
        self._max_refusals = max_refusals
        self._pending: dict[Key, datetime] = {}
        self._written: dict[Key, datetime] = {}  # what this replica last stored (or gave up on)
        self._refusals: dict[Key, int] = {}  # consecutive refused writes per connection
        self._task: asyncio.Task[None] | None = None

    def note(self, environment: str, provider_config_key: str, connection_id: str) -> datetime:
        now = utcnow()
        key = (environment, provider_config_key, connection_id)
        last = self._written.get(key)
        if last is None or now - last >= self._granularity:
            self._pending[key] = now
        return now

    async def flush(self) -> bool:
        """Write the ``per_flush`` connections noted first; False when the database could not be
        reached (they are kept for later)."""
        if not self._pending:
            return True
        keys = list(itertools.islice(self._pending, self._per_flush))
        pending = {key: self._pending.pop(key) for key in keys}
        try:
            await self._connections.touch_fetched(keys, max(pending.values()))
        except BulkWriteError as exc:  # the others were written: only these were refused
            refused = {keys[error["index"]] for error in exc.details.get("writeErrors", [])}
            self._recorded({k: at for k, at in pending.items() if k not in refused})
            self._refused({k: pending[k] for k in refused})
        except PyMongoError as exc:
            if not _refusal(exc):
                log.warning("could not record last_fetched_at; will try again", count=len(pending))
                self._retry(pending)
                return False
            if len(pending) == 1:  # the whole batch refused: find the connections it was for
                self._refused(pending)
            else:
                return await self._one_by_one(pending)
        else:
            self._recorded(pending)
        return True

    async def _one_by_one(self, pending: dict[Key, datetime]) -> bool:
        items = list(pending.items())
        for index, (key, at) in enumerate(items):
            try:
                await self._connections.touch_fetched([key], at)
            except PyMongoError as exc:
                if not _refusal(exc):
                    log.warning("could not record last_fetched_at; will try again", count=len(items) - index)
                    self._retry(dict(items[index:]))
                    return False
                self._refused({key: at})
            else:
                self._recorded({key: at})
        return True

    def _recorded(self, written: dict[Key, datetime]) -> None:
        if len(self._written) > 100_000:
            self._written.clear()  # bounded memory; at worst one extra write per connection
        self._written.update(written)
        for key in written:
            self._refusals.pop(key, None)

    def _refused(self, refused: dict[Key, datetime]) -> None:
        for key, at in refused.items():
            count = self._refusals.get(key, 0) + 1
            if count < self._max_refusals:
                self._refusals[key] = count
                self._pending.setdefault(key, at)
                continue
            self._refusals.pop(key, None)
            self._written[key] = at  # not noted again before the granularity has passed
            environment, provider_config_key, connection_id = key
            log.warning(
                "the database refuses to record last_fetched_at of a connection; dropped",
                environment=environment,
                provider_config_key=provider_config_key,
                connection_id=connection_id,
                attempts=count,
            )

    def _retry(self, pending: dict[Key, datetime]) -> None:
        for key, at in pending.items():
            self._pending.setdefault(key, at)

    async def _loop(self) -> None:
        backoff = Backoff(first=self._every, cap=max(self._every, 30.0))
        delay = self._every
        while True:
            await asyncio.sleep(delay)
            try:
                reached = await self.flush()
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                delay = backoff.next()
                log.exception("last_fetched_at flush failed", retry_in=round(delay, 1))
                continue
            if reached:
                backoff.reset()
                delay = self._every
            else:
                delay = backoff.next()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="last-fetched-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # What is left, budget aside (a chunk at a time), unless the database is away.
        while self._pending and await self.flush():
            pass


def _refusal(exc: PyMongoError) -> bool:
    """The database answered and refused the write (not: could not be reached, or not in time)."""
    return isinstance(exc, OperationFailure) and not is_unavailability(exc)


FETCH_RECORDER = web.AppKey("fetch_recorder", FetchRecorder)


def fetch_recorder_context() -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        recorder = FetchRecorder(app[STORES].connections)
        app[FETCH_RECORDER] = recorder
        recorder.start()
        yield
        await recorder.stop()

    return ctx
