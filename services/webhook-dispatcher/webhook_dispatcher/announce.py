"""Telling the rest of Keyway what came of each attempt: ``webhook.delivered``, ``webhook.failed``,
``webhook.endpoint_disabled`` (the activity log files them under the delivery's operation).

Each announcement has a fixed id derived from the attempt, so an attempt whose handler runs again
after a crash announces a duplicate consumers skip, not a second story. A failed publish is logged
and dropped: re-sending the webhook to get another chance at announcing it would be worse.

Failures and disabled endpoints are published with a broker confirm. A success is published without
one: it is the commonest message the dispatcher sends, its record is in MongoDB already, and losing
the notice (only when the broker fails at that moment) costs a line in the activity log.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Protocol

from keyway_shared.bus import PublishError
from keyway_shared.events import (
    CloudEvent,
    ErrorInfo,
    EventData,
    WebhookDelivered,
    WebhookEndpointDisabled,
    WebhookFailed,
    make_event,
)
from keyway_shared.logging import get_logger
from keyway_shared.store.webhook_deliveries import uuid5_text
from keyway_shared.store.webhook_endpoints import EndpointState

from .messages import SOURCE, WebhookDelivery

__all__ = ["Announcer", "Publish"]

log = get_logger(__name__)
_RESULT_NAMESPACE = uuid.UUID("0e5d7a52-93c4-4f0a-8d0b-6b1f2a9c7e11")


class Publish(Protocol):
    def __call__(self, event: CloudEvent[Any], *, confirm: bool = True) -> Awaitable[None]: ...


class Announcer:
    def __init__(self, publish: Publish) -> None:
        self._publish = publish

    @staticmethod
    def _common(delivery: WebhookDelivery, attempt: int) -> dict[str, Any]:
        return {
            "delivery_id": delivery.delivery_id,
            "event_id": delivery.event_id,
            "url": delivery.url,
            "attempt": attempt,
            "operation_id": delivery.operation_id,
            "webhook_id": delivery.webhook_id,
            "trigger": delivery.trigger,
            "connection_id": delivery.connection_id,
            "provider_config_key": delivery.provider_config_key,
            "provider": delivery.provider,
        }

    async def delivered(
        self, delivery: WebhookDelivery, *, environment: str, attempt: int, status: int, duration_ms: float
    ) -> None:
        data = WebhookDelivered(**self._common(delivery, attempt), status=status, duration_ms=duration_ms)
        key = f"{delivery.delivery_id}|{delivery.run}|{attempt}"
        await self._send(data, "webhook.delivered", environment, key, confirm=False)

    async def failed(
        self,
        delivery: WebhookDelivery,
        *,
        environment: str,
        attempt: int,
        status: int | None,
        error: ErrorInfo,
        final: bool,
        next_attempt_at: datetime | None,
    ) -> None:
        data = WebhookFailed(
            **self._common(delivery, attempt),
            status=status,
            error=error,
            final=final,
            next_attempt_at=next_attempt_at,
        )
        await self._send(data, "webhook.failed", environment, f"{delivery.delivery_id}|{delivery.run}|{attempt}")

    async def endpoint_disabled(self, state: EndpointState, *, delivery: WebhookDelivery) -> None:
        assert state.disabled_reason is not None
        data = WebhookEndpointDisabled(
            url=state.url,
            reason=state.disabled_reason,
            failing_since=state.failing_since,
            delivery_id=delivery.delivery_id,
            operation_id=delivery.operation_id,
        )
        await self._send(data, "webhook.endpoint_disabled", state.environment, f"{state.url}|{state.disabled_at}")

    async def _send(self, data: EventData, kind: str, environment: str, key: str, *, confirm: bool = True) -> None:
        event_id = uuid5_text(_RESULT_NAMESPACE, f"{kind}|{key}")
        event = make_event(data, type=kind, source=SOURCE, environment=environment, id=event_id)
        try:
            await self._publish(event, confirm=confirm)
        except PublishError as exc:
            log.error("could not announce a webhook outcome", result_type=kind, error=str(exc))
