"""The gateway's outbox relay: the shared :class:`~keyway_shared.outbox_relay.OutboxRelay`, one per
replica, started and stopped with the app.

The HTTP answer never waits for the broker: a request hands its freshly committed rows to
``publish_soon`` and returns; rows a broker outage left behind go out with any replica's sweep.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from keyway_shared.outbox_relay import OutboxRelay
from keyway_shared.service import BROKER

from ..resources import RELAY, STORES
from ..settings import GatewaySettings

# RELAY is kept in ``resources`` with the other keys (refresh-on-read needs it); re-exported for callers.
__all__ = ["RELAY", "OutboxRelay", "relay_context"]


def relay_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        relay = OutboxRelay(
            app[STORES].outbox,
            app[BROKER],
            sweep_every=settings.outbox_sweep_seconds,
            stale_after=settings.outbox_stale_seconds,
            owner=f"{socket.gethostname()}:{os.getpid()}",
        )
        app[RELAY] = relay
        relay.start()
        yield
        await relay.stop(grace=settings.shutdown_grace_seconds)

    return ctx
