"""Running a service's aiohttp application inside the test's event loop, consuming from the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
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
