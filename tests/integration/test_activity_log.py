"""The activity-log service against the real RabbitMQ and MongoDB-wire server.

Every event type becomes a message under the right operation with the right state; a redelivered
event is stored once; events of one operation arriving out of order end in the same state.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest

from activity_log.app import create_app
from activity_log.entries import entry_for
from activity_log.read import get_operation, list_operations
from activity_log.settings import ActivityLogSettings
from activity_log.writer import ActivityWriter
from keyway_shared.bus import EventPublisher, declare_topology
from keyway_shared.events import (
    ActivityMessage,
    AuthFailed,
    CloudEvent,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionUpdated,
    ErrorInfo,
    EventData,
    HttpExcerpt,
    TokenRefreshed,
    TokenRefreshFailed,
    WebhookDelivered,
    WebhookFailed,
)

from ..support.inproc import event, running
from ..support.polling import eventually

# Recent (older entries would expire under the TTL index mid-test), whole seconds (MongoDB keeps ms).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def conn(**fields: Any) -> dict[str, Any]:
    base = {"connection_id": "c-1", "provider_config_key": "posthog-x", "provider": "posthog", "auth_mode": "API_KEY"}
    return base | fields


@pytest.fixture
def settings(service_settings: dict[str, Any], encryption_key: str) -> ActivityLogSettings:
    return ActivityLogSettings(**service_settings, encryption_key=encryption_key, batch_delay_ms=20)


@pytest.fixture
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> Any:
    # The queues exist before anything is published, as the gateway declares them in production:
    # the service's broker link reports ready before its consumer has declared its own queue.
    channel = await amqp.channel()
    await declare_topology(channel, namespace=namespace, queue_type="classic")
    await channel.close()
    pub = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield pub
    await pub.close()


async def wait_messages(db: Any, count: int) -> None:
    async def probe() -> int | None:
        n = await db["activity_messages"].count_documents({})
        return n if n >= count else None

    await eventually(probe, what=f"{count} activity messages")


@pytest.mark.broker
@pytest.mark.mongo
async def test_every_event_type_is_recorded_under_its_operation(
    settings: ActivityLogSettings, db: Any, publisher: EventPublisher
) -> None:
    op_connect, op_fail, op_hook = "op-connect", "op-fail", str(uuid.uuid4())
    events: list[CloudEvent[EventData]] = [
        event(
            "activity.message",
            ActivityMessage(
                operation_id=op_connect,
                operation_type="auth:create_connection",
                message="Received API key from the client",
                state="running",
                provider_config_key="posthog-x",
                connection_id="c-1",
                request=HttpExcerpt(method="POST", url="http://x/api-auth/api-key/posthog-x?code=abc123", status=200),
                meta={"client": "frontend-sdk"},
            ),
            time=T0,
        ),
        event(
            "connection.created", ConnectionCreated(**conn(), operation_id=op_connect), time=T0 + timedelta(minutes=1)
        ),
        event("connection.updated", ConnectionUpdated(**conn())),
        event("connection.deleted", ConnectionDeleted(**conn())),
        event(
            "auth.failed",
            AuthFailed(operation_id=op_fail, error=ErrorInfo(type="invalid_credentials", description="bad key")),
        ),
        event("token.refreshed", TokenRefreshed(**conn(), recovered=True)),
        event(
            "token.refresh_failed",
            TokenRefreshFailed(**conn(), error=ErrorInfo(type="refresh_token_external_error", description="revoked")),
        ),
        event(
            "webhook.failed",
            WebhookFailed(
                delivery_id=op_hook,
                event_id="e-1",
                url="http://127.0.0.1:1/hook",
                status=500,
                attempt=1,
                final=False,
                error=ErrorInfo(type="http_500", description="HTTP 500"),
                operation_id=op_hook,
            ),
            time=T0,
        ),
        event(
            "webhook.delivered",
            WebhookDelivered(
                delivery_id=op_hook,
                event_id="e-1",
                url="http://127.0.0.1:1/hook",
                status=200,
                attempt=2,
                duration_ms=12.5,
                operation_id=op_hook,
            ),
            time=T0 + timedelta(seconds=5),
        ),
    ]
    async with running(create_app(settings)):
        await publisher.publish_many(events)
        await wait_messages(db, len(events))

    by_type = {e.type: e for e in events}
    connect = await get_operation(db, op_connect)
    assert connect is not None
    assert connect["type"] == "auth:create_connection"
    assert connect["state"] == "success"
    assert (connect["environment"], connect["provider_config_key"], connect["connection_id"]) == (
        "dev",
        "posthog-x",
        "c-1",
    )
    assert connect["provider"] == "posthog"
    assert connect["created_at"] == connect["started_at"] == T0
    assert connect["ended_at"] == T0 + timedelta(minutes=1)
    assert connect["expires_at"] == T0 + timedelta(minutes=1) + timedelta(days=15)
    assert [m["message"] for m in connect["messages"]] == ["Received API key from the client", "Connection created"]
    step = connect["messages"][0]
    assert step["meta"] == {"client": "frontend-sdk"}
    assert step["request"]["url"] == "http://x/api-auth/api-key/posthog-x?code=[REDACTED]"  # redacted on the way in

    async def op_of(event_type: str) -> dict[str, Any]:
        doc = await get_operation(db, by_type[event_type].id)
        assert doc is not None, event_type
        return doc

    updated = await op_of("connection.updated")
    assert (updated["type"], updated["state"]) == ("auth:create_connection", "success")
    assert updated["messages"][0]["message"] == "Connection re-authorized (override)"
    deleted = await op_of("connection.deleted")
    assert (deleted["type"], deleted["state"]) == ("admin:delete_connection", "success")
    refreshed = await op_of("token.refreshed")
    assert (refreshed["type"], refreshed["state"]) == ("auth:refresh_token", "success")
    refresh_failed = await op_of("token.refresh_failed")
    assert (refresh_failed["type"], refresh_failed["state"]) == ("auth:refresh_token", "failed")
    assert refresh_failed["error"] == {"type": "refresh_token_external_error", "description": "revoked"}
    assert refresh_failed["messages"][0]["level"] == "error"

    failed = await get_operation(db, op_fail)
    assert failed is not None
    assert (failed["type"], failed["state"]) == ("auth:create_connection", "failed")
    assert failed["error"] == {"type": "invalid_credentials", "description": "bad key"}
    assert "provider_config_key" not in failed  # the failed attempt named no integration

    hook = await get_operation(db, op_hook)
    assert hook is not None
    assert (hook["type"], hook["state"]) == ("webhook:outgoing", "success")
    assert "error" not in hook  # the retry's success superseded the first attempt's failure
    assert [m["level"] for m in hook["messages"]] == ["warn", "info"]
    assert hook["messages"][1]["request"] == {
        "method": "POST",
        "url": "http://127.0.0.1:1/hook",
        "status": 200,
        "duration_ms": 12.5,
    }

    listed = await list_operations(db, "dev", limit=50)
    assert len(listed) == 7  # nine events; two operations (connect, webhook) hold two each
    assert all(a["created_at"] >= b["created_at"] for a, b in itertools.pairwise(listed))
    assert await list_operations(db, "prod") == []


@pytest.mark.broker
@pytest.mark.mongo
async def test_a_redelivered_event_is_stored_once(
    settings: ActivityLogSettings, db: Any, publisher: EventPublisher
) -> None:
    created = event("connection.created", ConnectionCreated(**conn()))
    marker = event("connection.deleted", ConnectionDeleted(**conn()))
    async with running(create_app(settings)):
        await publisher.publish(created)
        await publisher.publish(created)
        await publisher.publish(created)
        await publisher.publish(marker)  # published last: once it is stored, the duplicates were handled
        await wait_messages(db, 2)
        await eventually(
            lambda: db["activity_messages"].find_one({"_id": marker.id}), what="the marker event to be stored"
        )
    assert await db["activity_messages"].count_documents({"_id": created.id}) == 1
    assert await db["activity_operations"].count_documents({}) == 2


@pytest.mark.broker
@pytest.mark.mongo
async def test_events_out_of_order_end_in_the_latest_state(
    settings: ActivityLogSettings, db: Any, publisher: EventPublisher
) -> None:
    op = "op-late"

    def step(state: str | None, minutes: int) -> CloudEvent[EventData]:
        return event(
            "activity.message",
            ActivityMessage(operation_id=op, operation_type="auth:create_connection", message=str(state), state=state),
            time=T0 + timedelta(minutes=minutes),
        )

    done = event("connection.created", ConnectionCreated(**conn(), operation_id=op), time=T0 + timedelta(minutes=3))
    async with running(create_app(settings)):
        # Published newest first: the success arrives before the steps that led to it.
        for item in (done, step("running", 2), step(None, 1), step("waiting", 0)):
            await publisher.publish(item)
        await wait_messages(db, 4)
    doc = await get_operation(db, op)
    assert doc is not None
    assert doc["state"] == "success"
    assert doc["created_at"] == T0
    assert doc["updated_at"] == doc["ended_at"] == T0 + timedelta(minutes=3)
    assert [m["message"] for m in doc["messages"]] == ["waiting", "None", "running", "Connection created"]


@pytest.mark.mongo
async def test_every_arrival_order_and_batching_converges(db: Any) -> None:
    """The writer alone: all 24 orders of four events, each split into batches, give one result."""
    retention = timedelta(days=15)
    error = ErrorInfo(type="http_500", description="HTTP 500")

    def hook(minutes: int, **fields: Any) -> CloudEvent[EventData]:
        base = {"delivery_id": "d", "event_id": "e", "url": "http://h/", "operation_id": "OP"}
        data: EventData = (
            WebhookDelivered(**base, status=200, duration_ms=1.0, **fields)
            if "error" not in fields
            else WebhookFailed(**base, **fields)
        )
        kind = "webhook.delivered" if isinstance(data, WebhookDelivered) else "webhook.failed"
        return event(kind, data, time=T0 + timedelta(minutes=minutes))

    events = [
        hook(0, attempt=1, status=500, error=error, final=False),
        hook(1, attempt=2, status=500, error=error, final=False),
        hook(2, attempt=3),
        event(
            "activity.message",
            ActivityMessage(operation_id="OP", operation_type="webhook:outgoing", message="note"),
            time=T0 + timedelta(minutes=3),
        ),
    ]
    writer = ActivityWriter(db)
    seen: set[tuple[Any, ...]] = set()
    for order in itertools.permutations(events):
        await db["activity_operations"].delete_many({})
        await db["activity_messages"].delete_many({})
        entries = [entry_for(e, retention=retention) for e in order]
        await writer.write(entries[:2])
        await writer.write(entries[2:])
        await writer.write(entries)  # a whole redelivery changes nothing
        doc = await db["activity_operations"].find_one({"_id": "OP"})
        assert doc is not None
        doc.pop("_id")
        doc["keys"] = sorted(doc["keys"])  # a set: the order it was added in does not matter
        seen.add(tuple(sorted((k, str(v)) for k, v in doc.items())))
        assert await db["activity_messages"].count_documents({"operation_id": "OP"}) == 4
    assert len(seen) == 1
    final = dict(next(iter(seen)))
    assert final["state"] == "success"
    assert final["created_at"] == str(T0)
    assert final["ended_at"] == str(T0 + timedelta(minutes=2))
    assert final["updated_at"] == str(T0 + timedelta(minutes=3))
    assert "error" not in final


@pytest.mark.broker
@pytest.mark.mongo
async def test_readiness_reports_broker_and_database(
    settings: ActivityLogSettings, db: Any, amqp: aio_pika.abc.AbstractRobustConnection
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:

        async def ready() -> bool:
            response = await client.get("/readyz")
            return response.status == 200

        await eventually(ready, what="/readyz to answer 200")
        body = await (await client.get("/readyz")).json()
        assert body["checks"] == {"broker": True, "mongo": True}
        assert (await client.get("/healthz")).status == 200
