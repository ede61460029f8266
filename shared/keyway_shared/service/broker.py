"""A broker connection that a service can start without: it connects in the background.

The gateway must keep serving (and writing events to its outbox) while RabbitMQ is down, and a
consumer that starts before the broker should become ready when it arrives instead of crashing.
Once connected, aio-pika's robust connection reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from ..bus import EventPublisher, PublishError, connect
from ..events import CloudEvent
from ..logging import get_logger

__all__ = ["BrokerLink"]

log = get_logger(__name__)


class BrokerLink:
    def __init__(self, url: str, *, name: str, exchange: str = "keyway.events", max_backoff: float = 5.0) -> None:
        self._url = url
        self._name = name
        self._exchange = exchange
        self._max_backoff = max_backoff
        self.connection: AbstractRobustConnection | None = None
        self.publisher: EventPublisher | None = None
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_connect: list[Callable[[AbstractRobustConnection], Awaitable[None]]] = []
        self._late_callbacks: set[asyncio.Task[None]] = set()

    def on_connect(self, callback: Callable[[AbstractRobustConnection], Awaitable[None]]) -> None:
        """Run ``callback`` once the connection is made (start consumers there); at once if it already is."""
        if self.connected.is_set() and self.connection is not None:
            task = asyncio.create_task(self._run_callback(callback, self.connection))
            self._late_callbacks.add(task)
            task.add_done_callback(self._late_callbacks.discard)
        else:
            self._on_connect.append(callback)

    async def _run_callback(
        self, callback: Callable[[AbstractRobustConnection], Awaitable[None]], connection: AbstractRobustConnection
    ) -> None:
        try:
            await callback(connection)
        except Exception:
            log.exception("broker on-connect callback failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_loop(), name=f"broker-connect-{self._name}")

    async def _connect_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                self.connection = await connect(self._url, name=self._name)
                break
            except (aio_pika.exceptions.AMQPError, ConnectionError, OSError, TimeoutError) as exc:
                log.warning("broker unreachable; retrying", error=exc.__class__.__name__, retry_in=round(delay, 1))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
        self.publisher = EventPublisher(self.connection, exchange_name=self._exchange)
        log.info("broker connected")
        # Set before the callbacks run, so one registered meanwhile runs at once instead of never.
        self.connected.set()
        for callback in self._on_connect:
            await self._run_callback(callback, self.connection)

    @property
    def is_ready(self) -> bool:
        return self.connection is not None and not self.connection.is_closed and self.connected.is_set()

    async def publish(self, event: CloudEvent[Any]) -> None:
        if self.publisher is None:
            raise PublishError("broker not connected yet")
        await self.publisher.publish(event)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.close()
        if self.connection is not None:
            await self.connection.close()
