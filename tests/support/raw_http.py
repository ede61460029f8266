"""Reading one HTTP/1.1 request off a raw stream, for test servers that answer with bytes of their own."""

from __future__ import annotations

import asyncio

__all__ = ["read_request"]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The next request's head and its ``Content-Length`` bytes of body, as sent. Raises
    ``asyncio.IncompleteReadError`` when the peer closes before a whole request."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    return head + (await reader.readexactly(length) if length else b"")
