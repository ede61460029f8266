"""A broker connection that a service can start without: it connects in the background, forever.

The gateway must keep serving (and writing events to its outbox) while RabbitMQ is down, and a
consumer that starts before the broker should become ready when it arrives instead of crashing.
Once connected, aio-pika's robust connection reconnects by itself.

Nothing a try raises ends the link (only cancellation, which is how ``close`` stops it): a connect
attempt or an on-connect callback that fails, whatever the exception, is logged and tried again
after a capped, jittered backoff. aio-pika has been seen raising ``StopAsyncIteration`` under
uvloop when the broker (or a proxy before it) closes the socket before its first frame; a loop
that caught only connection errors died of it without a word and left the service disconnected
for the rest of its life.

What the link knows about itself, for the health endpoints (:mod:`.health`):

    is_connected     the connection is open now (publishing makes sense)
    setup_done       every on-connect callback (consumers, topology) has succeeded once
    is_ready         connected now, and set up
    unreachable_for  seconds since the broker was last lost (0 while connected)
    can_recover      False once the link cannot come back by itself: its task ended or the robust
                     connection was closed under it; only a restart of the process helps then
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from ..backoff import Backoff, is_cancellation
from ..bus import EventPublisher, PublishError, connect
from ..events import CloudEvent
from ..logging import get_logger

__all__ = ["BrokerLink", "OnConnect"]

log = get_logger(__name__)

OnConnect = Callable[[AbstractRobustConnection], Awaitable[None]]


class BrokerLink:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        exchange: str = "keyway.events",
        max_backoff: float = 5.0,
        outage_bound: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._name = name
        self._exchange = exchange
        self._max_backoff = max_backoff
        self.outage_bound = outage_bound  # read by /readyz: how long an outage may last before it says so
        self._clock = clock
        self.connection: AbstractRobustConnection | None = None
        self.publisher: EventPublisher | None = None
        self.connected = asyncio.Event()  # set once the first connection is made (never cleared)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lost_at: float | None = clock()  # None while connected
        self._on_connect: list[OnConnect] = []
        self._setting_up = 0  # on-connect callbacks registered and not yet succeeded
        self._late_callbacks: set[asyncio.Task[None]] = set()

    def on_connect(self, callback: OnConnect) -> None:
        """Run ``callback`` once the connection is made (start consumers there); at once if it already is.

        A callback that fails is run again (after a backoff) until it succeeds, so it must be safe
        to repeat after a failure halfway: close what it opened before raising.
        """
        self._setting_up += 1
        if self.connected.is_set() and self.connection is not None:
            task = asyncio.create_task(self._set_up(callback, self.connection), name=f"broker-setup-{self._name}")
            self._late_callbacks.add(task)
            task.add_done_callback(self._late_callbacks.discard)
        else:
            self._on_connect.append(callback)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"broker-connect-{self._name}")

    async def _run(self) -> None:
        connection = await self._connect_until_done()
        connection.close_callbacks.add(self._on_lost)
        connection.reconnect_callbacks.add(self._on_restored)
        self.connection = connection
        self.publisher = EventPublisher(connection, exchange_name=self._exchange)
        self._lost_at = None
        log.info("broker connected")
        # Set before the callbacks run, so one registered meanwhile runs at once instead of never.
        self.connected.set()
        for callback in self._on_connect:
            await self._set_up(callback, connection)
        # Stay with the connection: this task ending is what /healthz reads as "cannot recover".
        await connection.closed()
        if not self._closing:
            log.error("the broker connection was closed for good; this process needs a restart")

    async def _connect_until_done(self) -> AbstractRobustConnection:
        backoff = Backoff(cap=self._max_backoff)
        while True:
            try:
                return await connect(self._url, name=self._name)
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                delay = backoff.next()
                log.warning(
                    "broker unreachable; retrying",
                    error=exc.__class__.__name__,
                    detail=str(exc)[:200],
                    attempt=backoff.failures,
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)

    async def _set_up(self, callback: OnConnect, connection: AbstractRobustConnection) -> None:
        backoff = Backoff(cap=self._max_backoff)
        while True:
            try:
                await callback(connection)
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                delay = backoff.next()
                log.warning(
                    "broker on-connect callback failed; retrying",
                    callback=getattr(callback, "__qualname__", repr(callback)),
                    error=exc.__class__.__name__,
                    detail=str(exc)[:200],
                    attempt=backoff.failures,
                    retry_in=round(delay, 2),
                    exc_info=backoff.failures == 1,
                )
                await asyncio.sleep(delay)
                await connection.ready()  # no point trying again before the connection is back
                continue
            self._setting_up -= 1
            return

    def _on_lost(self, _connection: AbstractConnection | None, exc: BaseException | None) -> None:
        if self._lost_at is None and not self._closing:
            self._lost_at = self._clock()
            log.warning("broker connection lost; reconnecting", error=exc.__class__.__name__ if exc else None)

    def _on_restored(self, _connection: AbstractRobustConnection | None) -> None:
        if self._lost_at is not None:
            log.info("broker connection restored", after_seconds=round(self._clock() - self._lost_at, 1))
        self._lost_at = None

    @property
    def is_connected(self) -> bool:
        """The connection is open now and not closing (not: once was)."""
        connection = self.connection
        if connection is None or self._lost_at is not None or connection.is_closed:
            return False
        transport = connection.transport
        return connection.connected.is_set() and transport is not None and not transport.connection.is_closed

    @property
    def setup_done(self) -> bool:
        """Every on-connect callback (consumers, topology) has succeeded once; the robust
        connection restores what they opened after each reconnection."""
        return self.connected.is_set() and self._setting_up == 0

    @property
    def is_ready(self) -> bool:
        """Connected now, and set up."""
        return self.is_connected and self.setup_done

    @property
    def ever_connected(self) -> bool:
        return self.connected.is_set()

    @property
    def unreachable_for(self) -> float:
        """Seconds since the broker was lost (or since the start, if never reached); 0 while connected."""
        lost_at = self._lost_at
        return 0.0 if lost_at is None else max(0.0, self._clock() - lost_at)

    @property
    def can_recover(self) -> bool:
        if self._closing or self._task is None:
            return True
        if self._task.done():
            return False  # the supervising task is gone: nothing will connect or set up again
        connection = self.connection
        return connection is None or not (connection.is_closed or connection.close_called)

    async def publish(self, event: CloudEvent[Any]) -> None:
        if self.publisher is None:
            raise PublishError("broker not connected yet")
        await self.publisher.publish(event)

    async def close(self) -> None:
        self._closing = True
        for task in [self._task, *self._late_callbacks]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.close()
        if self.connection is not None:
            await self.connection.close()
