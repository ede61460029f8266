"""Replays asked for through the API (``webhook.replay_requested``): one delivery, or every delivery
that gave up within a time range (at most 10,000 per request, as Svix bounds its "recover").

A replay sends the body recorded with the delivery again, with the delivery's ``webhook-id`` (a
receiver that did get it the first time sees a duplicate it already knows), to the URL now
configured for its endpoint (primary or secondary): after a fix to a mistyped URL, the replay goes
where it should. A replay is a new run with the full retry schedule, its attempts recorded beside
the original's. The handler is idempotent: run again after a crash,
it queues the same runs, whose attempt claims collapse the duplicates.
"""

from __future__ import annotations

import asyncio
from typing import Any

from keyway_shared.bus import MessageContext
from keyway_shared.events import CloudEvent, WebhookReplayRequested
from keyway_shared.logging import get_logger
from keyway_shared.store import Environment, EnvironmentStore
from keyway_shared.store.webhook_deliveries import MAX_REPLAY_DELIVERIES, DeliveryLog

from .messages import WebhookDelivery
from .queue import DeliveryQueue

__all__ = ["Replayer"]

log = get_logger(__name__)
_CHUNK = 100  # confirms in flight at once while queueing a large replay


class Replayer:
    def __init__(
        self,
        *,
        environments: EnvironmentStore,
        log: DeliveryLog,
        queue: DeliveryQueue,
        limit: int = MAX_REPLAY_DELIVERIES,
    ) -> None:
        self._environments = environments
        self._log = log
        self._queue = queue
        self._limit = limit

    async def handle(self, event: CloudEvent[Any], ctx: MessageContext) -> None:
        request: WebhookReplayRequested = event.data
        env = await self._environments.get(event.environment)
        if env is None:
            return
        if request.delivery_id is not None:
            latest = await self._log.latest(event.environment, request.delivery_id)
            records = [latest] if latest is not None else []
        elif request.since is not None:
            records = await self._log.failed_since(
                event.environment, since=request.since, until=request.until, limit=self._limit
            )
        else:
            records = []
        deliveries = [d for d in (_replay_of(record, env, run=event.id) for record in records) if d is not None]
        for start in range(0, len(deliveries), _CHUNK):
            chunk = deliveries[start : start + _CHUNK]
            await asyncio.gather(*(self._queue.now(d, environment=event.environment) for d in chunk))
        log.info("replay queued", deliveries=len(deliveries), skipped=len(records) - len(deliveries))


def _replay_of(record: dict[str, Any], env: Environment, *, run: str) -> WebhookDelivery | None:
    slot = record.get("slot")
    body = record.get("body")
    if slot not in ("primary", "secondary", "override") or not isinstance(body, str):
        return None  # recorded before replays existed
    if slot == "override":  # the connection's own URL, as it was when the event was sent
        url = record.get("url")
    else:
        url = env.webhooks.primary_url if slot == "primary" else env.webhooks.secondary_url
    if not url:
        log.info("not replaying: the endpoint has no URL any more", slot=slot, delivery_id=record.get("delivery_id"))
        return None
    return WebhookDelivery(
        delivery_id=record["delivery_id"],
        webhook_id=record["webhook_id"],
        run=run,
        trigger="replay",
        slot=slot,
        event_id=record["event_id"],
        event_type=record["event_type"],
        operation=record.get("operation", "unknown"),
        url=url,
        body=body,
        connection_id=record.get("connection_id"),
        provider_config_key=record.get("provider_config_key"),
        provider=record.get("provider"),
    )
