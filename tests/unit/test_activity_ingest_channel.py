"""The activity-log consumer when its channel closes while a batch is being written (a broker reset):
later batches, delivered on the reopened channel, are still stored and acknowledged. No broker or
database: aio-pika's own message objects over a channel object that can be closed.

Before, the batch read ``message.channel`` to settle, which aio-pika raises on once the channel is
closed; the batch was never marked settled, and every later batch waited for it forever (seen in a
fault run: 1,000 messages held unacknowledged while ``/readyz`` said ready).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import commands
from pamqp.header import ContentHeader

from activity_log.app import entry_reader, record_spec
from activity_log.entries import Entry
from activity_log.ingest import IngestConsumer
from activity_log.settings import ActivityLogSettings
from keyway_shared.events import ActivityMessage, encode_event

from ..support.inproc import event
from ..support.polling import eventually


class Channel:
    """aiormq's channel, as far as a delivered message settles on it; ``is_closed`` as after a reset."""

    def __init__(self) -> None:
        self.is_closed = False
        self.acks: list[tuple[int, bool]] = []
        self.rejects: list[int] = []

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.is_closed:
            raise ChannelInvalidStateError("closed")
        self.acks.append((delivery_tag, multiple))

    async def basic_reject(self, delivery_tag: int, requeue: bool = False) -> None:
        if self.is_closed:
            raise ChannelInvalidStateError("closed")
        self.rejects.append(delivery_tag)


def delivery(tag: int, channel: Channel, *, redelivered: bool = False) -> IncomingMessage:
    body = encode_event(
        event(
            "activity.message",
            ActivityMessage(operation_id=f"op-{tag}", operation_type="webhook:outgoing", message="step"),
        )
    )
    frame = commands.Basic.Deliver(
        consumer_tag="ctag", delivery_tag=tag, redelivered=redelivered, exchange="x", routing_key="activity.message"
    )
    header = ContentHeader(body_size=len(body), properties=commands.Basic.Properties(message_id=f"m-{tag}"))
    channel_: Any = channel
    return IncomingMessage(DeliveredMessage(delivery=frame, header=header, body=body, channel=channel_))


async def test_a_channel_closed_during_a_write_does_not_hold_up_later_batches() -> None:
    write_started = asyncio.Event()
    release_write = asyncio.Event()
    written: list[list[str]] = []

    async def write(entries: list[Entry]) -> None:
        written.append([str(e) for e in entries])
        if len(written) == 1:
            write_started.set()
            await release_write.wait()  # the broker resets the channel meanwhile

    settings = ActivityLogSettings(queue_type="classic", batch_size=2)
    consumer = IngestConsumer(
        record_spec(settings),
        make_entry=entry_reader(retention=timedelta(days=1)),
        write=write,
        batch_size=2,
        batch_delay=0.01,
        queue_type="classic",
        shutdown_grace=0.5,
    )
    first = Channel()
    await consumer._on_message(delivery(1, first))
    await consumer._on_message(delivery(2, first))
    await asyncio.wait_for(write_started.wait(), timeout=5)
    first.is_closed = True
    release_write.set()

    # The robust channel reopens; the broker redelivers what the closed one held, then more.
    second = Channel()
    for tag in (1, 2, 3, 4):
        await consumer._on_message(delivery(tag, second, redelivered=tag <= 2))

    async def acknowledged() -> bool:
        return bool(second.acks) and second.acks[-1] == (4, True)

    try:
        await eventually(acknowledged, timeout=5, what="the batches on the reopened channel to be acknowledged")
    finally:
        await consumer.stop()
    assert first.acks == []  # nothing sent on the closed channel: the broker has those back
    assert second.acks == [(2, True), (4, True)]  # one multiple ack per batch, in delivery order
    assert second.rejects == []
    assert consumer.batches == 3
