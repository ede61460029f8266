"""The two delivery handlers: events in (``deliver``) and one delivery's retries (``send``).

``deliver`` takes an auth event, decides whether the environment wants its webhook (see
:mod:`.body`), serialises the body once, the way JavaScript would, and makes the first attempt to
each configured URL at once. A URL whose first attempt failed becomes its own message on the
``send`` queue, parked in a delay queue until its next attempt is due: from then on each URL
retries on its own, and a retry for one never resends to the other. Most webhooks succeed the
first time and never need a message of their own, which saves a publish and a consume each.

``send`` makes attempt *n* of one delivery (a retry, or a replay's first attempt) and tells the
runner what to do next: retry after the wait the policy chose, or dead-letter.

A database or broker hiccup before anything was sent is a ``Retry(same_attempt=True)``: the message
comes back as the same attempt, marked resumed, until the hiccup is over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.errors import PyMongoError

from keyway_shared.bus import DeadLetter, MessageContext, PublishError, Retry
from keyway_shared.events import CloudEvent
from keyway_shared.logging import get_logger

from .attempts import Attempter
from .body import AuthWebhook, Slot, auth_webhook, body_text, should_send, webhook_urls
from .caches import Snapshot, SnapshotCache
from .messages import WebhookDelivery, delivery_id, webhook_id
from .queue import DeliveryQueue

__all__ = ["Dispatcher", "Sender"]

log = get_logger(__name__)
_INFRA_ERRORS = (PyMongoError, PublishError)


class Dispatcher:
    """Handles the auth events: the first attempt of each delivery."""

    def __init__(
        self, *, environments: SnapshotCache, attempter: Attempter, queue: DeliveryQueue, hiccup_delay: float
    ) -> None:
        self._environments = environments
        self._attempter = attempter
        self._queue = queue
        self._hiccup_delay = hiccup_delay

    async def handle(self, event: CloudEvent[Any], ctx: MessageContext) -> None:
        webhook = auth_webhook(event)
        if webhook is None:
            return
        try:
            snapshot = await self._environments.get(event.environment)
        except PyMongoError as exc:
            raise Retry(
                f"database unavailable: {exc.__class__.__name__}", delay=self._hiccup_delay, same_attempt=True
            ) from exc
        if snapshot is None:
            log.warning("no such environment; webhook not sent", environment=event.environment)
            return
        settings = snapshot.environment.webhooks
        urls = webhook_urls(settings, event)
        if not should_send(settings, webhook.operation, has_url=bool(urls)):
            log.debug("webhook not wanted by the environment's settings", operation=webhook.operation)
            return
        body = body_text(webhook.body)
        deliveries = [_delivery(event, webhook, slot, url, body) for slot, url in urls]
        results: list[BaseException | None]
        if len(deliveries) == 1:  # the usual case: no task to spawn
            results = [None]
            try:
                await self._first(
                    deliveries[0], environment=event.environment, resumed=ctx.redelivered, snapshot=snapshot
                )
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(
                    self._first(d, environment=event.environment, resumed=ctx.redelivered, snapshot=snapshot)
                    for d in deliveries
                ),
                return_exceptions=True,
            )
        for result in results:
            if isinstance(result, _INFRA_ERRORS):
                raise Retry(
                    f"{result.__class__.__name__} while handing a delivery over",
                    delay=self._hiccup_delay,
                    same_attempt=True,
                )
            if isinstance(result, BaseException):
                raise result

    async def _first(self, delivery: WebhookDelivery, *, environment: str, resumed: bool, snapshot: Snapshot) -> None:
        outcome = await self._attempter.attempt(
            delivery, environment=environment, number=1, resumed=resumed, snapshot=snapshot
        )
        if outcome.kind == "retry":
            assert outcome.delay is not None
            await self._queue.later(delivery, environment=environment, delay=outcome.delay, attempt=2)
        elif outcome.kind == "failed":
            await self._queue.dead(delivery, environment=environment)


class Sender:
    """Handles ``send``: attempt ``ctx.attempt`` of one delivery."""

    def __init__(self, *, attempter: Attempter, hiccup_delay: float) -> None:
        self._attempter = attempter
        self._hiccup_delay = hiccup_delay

    async def handle(self, event: CloudEvent[Any], ctx: MessageContext) -> None:
        delivery: WebhookDelivery = event.data
        try:
            outcome = await self._attempter.attempt(
                delivery, environment=event.environment, number=ctx.attempt, resumed=ctx.redelivered
            )
        except PyMongoError as exc:
            raise Retry(
                f"database unavailable: {exc.__class__.__name__}", delay=self._hiccup_delay, same_attempt=True
            ) from exc
        if outcome.kind == "retry":
            raise Retry(outcome.reason, delay=outcome.delay)
        if outcome.kind == "failed":
            raise DeadLetter(outcome.reason)


def _delivery(event: CloudEvent[Any], webhook: AuthWebhook, slot: Slot, url: str, body: str) -> WebhookDelivery:
    delivery = delivery_id(event.id, slot)
    data = event.data
    return WebhookDelivery(
        delivery_id=delivery,
        webhook_id=webhook_id(delivery),
        slot=slot,
        event_id=event.id,
        event_type=event.type,
        operation=webhook.operation,
        url=url,
        body=body,
        connection_id=getattr(data, "connection_id", None),
        provider_config_key=getattr(data, "provider_config_key", None),
        provider=getattr(data, "provider", None),
    )
