"""Reading a provider's answer with a size cap, so one huge answer cannot grow the process.

A token answer is a few hundred bytes; read whole, a 64 MiB one cost about 126 MiB of memory (the
bytes, then their decoded text). The webhook sender caps what it reads the same way.
"""

from __future__ import annotations

import aiohttp

__all__ = ["MAX_TOKEN_RESPONSE_BYTES", "ResponseTooLargeError", "read_bounded"]

MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024  # token answers are a few KiB at most, ID tokens included


class ResponseTooLargeError(Exception):
    """The answer is longer than the cap; nothing past the cap was kept."""


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body if it fits in ``limit`` bytes; else ResponseTooLargeError, as soon as it is known
    (a declared Content-Length is believed before a byte is read; compressed bodies count decoded)."""
    if response.content_length is not None and response.content_length > limit:
        raise ResponseTooLargeError(f"declared {response.content_length} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError(f"more than {limit} bytes")
    return b"".join(chunks)
