"""Claims and credential writes made at the same moment share round trips, with the guarantees of
one at a time: a connection is claimed by one claimer only and only while due, and a batch of
compare-and-swap writes keeps each one's verdict (a connection rewritten meanwhile is not overwritten,
and only the writes that happened leave an event in the outbox)."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from keyway_shared.cipher import CredentialCipher, generate_key
from keyway_shared.events import utcnow
from keyway_shared.store import Connection, ConnectionStore, RefreshStateStore
from keyway_shared.store.client import Database
from keyway_shared.store.outbox import OutboxRow
from keyway_shared.store.refresh_state import RefreshState

from .cli_seed import connection_event, oauth2

pytestmark = [pytest.mark.mongo]

LEASE = timedelta(seconds=30)


@pytest.fixture
def cipher() -> CredentialCipher:
    return CredentialCipher(current_key=generate_key())


async def seed(client: AsyncMongoClient[dict[str, Any]], db: Database, cipher: CredentialCipher, n: int) -> list[Any]:
    store = ConnectionStore(client, db, cipher)
    for i in range(n):
        conn = oauth2(f"u-{i}", f"at-{i}")
        await store.save_with_event(conn, functools.partial(connection_event, conn))
    docs = await db["connections"].find({}, {"_id": 1, "connection_id": 1}).sort("connection_id", 1).to_list()
    return [doc["_id"] for doc in docs]


async def save_new_token(
    store: RefreshStateStore, key: dict[str, str], found: tuple[Connection, RefreshState] | None, token: str
) -> OutboxRow | None:
    """What a refresh that read ``found`` writes: a new access token, swapped against what it read."""
    assert found is not None
    conn, state = found
    return await store.save_refreshed(
        key,
        conn,
        expected_ciphertext=state.ciphertext,
        credentials=conn.credentials.with_fields(access_token=token),
        expires_at=None,
        due=None,
        event=connection_event(conn, False),
    )


async def test_concurrent_claimers_split_the_due_connections_and_leave_the_rest(
    mongo_client: AsyncMongoClient[dict[str, Any]], db: Database, cipher: CredentialCipher
) -> None:
    ids = await seed(mongo_client, db, cipher, 12)
    due, not_due = ids[:10], ids[10:]
    now = utcnow()
    await db["connections"].update_many({"_id": {"$in": due}}, {"$set": {"refresh_due_at": now - timedelta(seconds=1)}})
    await db["connections"].update_many(
        {"_id": {"$in": not_due}}, {"$set": {"refresh_due_at": now + timedelta(hours=1)}}
    )
    one = RefreshStateStore(mongo_client, db, cipher)
    two = RefreshStateStore(mongo_client, db, cipher)
    # Every id asked for by both replicas at once, each call batched with its replica's others.
    claims = await asyncio.gather(
        *(
            store.claim_due(doc_id, owner=owner, lease=LEASE)
            for doc_id in ids
            for store, owner in ((one, "r1"), (two, "r2"))
        )
    )
    claimed = [doc for doc in claims if doc is not None]
    assert sorted(doc["_id"] for doc in claimed) == sorted(due)  # each due one exactly once, none other
    for doc in claimed:
        assert doc["refresh_lease_owner"] in ("r1", "r2")
        assert doc["refresh_due_at"] > now  # out of the due range while held
    # Held now: a second round claims nothing.
    again = await asyncio.gather(*(one.claim_due(doc_id, owner="r1", lease=LEASE) for doc_id in due))
    assert again == [None] * len(due)


async def test_a_batch_of_saves_keeps_each_compare_and_swap(
    mongo_client: AsyncMongoClient[dict[str, Any]], db: Database, cipher: CredentialCipher
) -> None:
    await seed(mongo_client, db, cipher, 6)
    store = RefreshStateStore(mongo_client, db, cipher)
    keys = [{"environment": "dev", "provider_config_key": "github", "connection_id": f"u-{i}"} for i in range(6)]
    read = [await store.read(key) for key in keys]
    # A reconnect rewrites u-3 after the refresh read it: its swap must lose, the others must not.
    reconnected = oauth2("u-3", "at-reconnected")
    await ConnectionStore(mongo_client, db, cipher).save_with_event(
        reconnected, lambda created: connection_event(reconnected, created)
    )
    await db["outbox"].delete_many({})

    rows = await asyncio.gather(*(save_new_token(store, keys[i], read[i], f"refreshed-{i}") for i in range(6)))
    assert [row is None for row in rows] == [False, False, False, True, False, False]
    connections = ConnectionStore(mongo_client, db, cipher)
    for i in range(6):
        got = await connections.get("dev", "github", f"u-{i}")
        assert got is not None
        expected = "at-reconnected" if i == 3 else f"refreshed-{i}"
        assert got.credentials.dump()["access_token"] == expected
    outbox_ids = {doc["_id"] for doc in await db["outbox"].find({}, {"_id": 1}).to_list()}
    assert outbox_ids == {row.event_id for row in rows if row is not None}


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_saves_that_all_hold_go_out_in_one_transaction_of_one_update_and_one_insert(
    mongo_url: str, db_name: str, db: Database, mongo_client: AsyncMongoClient[dict[str, Any]], cipher: CredentialCipher
) -> None:
    await seed(mongo_client, db, cipher, 8)
    commands = CommandCounter()
    watched: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[commands])
    try:
        store = RefreshStateStore(watched, watched[db_name], cipher)
        keys = [{"environment": "dev", "provider_config_key": "github", "connection_id": f"u-{i}"} for i in range(8)]
        read = [await store.read(key) for key in keys]
        await db["outbox"].delete_many({})
        commands.names.clear()

        rows = await asyncio.gather(*(save_new_token(store, keys[i], read[i], f"new-{i}") for i in range(8)))
    finally:
        await watched.close()
    assert all(row is not None for row in rows)
    assert await db["outbox"].count_documents({}) == 8
    assert (commands.names["update"], commands.names["insert"], commands.names["commitTransaction"]) == (1, 1, 1)
    connections = ConnectionStore(mongo_client, db, cipher)
    for i in range(8):
        got = await connections.get("dev", "github", f"u-{i}")
        assert got is not None
        assert got.credentials.dump()["access_token"] == f"new-{i}"
