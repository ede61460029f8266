"""The token refresher's scheduling against the real RabbitMQ and MongoDB-wire server.

A connection written as the gateway writes it (connection and event in one transaction), its event
published on the bus: ``refresh_due_at`` lands margin-before-expiry, halfway for short-lived
credentials, disappears when the credentials stop expiring, and follows the stored credentials
rather than a stale event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import pytest

from keyway_shared.bus import EventPublisher
from keyway_shared.cipher import CredentialCipher
from keyway_shared.credentials.shapes import OAuth2Credentials
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionDeleted, ConnectionUpdated, EventData, utcnow
from keyway_shared.store import Connection, ConnectionStore
from token_refresher.app import CONSUMERS, create_app, schedule_spec
from token_refresher.settings import RefresherSettings

from ..support.inproc import drained, event, running
from ..support.polling import eventually

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

KEY = {"environment": "dev", "provider_config_key": "github-x", "connection_id": "c-1"}
MARGIN = timedelta(minutes=15)


@pytest.fixture
def settings(service_settings: dict[str, Any], encryption_key: str) -> RefresherSettings:
    return RefresherSettings(
        **service_settings,
        encryption_key=encryption_key,
        refresh_loop=False,  # the scheduler alone: nothing may refresh these connections meanwhile
    )


@pytest.fixture
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield pub
    await pub.close()


@pytest.fixture
def connections(mongo_client: Any, db: Any, encryption_key: str) -> ConnectionStore:
    return ConnectionStore(mongo_client, db, CredentialCipher(current_key=encryption_key))


async def save(connections: ConnectionStore, expires_at: datetime | None) -> CloudEvent[EventData]:
    """Write the connection as the gateway does; returns the event that went to the outbox with it."""
    made: list[CloudEvent[EventData]] = []

    def make(created: bool) -> CloudEvent[EventData]:
        fields = {
            "connection_id": KEY["connection_id"],
            "provider_config_key": KEY["provider_config_key"],
            "provider": "github",
            "auth_mode": "OAUTH2",
            "credentials_expire_at": expires_at,
        }
        data: EventData = ConnectionCreated(**fields) if created else ConnectionUpdated(**fields)
        made.append(event("connection.created" if created else "connection.updated", data))
        return made[-1]

    connection = Connection(
        environment=KEY["environment"],
        provider_config_key=KEY["provider_config_key"],
        connection_id=KEY["connection_id"],
        provider="github",
        auth_mode="OAUTH2",
        credentials=OAuth2Credentials(access_token="at-secret"),
        credentials_expires_at=expires_at,
    )
    await connections.save_with_event(connection, make)
    return made[-1]


async def stored(db: Any) -> dict[str, Any]:
    doc = await db["connections"].find_one(KEY)
    assert doc is not None
    return doc


async def due_becomes(db: Any, expected: datetime | None) -> None:
    async def probe() -> bool:
        return (await stored(db)).get("refresh_due_at") == expected

    await eventually(probe, what=f"refresh_due_at to become {expected}")


def ms(value: datetime) -> datetime:
    """MongoDB keeps milliseconds."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


async def test_refresh_due_at_follows_the_stored_expiry(
    settings: RefresherSettings, db: Any, connections: ConnectionStore, publisher: EventPublisher
) -> None:
    async with running(create_app(settings)):
        # Two hours to live: refresh 15 minutes before expiry.
        expires = ms(utcnow() + timedelta(hours=2))
        await publisher.publish(await save(connections, expires))
        await due_becomes(db, expires - MARGIN)

        # Ten minutes to live (under twice the margin): refresh halfway, counted from the write. The
        # halfway point of an odd number of milliseconds ends in half a one, which no BSON date keeps.
        expires = ms(utcnow() + timedelta(minutes=10))
        await publisher.publish(await save(connections, expires))
        doc = await stored(db)
        await due_becomes(db, ms(doc["updated_at"] + (expires - doc["updated_at"]) / 2))
        assert timedelta(minutes=4) < (await stored(db))["refresh_due_at"] - doc["updated_at"] <= timedelta(minutes=5)

        # Credentials that never expire need no refresh.
        await publisher.publish(await save(connections, None))
        await due_becomes(db, None)
        assert (await stored(db)).get("refresh_due_at") is None

        # Already expired: due at once (when it was written), not in the past.
        expires = ms(utcnow() - timedelta(minutes=1))
        await publisher.publish(await save(connections, expires))
        await due_becomes(db, (await stored(db))["updated_at"])


async def test_a_stale_event_cannot_leave_a_stale_schedule(
    settings: RefresherSettings,
    db: Any,
    connections: ConnectionStore,
    publisher: EventPublisher,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    old_event = await save(connections, ms(utcnow() + timedelta(hours=1)))
    new_expiry = ms(utcnow() + timedelta(hours=3))
    new_event = await save(connections, new_expiry)
    app = create_app(settings)
    async with running(app):
        # The newer event first, then the older one, then a deletion event for another connection.
        await publisher.publish(new_event)
        await due_becomes(db, new_expiry - MARGIN)
        await publisher.publish(old_event)
        gone = event(
            "connection.deleted",
            ConnectionDeleted(
                connection_id="nope", provider_config_key="github-x", provider="github", auth_mode="OAUTH2"
            ),
        )
        await publisher.publish(gone)
        unknown = event(
            "connection.updated",
            ConnectionUpdated(
                connection_id="never-written",
                provider_config_key="github-x",
                provider="github",
                auth_mode="OAUTH2",
                credentials_expire_at=utcnow(),
            ),
        )
        await publisher.publish(unknown)
        # The old event is handled (the queue drains) without moving the schedule back.
        await drained(amqp, schedule_spec(settings), lambda: app[CONSUMERS].runner.inflight)
    assert (await stored(db))["refresh_due_at"] == new_expiry - MARGIN
    assert await db["connections"].count_documents({}) == 1  # nothing was created for unknown connections


async def test_redelivered_events_are_harmless(
    settings: RefresherSettings, db: Any, connections: ConnectionStore, publisher: EventPublisher
) -> None:
    expires = ms(utcnow() + timedelta(hours=2))
    created = await save(connections, expires)
    async with running(create_app(settings)):
        for _ in range(3):
            await publisher.publish(created)
        await due_becomes(db, expires - MARGIN)
