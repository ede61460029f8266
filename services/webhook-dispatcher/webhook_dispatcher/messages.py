"""One delivery (an event's webhook to one endpoint, primary or secondary) as a message on the
dispatcher's own ``send`` queue.

A command, not an event: it goes straight to the queue, never through the events exchange, so no
subscriber sees it. It carries everything an attempt needs except secrets (the environment's secret
key and signing keys are read when signing, so a rotation applies to retries already waiting).
"""

from __future__ import annotations

import uuid
from typing import Literal

import aio_pika
from pydantic import Field

from keyway_shared.bus import build_message
from keyway_shared.events import CloudEvent, EventData
from keyway_shared.store.webhook_deliveries import delivery_id, webhook_id

__all__ = ["DELIVERY_TYPE", "SOURCE", "WebhookDelivery", "delivery_id", "delivery_message", "webhook_id"]

SOURCE = "/keyway/webhook-dispatcher"
DELIVERY_TYPE = "webhook.delivery"
_MESSAGE_NAMESPACE = uuid.UUID("8f4d2c61-3b5e-4a79-b0d2-6e1c9a7f5b38")


class WebhookDelivery(EventData):
    delivery_id: str
    webhook_id: str
    run: str = Field(default="0", description="'0' for the delivery an event started; a replay's request id")
    trigger: Literal["event", "replay"] = "event"
    # "override": the connection's own webhook URL (its webhook_url_override), which its attempts keep
    slot: Literal["primary", "secondary", "override"]
    event_id: str
    event_type: str
    operation: str
    url: str = Field(description="the slot's URL when the delivery was made; attempts go to the URL it has then")
    body: str = Field(description="the exact JSON text sent and signed")
    connection_id: str | None = None
    provider_config_key: str | None = None
    provider: str | None = None

    @property
    def operation_id(self) -> str:
        """The activity-log operation its attempts nest under: one per delivery, one per replay of it."""
        if self.run == "0":
            return self.delivery_id
        return str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{self.delivery_id}|{self.run}"))


def delivery_message(delivery: WebhookDelivery, *, environment: str) -> aio_pika.Message:
    event = CloudEvent[WebhookDelivery](
        id=str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{delivery.delivery_id}|{delivery.run}|message")),
        type=DELIVERY_TYPE,
        source=SOURCE,
        environment=environment,
        subject=delivery.delivery_id,  # not the URL: a URL may carry a token
        data=delivery,
    )
    return build_message(event)
