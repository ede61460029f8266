"""The hand-encoded ack and publish frames are byte for byte what pamqp (through aiormq) writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from keyway_shared.bus import build_message
from keyway_shared.bus.frames import FrameBatch, ack_frame, publish_frames
from keyway_shared.bus.publisher import event_properties
from keyway_shared.events import WebhookDelivered, make_event


def _pamqp(channel: int, *frames: Any) -> bytes:
    return b"".join(pamqp.frame.marshal(frame, channel) for frame in frames)


def test_ack_frame_matches_pamqp() -> None:
    for channel, tag in ((1, 1), (7, 300), (65535, 2**63 - 1)):
        assert ack_frame(channel, tag) == _pamqp(channel, spec.Basic.Ack(delivery_tag=tag, multiple=False))


def _notice(**extra: Any) -> Any:
    data = WebhookDelivered(
        delivery_id="d-1",
        event_id="e-1",
        url="https://example.com/hook",
        attempt=1,
        status=200,
        duration_ms=3.5,
        **extra,
    )
    return make_event(data, type="webhook.delivered", source="/keyway/webhook-dispatcher", environment="dév")


def test_publish_frames_match_pamqp() -> None:
    for event in (_notice(), _notice(connection_id="ünïcode ✓")):
        body = event.to_json_bytes()
        expected = _pamqp(
            3,
            spec.Basic.Publish(exchange="ns.events", routing_key=event.type, mandatory=False, immediate=False),
            ContentHeader(properties=event_properties(event), body_size=len(body)),
            ContentBody(body),
        )
        got = publish_frames(
            3,
            exchange="ns.events",
            routing_key=event.type,
            body=body,
            content_type="application/cloudevents+json",
            headers=event.header_fields(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            message_id=event.id,
            timestamp=event.time,
            message_type=event.type,
        )
        assert got == expected
        # and what aio-pika would have sent for the same event
        assert build_message(event).properties == event_properties(event)


def test_an_empty_body_has_no_body_frame_as_pamqp_sends_it() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    properties = spec.Basic.Properties(
        content_type="application/octet-stream",
        headers={"marker": "7"},
        delivery_mode=1,
        priority=0,
        message_id="7",
        timestamp=when,
        message_type="marker",
    )
    expected = _pamqp(
        2,
        spec.Basic.Publish(exchange="", routing_key="q", mandatory=False, immediate=False),
        ContentHeader(properties=properties, body_size=0),
    )
    got = publish_frames(
        2,
        exchange="",
        routing_key="q",
        body=b"",
        content_type="application/octet-stream",
        headers={"marker": "7"},
        delivery_mode=1,
        message_id="7",
        timestamp=when,
        message_type="marker",
    )
    assert got == expected


def test_timestamp_is_whole_seconds_as_pamqp_writes_it() -> None:
    event = _notice().model_copy(update={"time": datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)})
    body = event.to_json_bytes()
    got = publish_frames(
        1,
        exchange="",
        routing_key="x",
        body=body,
        content_type="t",
        headers=event.header_fields(),
        delivery_mode=2,
        message_id=event.id,
        timestamp=event.time,
        message_type="x",
    )
    expected = _pamqp(
        1,
        spec.Basic.Publish(exchange="", routing_key="x"),
        ContentHeader(
            properties=spec.Basic.Properties(
                content_type="t",
                headers=event.header_fields(),
                delivery_mode=2,
                priority=0,
                message_id=event.id,
                timestamp=event.time,
                message_type="x",
            ),
            body_size=len(body),
        ),
        ContentBody(body),
    )
    assert got == expected


class _Channel:
    def __init__(self, number: int, queue: asyncio.Queue[ChannelFrame]) -> None:
        self.number = number
        self.write_queue = queue
        self.is_closed = False


async def test_batch_writes_one_frame_per_connection_per_turn() -> None:
    one: asyncio.Queue[ChannelFrame] = asyncio.Queue(maxsize=10)
    other: asyncio.Queue[ChannelFrame] = asyncio.Queue(maxsize=10)
    a, b, c = _Channel(1, one), _Channel(2, one), _Channel(1, other)
    batch = FrameBatch()
    batch.add(a, b"a1")  # type: ignore[arg-type]
    batch.add(b, b"b1")  # type: ignore[arg-type]
    batch.add(a, b"a2")  # type: ignore[arg-type]
    batch.add(c, b"c1")  # type: ignore[arg-type]
    assert one.empty()  # nothing until the turn ends
    assert other.empty()
    await asyncio.sleep(0)
    assert one.qsize() == 1
    assert other.qsize() == 1
    assert one.get_nowait().payload == b"a1a2b1"
    assert other.get_nowait().payload == b"c1"


async def test_batch_drops_frames_of_a_channel_closed_meanwhile_and_waits_for_room() -> None:
    queue: asyncio.Queue[ChannelFrame] = asyncio.Queue(maxsize=1)
    open_, closing = _Channel(1, queue), _Channel(2, queue)
    batch = FrameBatch()
    batch.add(closing, b"gone")  # type: ignore[arg-type]
    closing.is_closed = True
    batch.add(open_, b"kept")  # type: ignore[arg-type]
    batch.flush()
    assert queue.get_nowait().payload == b"kept"
    queue.put_nowait(ChannelFrame(payload=b"full", should_close=False))
    batch.add(open_, b"later")  # type: ignore[arg-type]
    batch.flush()  # no room: a task waits for it
    assert queue.get_nowait().payload == b"full"
    await asyncio.sleep(0)
    assert queue.get_nowait().payload == b"later"
