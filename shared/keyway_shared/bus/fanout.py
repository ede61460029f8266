"""Hearing a fanout broadcast in every replica: a server-named queue of this replica's own, bound to it.

The gateway's connect results and the environment-changed broadcast (``environment_changes.py``:
one listener per process, in the gateway and the webhook dispatcher) are heard this way. A failed
try closes its channel: the broker link tries again, and a half-declared channel left open would
leave a queue behind to fill up unread (and be restored at every reconnection).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

__all__ = ["listen_to_fanout"]

_CLOSE_PATIENCE = 5.0  # closing a channel on a link that is going away must not hold up the retry


async def listen_to_fanout(
    connection: AbstractRobustConnection,
    exchange_name: str,
    on_message: Callable[[AbstractIncomingMessage], Awaitable[None]],
) -> AbstractExchange:
    """Consume ``exchange_name`` (declared durable, fanout) without acks; the exchange, to publish on."""
    channel = await connection.channel()
    try:
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange)
        await queue.consume(on_message, no_ack=True)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), timeout=_CLOSE_PATIENCE)
        raise
    return exchange
