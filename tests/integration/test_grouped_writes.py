"""Concurrent connection writes share transactions (issue 19), and each writer still gets its own answer."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from keyway_shared.cipher import CredentialCipher
from keyway_shared.credentials.shapes import ApiKeyCredentials
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionUpdated, EventData, make_event
from keyway_shared.store import Connection, ConnectionStore, ensure_indexes
from keyway_shared.store.connections import ConnectionOwnedError

pytestmark = pytest.mark.mongo


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _connection(connection_id: str, *, end_user: str | None = None) -> Connection:
    return Connection(
        environment="dev",
        provider_config_key="ph",
        connection_id=connection_id,
        provider="posthog",
        auth_mode="API_KEY",
        credentials=ApiKeyCredentials(api_key=f"phc_{connection_id}"),
        connection_config={},
        end_user={"id": end_user} if end_user else None,
    )


def _event(connection: Connection, created: bool) -> CloudEvent[EventData]:
    fields: dict[str, Any] = connection.event_identity()
    data: EventData = ConnectionCreated(**fields) if created else ConnectionUpdated(**fields, operation="override")
    kind = "connection.created" if created else "connection.updated"
    return make_event(data, type=kind, source="/t", environment="dev")


async def test_concurrent_writes_share_commits_and_keep_their_own_answers(
    mongo_url: str, db_name: str, db: Any, encryption_key: str
) -> None:
    listener = _Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    try:
        own_db = client[db_name]
        await ensure_indexes(own_db)
        store = ConnectionStore(client, own_db, CredentialCipher(current_key=encryption_key))
        # Stored before: one to re-authorize, one that belongs to another end user.
        await store.save_with_event(_connection("old"), lambda created: _event(_connection("old"), created))
        owned = _connection("owned", end_user="alice")
        await store.save_with_event(owned, lambda created: _event(owned, created), for_session=True)
        listener.counts.clear()

        fresh = [f"new-{i}-{uuid.uuid4().hex[:6]}" for i in range(30)]
        writes = [_connection(cid) for cid in fresh]
        writes += [_connection("old"), _connection(fresh[0]), _connection("owned", end_user="bob")]
        events: dict[int, CloudEvent[EventData]] = {}

        def maker(index: int, connection: Connection) -> Any:
            def make(created: bool) -> CloudEvent[EventData]:
                events[index] = _event(connection, created)
                return events[index]

            return make

        results = await asyncio.gather(
            *(
                store.save_with_event(c, maker(i, c), for_session=c.connection_id == "owned")
                for i, c in enumerate(writes)
            ),
            return_exceptions=True,
        )
    finally:
        await client.close()

    refused = results[-1]
    assert isinstance(refused, ConnectionOwnedError)  # that writer's answer alone
    answers = [r for r in results[:-1] if not isinstance(r, BaseException)]
    assert len(answers) == len(writes) - 1
    assert [created for _, created, _ in answers[:30]] == [True] * 30
    assert answers[30][1] is False  # "old" existed
    assert answers[31][1] is False  # the second write of fresh[0] came after its first
    ids = [saved.id for saved, created, _ in answers if created]
    assert len(set(ids)) == 30
    # Every writer's own event is in the outbox, committed with its write; the refused one wrote nothing.
    stored = {doc["_id"]: doc["routing_key"] async for doc in db["outbox"].find({})}
    for index, (_, created, row) in enumerate(answers):
        assert row.event_id == events[index].id
        assert stored[row.event_id] == ("connection.created" if created else "connection.updated")
    assert await db["connections"].count_documents({"connection_id": {"$in": fresh}}) == 30
    doc = await db["connections"].find_one({"connection_id": "owned"})
    assert doc is not None
    assert doc["end_user"] == {"id": "alice"}
    # Shared: far fewer commits than writes.
    assert listener.counts["commitTransaction"] < len(answers) / 2
