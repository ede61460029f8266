"""Publishing events: persistent messages, publisher confirms, one robust connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from ..events import CloudEvent, encode_event
from .frames import FrameBatch, publish_frames
from .topology import EVENTS_EXCHANGE, declare_events_exchange

__all__ = ["EventPublisher", "PublishError", "build_message", "event_properties"]


class PublishError(Exception):
    """The broker did not confirm a publish (nack, closed channel, timeout)."""


_CONTENT_TYPE = "application/cloudevents+json"


def build_message(event: CloudEvent[Any], *, headers: Mapping[str, Any] | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        body=encode_event(event),
        content_type=_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.id,
        type=event.type,
        timestamp=event.time,
        headers={**event.header_fields(), **(headers or {})},
    )


def event_properties(event: CloudEvent[Any]) -> aiormq.spec.Basic.Properties:
    """What ``build_message(event).properties`` is, without the aio-pika message in between (whose
    every attribute set goes through a Python ``__setattr__``): the notices' path, one per webhook."""
    return aiormq.spec.Basic.Properties(
        content_type=_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        headers=event.header_fields(),
        message_id=event.id,
        message_type=event.type,
        priority=0,  # aio-pika's default, sent as a property
        timestamp=event.time,
    )


class EventPublisher:
    """Publishes events to the topic exchange; ``publish`` returns once the broker confirmed.

    ``publish(event, confirm=False)`` is for notices whose loss costs nothing but a line in a log
    (e.g. "this webhook was delivered", whose record is in the database anyway): the message is
    still persistent, but goes out on a channel without confirms, saving the confirm's round trip
    and about a third of the publish's CPU, and the call returns once the frame is queued for the
    socket rather than written. Such a notice is encoded here and joins the frames (acks, other
    notices) written at the end of the loop turn (``frames``, a :class:`~.frames.FrameBatch`).
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        *,
        exchange_name: str = EVENTS_EXCHANGE,
        confirm_timeout: float = 10.0,
    ) -> None:
        self._connection = connection
        self._exchange_name = exchange_name
        self._confirm_timeout = confirm_timeout
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._unconfirmed: AbstractChannel | None = None
        self._unconfirmed_exchange: AbstractExchange | None = None
        self.frames = FrameBatch()  # this connection's acks and unconfirmed publishes, per loop turn

    async def _ensure(self) -> AbstractExchange:
        if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
            return self._exchange
        async with self._lock:
            if self._exchange is None or self._channel is None or self._channel.is_closed:
                self._channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await declare_events_exchange(self._channel, self._exchange_name)
        return self._exchange

    async def _ensure_unconfirmed(self) -> AbstractExchange:
        channel, exchange = self._unconfirmed, self._unconfirmed_exchange
        if exchange is not None and channel is not None and not channel.is_closed:
            return exchange
        async with self._lock:
            if self._unconfirmed_exchange is None or self._unconfirmed is None or self._unconfirmed.is_closed:
                self._unconfirmed = await self._connection.channel(publisher_confirms=False)
                self._unconfirmed_exchange = await declare_events_exchange(self._unconfirmed, self._exchange_name)
            return self._unconfirmed_exchange

    async def publish(self, event: CloudEvent[Any], *, confirm: bool = True) -> None:
        if confirm:
            await self.publish_message(build_message(event), routing_key=event.type)
            return
        try:
            exchange = await self._ensure_unconfirmed()
            assert self._unconfirmed is not None  # opened by _ensure_unconfirmed
            channel = await self._unconfirmed.get_underlay_channel()
            if not isinstance(channel, aiormq.Channel):  # not aiormq's own: publish the ordinary way
                await exchange.publish(build_message(event), routing_key=event.type, mandatory=False)
                return
            body = encode_event(event)
            if len(body) < channel.max_content_size:  # one body frame: encoded here, written with the turn's
                frames = publish_frames(
                    channel.number,
                    exchange=exchange.name,
                    routing_key=event.type,
                    body=body,
                    content_type=_CONTENT_TYPE,
                    headers=event.header_fields(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
                    message_id=event.id,
                    timestamp=event.time,
                    message_type=event.type,
                )
                self.frames.add(channel, frames)
                return
            # wait=False: queued for the socket, not waited for. Waiting (what aio-pika's publish
            # does) holds the channel's lock until the connection's writer task has written the
            # frame, so concurrent notices queue behind each other for several loop turns apiece.
            # The frame queue is bounded, so a broker that cannot keep up still slows us down.
            await channel.basic_publish(
                body,
                exchange=exchange.name,
                routing_key=event.type,
                properties=event_properties(event),
                mandatory=False,
                wait=False,
            )
        except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError) as exc:
            raise PublishError(f"publish of {event.type} failed: {exc.__class__.__name__}") from exc

    async def publish_many(self, events: Iterable[CloudEvent[Any]]) -> None:
        """Publish with all confirms in flight at once: ~5x the rate of awaiting each."""
        await asyncio.gather(*(self.publish(event) for event in events))

    async def publish_message(self, message: aio_pika.Message, *, routing_key: str) -> None:
        try:
            exchange = await self._ensure()
            # Not mandatory: an event nobody subscribes to is normal, and a mandatory one would come
            # back whole from the broker, to be logged as unhandled, for every publish.
            await exchange.publish(message, routing_key=routing_key, timeout=self._confirm_timeout, mandatory=False)
        except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError) as exc:
            raise PublishError(f"publish of {routing_key} was not confirmed: {exc.__class__.__name__}") from exc

    async def publish_to_queue(self, message: aio_pika.Message, *, queue: str) -> None:
        """Publish straight to a queue through the default exchange (delay queues)."""
        try:
            await self._ensure()
            assert self._channel is not None
            await self._channel.default_exchange.publish(message, routing_key=queue, timeout=self._confirm_timeout)
        except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError) as exc:
            raise PublishError(f"publish to {queue} was not confirmed: {exc.__class__.__name__}") from exc

    async def close(self) -> None:
        self.frames.flush()
        for channel in (self._channel, self._unconfirmed):
            if channel is not None and not channel.is_closed:
                await channel.close()
        self._channel = self._unconfirmed = None
        self._exchange = self._unconfirmed_exchange = None
