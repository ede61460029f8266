"""An unconfirmed notice carries the same AMQP properties as any other published event."""

from __future__ import annotations

from keyway_shared.bus.publisher import build_message, event_properties
from keyway_shared.events import WebhookDelivered, make_event


def test_notice_properties_are_build_messages_byte_for_byte() -> None:
    data = WebhookDelivered(
        delivery_id="d", event_id="e", url="https://x.test/h", attempt=1, status=200, duration_ms=2.5
    )
    event = make_event(data, type="webhook.delivered", source="/keyway/webhook-dispatcher", environment="dev")
    expected = build_message(event).properties
    got = event_properties(event)
    assert got.marshal() == expected.marshal()
    assert got.headers == {
        "ce_id": event.id,
        "ce_type": "webhook.delivered",
        "ce_source": event.source,
        "environment": "dev",
    }
    assert got.message_id == event.id
    assert got.delivery_mode == 2
