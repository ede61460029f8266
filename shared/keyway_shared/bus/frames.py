"""Acks and unconfirmed publishes as hand-encoded AMQP frames, handed to the connection's writer once
per turn of the event loop.

A busy consumer acknowledges a message and publishes a notice for nearly every message it takes.
Through aio-pika and aiormq each is a coroutine that takes the channel's lock, marshals its frames
with pamqp (a Python encoder that inspects the type of every field), puts them on the connection's
write queue and waits for the writer task to write them: several loop turns and a queue round trip
apiece. Here an ack is a ``struct.pack``, a publish three frames built from a cached prefix, and
whatever gathered during one turn of the loop goes onto the write queue as one frame batch.

Nothing is promised later than before, where it matters:

- an ack leaves after the work it acknowledges, as before (it is queued only once the handler is
  done); held until the turn ends, it is lost only with the process or the channel, and then the
  broker redelivers the message, which every consumer is built to take;
- a publish made here is an unconfirmed one, which aiormq too reports done before it is written.

Frames are written only on the channel they were made for: if it closed meanwhile (the broker
takes its unacknowledged messages back) they are dropped.
"""

from __future__ import annotations

import asyncio
import struct
from datetime import datetime
from typing import Any

import aiormq
from aiormq.abc import ChannelFrame

__all__ = ["FrameBatch", "ack_frame", "encode_table", "publish_frames"]

_FRAME_END = b"\xce"
_ACK = struct.Struct(">BHIHHQBB")  # method frame: type 1, channel, size 13, Basic.Ack (60, 80), tag, bits, end
_HEADER = struct.Struct(">BHI")  # frame type, channel, payload size
_LONG = struct.Struct(">I")
_BODY_SIZE = struct.Struct(">HHQH")  # class 60, weight 0, body size, property flags
_TIMESTAMP = struct.Struct(">Q")

# Basic property flags (AMQP 0-9-1 §4.2.6.1): the ones a Keyway event sets.
_CONTENT_TYPE, _HEADERS, _DELIVERY_MODE, _PRIORITY = 1 << 15, 1 << 13, 1 << 12, 1 << 11
_MESSAGE_ID, _TIMESTAMP_FLAG, _TYPE = 1 << 7, 1 << 6, 1 << 5
_FLAGS = _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE | _PRIORITY | _MESSAGE_ID | _TIMESTAMP_FLAG | _TYPE


def ack_frame(channel: int, delivery_tag: int) -> bytes:
    """``basic.ack`` of one delivery, as pamqp would marshal it."""
    return _ACK.pack(1, channel, 13, 60, 80, delivery_tag, 0, 0xCE)


def _shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError("a short string holds at most 255 bytes")
    return bytes((len(data),)) + data


def encode_table(table: dict[str, str]) -> bytes:
    """A field table of strings, keys sorted, values as long strings (``S``): pamqp's encoding."""
    parts = []
    for key in sorted(table):
        value = table[key].encode()
        parts.append(_shortstr(key) + b"S" + _LONG.pack(len(value)) + value)
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


def publish_frames(
    channel: int,
    *,
    exchange: str,
    routing_key: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    delivery_mode: int,
    message_id: str,
    timestamp: datetime,
    message_type: str,
) -> bytes:
    """``basic.publish`` (not mandatory, not immediate), its content header and its body, in one
    frame each, as pamqp marshals a publish with these properties (priority 0, as aio-pika sends).
    The body must fit one frame (see ``aiormq.Channel.max_content_size``)."""
    method = b"\x00\x3c\x00\x28\x00\x00" + _shortstr(exchange) + _shortstr(routing_key) + b"\x00"
    properties = b"".join(
        (
            _shortstr(content_type),
            encode_table(headers),
            bytes((delivery_mode, 0)),  # delivery mode, priority
            _shortstr(message_id),
            _TIMESTAMP.pack(int(timestamp.timestamp())),
            _shortstr(message_type),
        )
    )
    header = _BODY_SIZE.pack(60, 0, len(body), _FLAGS) + properties
    frames = [
        _HEADER.pack(1, channel, len(method)),
        method,
        _FRAME_END,
        _HEADER.pack(2, channel, len(header)),
        header,
        _FRAME_END,
    ]
    if body:  # an empty body has no body frame: the broker closes the connection on one (UNEXPECTED_FRAME)
        frames += (_HEADER.pack(3, channel, len(body)), body, _FRAME_END)
    return b"".join(frames)


class FrameBatch:
    """Frames for aiormq channels, written at the end of the current loop turn, one batch per connection."""

    def __init__(self) -> None:
        self._pending: dict[aiormq.Channel, list[bytes]] = {}
        self._handle: asyncio.Handle | None = None
        self._putting: set[asyncio.Task[Any]] = set()

    def add(self, channel: aiormq.Channel, frames: bytes) -> None:
        """Write ``frames`` (complete frames of ``channel``) at the end of this loop turn.

        Raises ``aiormq.exceptions.ChannelInvalidStateError`` when the channel is closed."""
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        held = self._pending.get(channel)
        if held is None:
            self._pending[channel] = [frames]
        else:
            held.append(frames)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Hand what is held to the connections' writers now."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        by_queue: dict[int, tuple[asyncio.Queue[ChannelFrame], list[bytes]]] = {}
        for channel, frames in pending.items():
            if channel.is_closed:
                continue  # the broker has its deliveries back; a notice is lost as with a dead socket
            queue = channel.write_queue
            entry = by_queue.get(id(queue))
            if entry is None:
                by_queue[id(queue)] = (queue, frames)
            else:
                entry[1].extend(frames)
        for queue, frames in by_queue.values():
            frame = ChannelFrame(payload=b"".join(frames), should_close=False)
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                # The writer is behind: wait for room. Batches are independent (acks of distinct
                # deliveries, whole publishes), so one that waits may be overtaken by a later one.
                task = asyncio.get_running_loop().create_task(queue.put(frame))
                self._putting.add(task)
                task.add_done_callback(self._putting.discard)
