"""The ``deliver`` handler: an auth event in, one signed POST per configured URL out.

For each event that calls for a webhook (see :mod:`.body`) and whose environment wants it, the
body is serialised once, the way JavaScript would, and those exact bytes are signed and sent to
the primary then the secondary URL. Each attempt is recorded and announced as
``webhook.delivered`` or ``webhook.failed``.

For now each delivery gets one attempt and a failure is logged and announced as final; issue 6
moves retries onto the broker's delay queues. Nothing after the POST raises, because a retry of
this handler would send the webhook again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.errors import PyMongoError

from keyway_shared.bus import MessageContext, PublishError
from keyway_shared.events import CloudEvent, EventData, WebhookDelivered, WebhookFailed, make_event
from keyway_shared.jsjson import js_stringify
from keyway_shared.logging import get_logger
from keyway_shared.store import EnvironmentStore, WebhookKeyStore

from .body import auth_webhook, should_send
from .deliveries import DeliveryLog
from .sender import Attempt, WebhookSender, delivery_id, signed_headers

__all__ = ["SOURCE", "Dispatcher"]

SOURCE = "/keyway/webhook-dispatcher"
_RESULT_NAMESPACE = uuid.UUID("0e5d7a52-93c4-4f0a-8d0b-6b1f2a9c7e11")

log = get_logger(__name__)

Publish = Callable[[CloudEvent[Any]], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        *,
        environments: EnvironmentStore,
        keys: WebhookKeyStore,
        sender: WebhookSender,
        deliveries: DeliveryLog,
        publish: Publish,
    ) -> None:
        self._environments = environments
        self._keys = keys
        self._sender = sender
        self._deliveries = deliveries
        self._publish = publish

    async def handle(self, event: CloudEvent[Any], ctx: MessageContext) -> None:
        webhook = auth_webhook(event)
        if webhook is None:
            return
        # Reads before the POST may fail and be retried (retry_on=PyMongoError): nothing was sent yet.
        environment = await self._environments.get(event.environment)
        if environment is None:
            log.warning("no such environment; webhook not sent", environment=event.environment)
            return
        if not should_send(environment.webhooks, webhook.operation):
            log.debug("webhook not wanted by the environment's settings", operation=webhook.operation)
            return
        signing_keys = await self._keys.signing_keys(event.environment)
        body = js_stringify(webhook.body).encode()
        for url in environment.webhooks.urls():
            await self._deliver(
                event, url, body=body, secret_key=environment.secret_key, signing_keys=signing_keys, ctx=ctx
            )

    async def _deliver(
        self,
        event: CloudEvent[Any],
        url: str,
        *,
        body: bytes,
        secret_key: str,
        signing_keys: list[str],
        ctx: MessageContext,
    ) -> None:
        delivery = delivery_id(event.id, url)
        webhook_id = "msg_" + uuid.UUID(delivery).hex
        headers = signed_headers(
            secret_key=secret_key, signing_keys=signing_keys, msg_id=webhook_id, body=body, timestamp=int(time.time())
        )
        attempt = await self._sender.post(url, body=body, headers=headers)
        if attempt.ok:
            log.info("webhook delivered", url=url, status=attempt.status, duration_ms=attempt.duration_ms)
        else:
            assert attempt.error is not None
            log.warning(
                "webhook delivery failed",
                url=url,
                status=attempt.status,
                error_type=attempt.error.type,
                error=attempt.error.description,
            )
        try:
            await self._deliveries.record(
                attempt,
                delivery_id=delivery,
                webhook_id=webhook_id,
                event_id=event.id,
                event_type=event.type,
                environment=event.environment,
                attempt_number=ctx.attempt,
            )
        except PyMongoError as exc:
            log.error("could not record the delivery attempt", error=exc.__class__.__name__)
        await self._announce(event, attempt, delivery=delivery, attempt_number=ctx.attempt)

    async def _announce(self, event: CloudEvent[Any], attempt: Attempt, *, delivery: str, attempt_number: int) -> None:
        # Fields the activity log files the delivery under; the webhook models do not declare them
        # yet, and EventData keeps extra fields.
        about = {name: getattr(event.data, name, None) for name in ("connection_id", "provider_config_key", "provider")}
        common: dict[str, Any] = {
            "delivery_id": delivery,
            "event_id": event.id,
            "url": attempt.url,
            "attempt": attempt_number,
            "operation_id": delivery,  # every attempt of one delivery nests under one operation
            **{k: v for k, v in about.items() if v is not None},
        }
        data: EventData
        if attempt.ok:
            assert attempt.status is not None
            data = WebhookDelivered.model_validate(
                common | {"status": attempt.status, "duration_ms": attempt.duration_ms}
            )
            kind = "webhook.delivered"
        else:
            data = WebhookFailed.model_validate(
                common | {"status": attempt.status, "error": attempt.error, "final": True}
            )
            kind = "webhook.failed"
        # A fixed id: if this handler runs again after a crash, the announcement is a duplicate
        # consumers skip, not a second story.
        result_id = str(uuid.uuid5(_RESULT_NAMESPACE, f"{delivery}|{attempt_number}"))
        result = make_event(data, type=kind, source=SOURCE, environment=event.environment, id=result_id)
        try:
            await self._publish(result)
        except PublishError as exc:
            log.error("could not announce the delivery result", result_type=kind, error=str(exc))
