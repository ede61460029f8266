"""Opening the broker connection: robust (reconnects by itself), named after the service."""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.connection import make_url

from .coalescing import CoalescingTransportFactory

__all__ = ["connect"]


async def connect(url: str, *, name: str, connect_timeout: float = 10.0) -> AbstractRobustConnection:
    """A connected robust connection, or the exception of this one try.

    Whatever the try raised (aio-pika raises ``StopAsyncIteration`` under uvloop when a broker
    closes the socket before its first frame), the connection is closed before the exception goes
    up: a failed robust connection left open keeps a reconnection task of its own running, which
    would connect behind the caller's back and never be used or closed.

    The frames written in one turn of the loop share one send (see :mod:`.coalescing`).
    """
    connection = aio_pika.RobustConnection(
        make_url(url), client_properties={"connection_name": name}, reconnect_interval=1.0
    )
    # aio-pika passes its kwargs through to aiormq's connection on every (re)connection, but its
    # constructor keeps only the ones it knows: the factory goes in afterwards.
    connection.kwargs["transport_factory"] = CoalescingTransportFactory()
    try:
        await connection.connect(timeout=connect_timeout)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(connection.close())
        raise
    return connection
