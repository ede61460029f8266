"""Running a service's aiohttp application inside the test's event loop, consuming from the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from keyway_shared.bus import ConsumerSpec
from keyway_shared.events import CloudEvent, EventData
from keyway_shared.service import BROKER

from .polling import eventually


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[web.Application]:
    """Open the app's cleanup contexts, wait until its consumers run, and close it all afterwards.

    The runner stops (in the app's cleanup) before the test's ``amqp`` fixture deletes the queues.
    """
    runner = web.AppRunner(app)
    await runner.setup()
    try:

        async def ready() -> bool:
            return app[BROKER].is_ready

        await eventually(ready, what="the service to connect and start consuming")
        yield app
    finally:
        await runner.cleanup()


def event(type: str, data: EventData, *, environment: str = "dev", **fields: Any) -> CloudEvent[EventData]:
    """An event with any envelope field set (``id``, ``time``), as a producer would publish it."""
    return CloudEvent[EventData](type=type, source="/keyway/tests", environment=environment, data=data, **fields)


async def drained(
    connection: AbstractRobustConnection, spec: ConsumerSpec, inflight: Callable[[], int], *, calm_polls: int = 5
) -> None:
    """Wait until the consumer's work and delay queues are empty and nothing is in flight, a few polls in a row.

    For negative assertions ("it was handled and did nothing"): a marker event proves little when
    handlers run concurrently.
    """
    names = [spec.queue, *(spec.retry_queue(d) for d in spec.retry.delays)]
    calm = 0

    async def probe() -> bool:
        nonlocal calm
        channel = await connection.channel()
        try:
            depth = 0
            for name in names:
                depth += (await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0
        finally:
            await channel.close()
        calm = calm + 1 if depth == 0 and inflight() == 0 else 0
        return calm >= calm_polls

    await eventually(probe, interval=0.2, what=f"{spec.queue} to drain")
