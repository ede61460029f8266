"""The broker socket's writer: frames written in one turn of the loop leave in one write, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from keyway_shared.bus.coalescing import CoalescingStreamWriter


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.writes.append(b"<eof>")


def make_writer() -> tuple[CoalescingStreamWriter, RecordingTransport]:
    loop = asyncio.get_running_loop()
    transport = RecordingTransport()
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    return CoalescingStreamWriter(transport, protocol, reader, loop), transport


async def test_writes_of_one_turn_leave_together_and_in_order() -> None:
    writer, transport = make_writer()
    writer.write(b"ack-1|")
    writer.writelines([b"publish-2|", b"ack-3"])
    await writer.drain()  # flow control only: it does not send what is held
    assert transport.writes == []
    assert writer.held_bytes == len(b"ack-1|publish-2|ack-3")
    await asyncio.sleep(0)
    assert transport.writes == [b"ack-1|publish-2|ack-3"]
    writer.write(b"next")
    await asyncio.sleep(0)
    assert transport.writes == [b"ack-1|publish-2|ack-3", b"next"]


async def test_a_large_write_leaves_at_once() -> None:
    writer, transport = make_writer()
    writer.write(b"small|")
    big = b"x" * (512 * 1024)
    writer.write(big)
    assert transport.writes == [b"small|" + big]
    await asyncio.sleep(0)
    assert len(transport.writes) == 1  # nothing left for the end of the turn


async def test_close_and_eof_send_what_is_held_first() -> None:
    writer, transport = make_writer()
    writer.write(b"close-ok")
    writer.write_eof()
    writer.close()
    assert transport.writes == [b"close-ok", b"<eof>"]
    assert transport.closed
    writer.write(b"late")
    await asyncio.sleep(0)
    assert transport.writes == [b"close-ok", b"<eof>"]  # a closed transport gets nothing more
