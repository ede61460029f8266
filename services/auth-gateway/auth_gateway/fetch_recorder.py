"""``last_fetched_at`` without a database write per read: reads are noted in memory and flushed in bulk.

The value is bookkeeping (which connections are in use, for the daily keep-alive refresh of idle
ones), so it is stored at minute granularity: a connection read a thousand times a minute costs one
write a minute, not a thousand. Losing the last minute of it in a crash costs nothing; paying a
write on the hottest path for it would (on the embedded server an update costs more than a read).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.events import utcnow
from keyway_shared.logging import get_logger
from keyway_shared.store import ConnectionStore

from .resources import STORES

__all__ = ["FETCH_RECORDER", "FetchRecorder", "fetch_recorder_context"]

log = get_logger(__name__)


class FetchRecorder:
    def __init__(
        self, connections: ConnectionStore, *, every: float = 1.0, granularity: timedelta = timedelta(minutes=1)
    ) -> None:
        self._connections = connections
        self._every = every
        self._granularity = granularity
        self._pending: dict[tuple[str, str, str], datetime] = {}
        self._written: dict[tuple[str, str, str], datetime] = {}  # what this replica last stored
        self._task: asyncio.Task[None] | None = None

    def note(self, environment: str, provider_config_key: str, connection_id: str) -> datetime:
        now = utcnow()
        key = (environment, provider_config_key, connection_id)
        last = self._written.get(key)
        if last is None or now - last >= self._granularity:
            self._pending[key] = now
        return now

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        latest = max(pending.values())
        try:
            await self._connections.touch_fetched(list(pending), latest)
            if len(self._written) > 100_000:
                self._written.clear()  # bounded memory; at worst one extra write per connection
            self._written.update(pending)
        except PyMongoError:
            log.warning("could not record last_fetched_at; will try again", count=len(pending))
            for key, at in pending.items():
                self._pending.setdefault(key, at)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="last-fetched-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


FETCH_RECORDER = web.AppKey("fetch_recorder", FetchRecorder)


def fetch_recorder_context() -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        recorder = FetchRecorder(app[STORES].connections)
        app[FETCH_RECORDER] = recorder
        recorder.start()
        yield
        await recorder.stop()

    return ctx
