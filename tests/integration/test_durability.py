"""An acknowledged write survives the database crashing right after it (issue 15).

The fault run found a connection stored again after its deletion had been answered 200: the
deletion was acknowledged, then the database was SIGKILLed, and on restart it had lost its last
few dozen commits. Two things make an acknowledged write durable, and this test needs both:
Keyway's client asks for ``w=majority, journal=true`` (``store/client.py``: on MongoDB that is
what makes a non-transactional write durable), and the embedded server the stack starts fsyncs its
journal at every commit (``deploy/local/run_mongo.py``: it ignores a transaction's ``journal``).

The writes are Keyway's own, through its store: connections created and deleted in transactions
with their outbox events, as the gateway does; and, in a run of their own (a journaled plain write
flushes the journal for the commits before it too), plain single-document writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import PyMongoError

from keyway_shared.cipher import CredentialCipher
from keyway_shared.credentials.shapes import ApiKeyCredentials
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionDeleted, EventData, make_event
from keyway_shared.store import Connection, ConnectionStore, ensure_indexes, open_client

from ..support.procs import start_mongo

pytestmark = pytest.mark.mongo

# Writes acknowledged before the kill (each a commit that may be the last), and for at least how
# long: counted rather than timed alone, since a slower disk makes fewer commits in a given time.
WRITES_BEFORE_KILL = 150
WRITING_FOR = 2.0  # seconds at least
WRITING_AT_MOST = 60.0


def _connection(connection_id: str) -> Connection:
    return Connection(
        environment="dev",
        provider_config_key="durable",
        connection_id=connection_id,
        provider="github",
        auth_mode="API_KEY",
        credentials=ApiKeyCredentials(api_key="k"),
        connection_config={},
    )


def _event(kind: str, connection_id: str) -> CloudEvent[EventData]:
    fields: dict[str, Any] = {
        "connection_id": connection_id,
        "provider_config_key": "durable",
        "provider": "github",
        "auth_mode": "API_KEY",
    }
    data: EventData = ConnectionCreated(**fields) if kind == "created" else ConnectionDeleted(**fields)
    return make_event(data, type=f"connection.{kind}", source="/t", environment="dev")


def _created(connection_id: str, _first: bool) -> CloudEvent[EventData]:
    return _event("created", connection_id)


def _deleted(connection: Connection) -> CloudEvent[EventData]:
    return _event("deleted", connection.connection_id)


@pytest.mark.parametrize("writes", ["transactions", "plain"])
async def test_every_acknowledged_write_is_there_after_the_database_is_killed(
    writes: str, tmp_path: Path, encryption_key: str
) -> None:
    data_dir = tmp_path / "db" / "data"
    data_dir.mkdir(parents=True)
    proc, url = start_mongo(data_dir)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    client = open_client(url, app_name="durability-test", timeout_ms=2000)
    db = client["durable"]
    await ensure_indexes(db)
    store = ConnectionStore(client, db, CredentialCipher(current_key=encryption_key))
    created: list[str] = []  # acknowledged creations, in order
    deleted: list[str] = []  # acknowledged deletions
    plain: list[int] = []  # acknowledged plain inserts
    enough = asyncio.Event()  # set once WRITES_BEFORE_KILL writes were acknowledged

    def acknowledged() -> None:
        if len(created) + len(plain) >= WRITES_BEFORE_KILL:
            enough.set()

    async def connections() -> None:
        n = 0
        while True:
            n += 1
            connection_id = f"c-{n}"
            await store.save_with_event(_connection(connection_id), functools.partial(_created, connection_id))
            created.append(connection_id)
            acknowledged()
            if n % 2 == 0:  # every second one deleted at once: a lost deletion brings it back
                removed = await store.delete_with_event("dev", "durable", connection_id, _deleted)
                assert removed is not None
                deleted.append(connection_id)

    async def plain_writes() -> None:
        n = 0
        while True:
            n += 1
            await db["plain"].insert_one({"_id": n})
            plain.append(n)
            acknowledged()

    writers = [asyncio.create_task(connections() if writes == "transactions" else plain_writes())]
    try:
        await asyncio.sleep(WRITING_FOR)
        with contextlib.suppress(TimeoutError):  # the count below then says what happened
            await asyncio.wait_for(enough.wait(), timeout=WRITING_AT_MOST)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        for writer in writers:
            writer.cancel()
        for outcome in await asyncio.gather(*writers, return_exceptions=True):
            # Cancelled, or cut by the kill mid-write (that write was not acknowledged: not counted).
            assert isinstance(outcome, (asyncio.CancelledError, PyMongoError)), outcome
    finally:
        await client.close()
    assert len(created) + len(plain) > 100, "too few writes before the kill to show anything"

    proc, url = start_mongo(data_dir, port=port)
    reader = open_client(url, app_name="durability-check")
    try:
        stored = {doc["connection_id"] async for doc in reader["durable"]["connections"].find({}, {"connection_id": 1})}
        kept = {doc["_id"] async for doc in reader["durable"]["plain"].find({}, {"_id": 1})}
    finally:
        await reader.close()
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    assert sorted(set(created) - set(deleted) - stored) == [], "acknowledged creations lost"
    assert sorted(stored & set(deleted)) == [], "acknowledged deletions lost: the connections came back"
    assert sorted(set(plain) - kept) == [], "acknowledged plain writes lost"


async def test_the_client_asks_for_durable_writes_unless_the_url_says_otherwise() -> None:
    durable = open_client("mongodb://127.0.0.1:1/?retryWrites=false", app_name="t")
    chosen = open_client("mongodb://127.0.0.1:1/?w=1&journal=false", app_name="t")
    try:
        assert durable.write_concern.document == {"w": "majority", "j": True}
        assert chosen.write_concern.document == {"w": 1, "j": False}
    finally:
        await durable.close()
        await chosen.close()
