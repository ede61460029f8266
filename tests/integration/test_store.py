"""The MongoDB store against the real MongoDB-wire server: connections with their outbox, environments,
the outbox relay's leases and the consumers' idempotency records."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from keyway_shared.bus import Claim
from keyway_shared.cipher import CredentialCipher, DecryptionError, generate_key
from keyway_shared.credentials.shapes import OAuth2Credentials
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionUpdated, EventData, encode_event, make_event
from keyway_shared.store import (
    Connection,
    ConnectionStore,
    Database,
    EnvironmentStore,
    MongoIdempotencyGuard,
    OutboxRow,
    OutboxStore,
    WebhookSettings,
    hash_secret_key,
)

from ..support.polling import eventually

pytestmark = pytest.mark.mongo

ACCESS_TOKEN = "gho_storeTEST0123456789abcdef"
REFRESH_TOKEN = "ghr_storeREFRESH0123456789"


@pytest.fixture
def cipher(encryption_key: str) -> CredentialCipher:
    return CredentialCipher(current_key=encryption_key)


@pytest.fixture
def connections(
    mongo_client: AsyncMongoClient[dict[str, Any]], db: Database, cipher: CredentialCipher
) -> ConnectionStore:
    return ConnectionStore(mongo_client, db, cipher)


def _connection(connection_id: str = "user-1", token: str = ACCESS_TOKEN) -> Connection:
    return Connection(
        environment="dev",
        provider_config_key="github-dev",
        connection_id=connection_id,
        provider="github",
        auth_mode="OAUTH2",
        credentials=OAuth2Credentials(access_token=token, refresh_token=REFRESH_TOKEN),
        connection_config={"subdomain": "acme"},
    )


def _event_for(connection: Connection, created: bool) -> CloudEvent[EventData]:
    fields: dict[str, Any] = {
        "connection_id": connection.connection_id,
        "provider_config_key": connection.provider_config_key,
        "provider": connection.provider,
        "auth_mode": "OAUTH2",
    }
    if created:
        return make_event(ConnectionCreated(**fields), type="connection.created", source="/t", environment="dev")
    return make_event(ConnectionUpdated(**fields), type="connection.updated", source="/t", environment="dev")


async def test_save_writes_the_connection_encrypted_and_its_event(
    connections: ConnectionStore, db: Database, cipher: CredentialCipher
) -> None:
    flags: list[bool] = []
    events: list[CloudEvent[EventData]] = []

    def make(created: bool) -> CloudEvent[EventData]:
        flags.append(created)
        events.append(_event_for(_connection(), created))
        return events[-1]

    saved, created, row = await connections.save_with_event(_connection(), make)
    assert created is True
    assert flags == [True]
    assert isinstance(saved.id, int)
    assert saved.created_at is not None

    raw = await db["connections"].find_one({"connection_id": "user-1"})
    assert raw is not None
    assert ACCESS_TOKEN not in str(raw)
    assert REFRESH_TOKEN not in str(raw)
    assert "credentials" not in raw
    assert raw["credentials_enc"].startswith(f"kw1:{cipher.current_key_id}:")
    assert raw["credentials_key_id"] == cipher.current_key_id
    assert raw["id"] == saved.id

    outbox = await db["outbox"].find({}).to_list()
    assert [doc["_id"] for doc in outbox] == [events[0].id]
    assert outbox[0]["routing_key"] == "connection.created"
    assert bytes(outbox[0]["body"]) == encode_event(events[0]) == row.body
    assert row.event_id == events[0].id
    assert ACCESS_TOKEN.encode() not in bytes(outbox[0]["body"])

    loaded = await connections.get("dev", "github-dev", "user-1")
    assert loaded is not None
    assert loaded.credentials.dump() == _connection().credentials.dump()
    assert loaded.connection_config == {"subdomain": "acme"}
    assert loaded.id == saved.id
    assert await connections.get("prod", "github-dev", "user-1") is None


async def test_second_save_is_an_update(connections: ConnectionStore, db: Database) -> None:
    first, created_first, _ = await connections.save_with_event(_connection(), lambda c: _event_for(_connection(), c))
    other, _, _ = await connections.save_with_event(
        _connection("user-2"), lambda c: _event_for(_connection("user-2"), c)
    )
    second, created_second, row = await connections.save_with_event(
        _connection(token="gho_rotated0123456789"), lambda c: _event_for(_connection(), c)
    )
    assert created_first is True
    assert created_second is False
    assert second.id == first.id
    assert other.id != first.id
    assert second.created_at == first.created_at
    assert await db["connections"].count_documents({}) == 2
    loaded = await connections.get("dev", "github-dev", "user-1")
    assert loaded is not None
    assert loaded.credentials.dump()["access_token"] == "gho_rotated0123456789"
    assert loaded.updated_at is not None
    assert loaded.created_at is not None
    assert loaded.updated_at > loaded.created_at
    outbox_types = [doc["routing_key"] async for doc in db["outbox"].find({}).sort("created_at", 1)]
    assert outbox_types == ["connection.created", "connection.created", "connection.updated"]
    assert row.routing_key == "connection.updated"


async def test_a_failed_event_rolls_the_connection_back(connections: ConnectionStore, db: Database) -> None:
    def broken(created: bool) -> CloudEvent[EventData]:
        raise ValueError("could not build the event")

    with pytest.raises(ValueError, match="could not build"):
        await connections.save_with_event(_connection("user-rollback"), broken)
    # The connection was written inside the transaction that failed: it must not be there.
    assert await db["connections"].find_one({"connection_id": "user-rollback"}) is None
    assert await db["outbox"].count_documents({}) == 0


async def test_ciphertext_is_bound_to_its_connection(connections: ConnectionStore, db: Database) -> None:
    await connections.save_with_event(_connection("victim"), lambda c: _event_for(_connection("victim"), c))
    await connections.save_with_event(_connection("thief"), lambda c: _event_for(_connection("thief"), c))
    victim = await db["connections"].find_one({"connection_id": "victim"})
    assert victim is not None
    # Someone with write access copies the victim's credentials onto their own connection.
    await db["connections"].update_one(
        {"connection_id": "thief"}, {"$set": {"credentials_enc": victim["credentials_enc"]}}
    )
    with pytest.raises(DecryptionError):
        await connections.get("dev", "github-dev", "thief")


async def test_rotated_key_still_reads_old_connections(
    mongo_client: AsyncMongoClient[dict[str, Any]], db: Database, encryption_key: str
) -> None:
    old = ConnectionStore(mongo_client, db, CredentialCipher(current_key=encryption_key))
    await old.save_with_event(_connection(), lambda c: _event_for(_connection(), c))
    rotated_cipher = CredentialCipher(current_key=generate_key(), old_keys=[encryption_key])
    rotated = ConnectionStore(mongo_client, db, rotated_cipher)
    loaded = await rotated.get("dev", "github-dev", "user-1")
    assert loaded is not None
    assert loaded.credentials.dump()["access_token"] == ACCESS_TOKEN
    await rotated.save_with_event(loaded, lambda c: _event_for(loaded, c))
    raw = await db["connections"].find_one({"connection_id": "user-1"})
    assert raw is not None
    assert raw["credentials_key_id"] == rotated_cipher.current_key_id
    assert raw["credentials_enc"].split(":")[1] == rotated_cipher.current_key_id


def _created(connection_id: str) -> CloudEvent[EventData]:
    return _event_for(_connection(connection_id), True)


async def test_outbox_claim_stale_leases_rows(db: Database) -> None:
    outbox = OutboxStore(db)
    events = [_created(f"user-{i}") for i in range(3)]
    for event in events:
        await outbox.add(event)
    assert await outbox.count() == 3

    # Rows younger than the threshold belong to the fast path: nobody claims them yet.
    young = await outbox.claim_stale(older_than=timedelta(hours=1), lease=timedelta(minutes=1), limit=10, owner="a")
    assert young == []

    first = await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(minutes=1), limit=2, owner="a")
    assert [row.event_id for row in first] == [events[0].id, events[1].id]  # oldest first
    assert first[0].body == encode_event(events[0])
    assert first[0].routing_key == "connection.created"

    second = await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(minutes=1), limit=10, owner="b")
    assert [row.event_id for row in second] == [events[2].id]  # leased rows are not handed out twice
    assert await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(minutes=1), limit=10, owner="c") == []
    owners = {doc["_id"]: doc["owner"] async for doc in db["outbox"].find({})}
    assert owners == {events[0].id: "a", events[1].id: "a", events[2].id: "b"}

    # Published: the rows go. A row whose publish failed is given back at once.
    await outbox.delete([events[0].id, events[1].id])
    assert await outbox.count() == 1
    await outbox.release([events[2].id])
    again = await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(minutes=1), limit=10, owner="d")
    assert [row.event_id for row in again] == [events[2].id]
    await outbox.delete([])  # nothing to delete is fine
    assert await outbox.count() == 1


async def test_outbox_lease_runs_out(db: Database) -> None:
    outbox = OutboxStore(db)
    event = _created("user-lease")
    await outbox.add(event)
    taken = await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(milliseconds=300), limit=5, owner="a")
    assert [row.event_id for row in taken] == [event.id]
    assert await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(minutes=1), limit=5, owner="b") == []

    async def reclaimed() -> list[OutboxRow]:
        return await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(minutes=1), limit=5, owner="b")

    # The relay that claimed it died: once the lease ran out, another replica takes it.
    rows = await eventually(reclaimed, timeout=10, what="the row claimable again")
    assert [row.event_id for row in rows] == [event.id]


async def test_environment_ensure_with_pinned_keys(db: Database, cipher: CredentialCipher) -> None:
    store = EnvironmentStore(db, cipher)
    secret = str(uuid.uuid4()).upper()
    public = str(uuid.uuid4())
    env = await store.ensure("dev", public_key=public, secret_key=secret)
    assert env.name == "dev"
    assert env.secret_key == secret.lower()
    assert env.public_key == public

    raw = await db["environments"].find_one({"_id": "dev"})
    assert raw is not None
    assert secret.lower() not in str(raw)
    assert raw["secret_key_hash"] == hash_secret_key(secret)

    found = await store.by_secret_key(secret)
    assert found is not None
    assert found.name == "dev"
    found_public = await store.by_public_key(f" {public.upper()} ")
    assert found_public is not None
    assert found_public.name == "dev"
    assert await store.by_secret_key(str(uuid.uuid4())) is None
    assert await store.by_public_key(str(uuid.uuid4())) is None

    # A second start with the same settings changes nothing.
    again = await store.ensure("dev", public_key=public, secret_key=secret)
    assert (again.public_key, again.secret_key) == (env.public_key, env.secret_key)

    # A new pinned secret replaces the old one; the old one opens nothing any more.
    new_secret = str(uuid.uuid4())
    rotated = await store.ensure("dev", public_key=public, secret_key=new_secret)
    assert rotated.secret_key == new_secret
    assert await store.by_secret_key(secret) is None
    found_new = await store.by_secret_key(new_secret)
    assert found_new is not None
    assert found_new.name == "dev"


async def test_environment_keys_generated_and_kept(db: Database, cipher: CredentialCipher) -> None:
    store = EnvironmentStore(db, cipher)
    dev = await store.ensure("dev")
    prod = await store.ensure("prod")
    for env in (dev, prod):
        assert uuid.UUID(env.secret_key).version == 4
        assert uuid.UUID(env.public_key).version == 4
    assert len({dev.secret_key, dev.public_key, prod.secret_key, prod.public_key}) == 4
    again = await store.ensure("dev")
    assert (again.public_key, again.secret_key) == (dev.public_key, dev.secret_key)

    updated = await store.update_settings(
        "dev",
        callback_url="https://app.example/cb",
        hmac_enabled=True,
        hmac_key="hmac-secret-value",
        webhooks=WebhookSettings(primary_url="https://app.example/hook", on_auth_creation=False),
    )
    assert updated is not None
    assert updated.callback_url == "https://app.example/cb"
    assert updated.hmac_enabled is True
    assert updated.hmac_key == "hmac-secret-value"
    assert updated.webhooks.urls() == ["https://app.example/hook"]
    assert updated.webhooks.on_auth_creation is False
    raw = await db["environments"].find_one({"_id": "dev"})
    assert raw is not None
    assert "hmac-secret-value" not in str(raw)


async def test_idempotency_guard(db: Database) -> None:
    guard = MongoIdempotencyGuard(db)
    event_id = str(uuid.uuid4())

    assert await guard.claim("queue-a", event_id) is Claim.CLAIMED
    assert await guard.claim("queue-a", event_id) is Claim.BUSY  # someone is handling it right now
    assert await guard.claim("queue-b", event_id) is Claim.CLAIMED  # each consumer keeps its own record

    await guard.release("queue-a", event_id)  # the handler failed: give it back
    assert await guard.claim("queue-a", event_id) is Claim.CLAIMED

    await guard.complete("queue-a", event_id)
    assert await guard.claim("queue-a", event_id) is Claim.DONE
    await guard.release("queue-a", event_id)  # releasing never undoes a completed event
    assert await guard.claim("queue-a", event_id) is Claim.DONE

    record = await db["processed_events"].find_one({"_id": f"queue-a|{event_id}"})
    assert record is not None
    assert record["state"] == "done"
    assert record["expires_at"] > record["lease_until"]


async def test_idempotency_claim_of_a_dead_consumer_expires(db: Database) -> None:
    short = MongoIdempotencyGuard(db, lease=timedelta(0))
    event_id = str(uuid.uuid4())
    assert await short.claim("queue-a", event_id) is Claim.CLAIMED
    # The first claimer died without completing or releasing: its lease has run out, so it is taken over.
    assert await short.claim("queue-a", event_id) is Claim.CLAIMED
    await short.complete("queue-a", event_id)
    assert await short.claim("queue-a", event_id) is Claim.DONE
