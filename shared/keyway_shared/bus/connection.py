"""Opening the broker connection: robust (reconnects by itself), named after the service."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection

__all__ = ["connect"]


async def connect(url: str, *, name: str, connect_timeout: float = 10.0) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(
        url,
        timeout=connect_timeout,
        client_properties={"connection_name": name},
        reconnect_interval=1.0,
    )
