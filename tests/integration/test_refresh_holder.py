"""A refresh holding rotated tokens keeps them: a live holder slower than its lease is never
overtaken, and a database outage while it stores the new tokens delays the write, never loses it.

The refresh service here leases for three seconds and allows the provider ten (the services'
settings forbid that pairing; it stands for any holder slowed past its lease, such as a database
write retried through a failover). The provider takes five. A rival replica tries to claim the
connection and to take its lease all along: without the holder extending its lease the rival gets
it after three seconds and spends the same rotating refresh token, and the strict provider revokes
the grant. (Three seconds, not one: the holder renews every second, so a test process stalled for
well under a second on a busy machine cannot make it miss a renewal.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import utcnow
from keyway_shared.providers import load_catalog
from keyway_shared.refresh.service import RefreshService
from keyway_shared.store import RefreshStateStore
from token_refresher.integrations import CachedIntegrations

from ..support.polling import eventually
from ..support.tcpproxy import TcpProxy
from .refresher_world import StartRefresherWorld, World

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

LEASE = timedelta(seconds=3)


@pytest.fixture
async def quiet_world(start_refresher_world: StartRefresherWorld) -> AsyncIterator[World]:
    """The world with the refresher's own loop off: only the test's services refresh."""
    async with start_refresher_world(refresh_loop=False) as the_world:
        yield the_world


async def test_a_holder_slower_than_its_lease_is_not_overtaken(
    quiet_world: World, mongo_client: Any, db: Any, encryption_key: str, tmp_path: Path
) -> None:
    world = quiet_world
    doc = await due_now(world, db, "slow")
    world.provider.delay = 5.0
    world.provider.token_lifetime = 3600  # the new tokens are not due again while the rival looks

    async with aiohttp.ClientSession() as http:
        holder = refresh_service(mongo_client, db, encryption_key, tmp_path, http, lease=LEASE)
        refresh = asyncio.create_task(holder.refresh_due(doc["_id"]))
        rival = RefreshStateStore(mongo_client, db, CredentialCipher(current_key=encryption_key))
        rival_took: list[str] = []  # what the rival got, and when (seconds after the holder started)
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.1)
        while not refresh.done():
            if await rival.claim_due(doc["_id"], owner="rival", lease=LEASE) is not None:
                rival_took.append(f"claim at {asyncio.get_running_loop().time() - started:.2f}")
            # The lease of the connection as it was: once the holder's write has stored the new
            # tokens (and released the lease) a sibling may take it, and would find them.
            unrefreshed = {"_id": doc["_id"], "credentials_enc": doc["credentials_enc"]}
            if await rival.acquire(unrefreshed, owner="rival", lease=LEASE):
                rival_took.append(f"lease at {asyncio.get_running_loop().time() - started:.2f}")
            await asyncio.sleep(0.1)
        outcome = await refresh

    assert outcome == "refreshed"
    assert rival_took == []
    assert world.refreshes_of("slow") == 1
    assert world.provider.reuse_detected == 0
    stored = await world.credentials("slow")
    assert stored["refresh_token"] == world.provider.grants[world.grants["slow"]].refresh_tokens[-1]
    after = await world.doc("slow")
    assert after["refresh_lease_owner"] is None  # the save released it


async def test_new_tokens_outlast_a_database_outage_while_they_are_stored(
    quiet_world: World, mongo_url: str, db_name: str, db: Any, encryption_key: str, tmp_path: Path
) -> None:
    world = quiet_world
    doc = await due_now(world, db, "outage")
    world.provider.delay = 0.5

    server = urlsplit(mongo_url)
    link = TcpProxy(server.hostname or "127.0.0.1", server.port or 27017)
    await link.start()
    # Quick to give up on an unreachable server, so the outage outlasts the driver's own waiting.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{link.port}/?retryWrites=false&directConnection=true&serverSelectionTimeoutMS=300",
        tz_aware=True,
    )
    try:
        async with aiohttp.ClientSession() as http:
            holder = refresh_service(
                client, client[db_name], encryption_key, tmp_path, http, lease=timedelta(seconds=30)
            )
            refresh = asyncio.create_task(holder.refresh_due(doc["_id"]))

            async def asked() -> bool:
                return world.provider.delayed == 1

            await eventually(asked, timeout=10, what="the token request to reach the provider")
            await link.cut()  # the database goes away while the provider rotates the tokens

            async def rotated() -> bool:
                return world.refreshes_of("outage") == 1

            await eventually(rotated, timeout=10, what="the provider to rotate the tokens")
            await asyncio.sleep(1.5)  # several failed writes of the new tokens, each past the driver's patience
            assert not refresh.done()
            await link.start()
            outcome = await asyncio.wait_for(refresh, timeout=20)
    finally:
        await client.close()
        await link.cut()

    assert outcome == "refreshed"
    stored = await world.credentials("outage")
    assert stored["refresh_token"] == world.provider.grants[world.grants["outage"]].refresh_tokens[-1]
    assert world.provider.reuse_detected == 0


async def due_now(world: World, db: Any, connection_id: str) -> dict[str, Any]:
    """A connection whose token lives an hour, marked due now: only the test's refresh takes it."""
    await world.import_connection(connection_id, expires_in=3600)
    doc = await world.doc(connection_id)
    await db["connections"].update_one({"_id": doc["_id"]}, {"$set": {"refresh_due_at": utcnow()}})
    return doc


def refresh_service(
    client: Any, db: Any, encryption_key: str, tmp_path: Path, http: aiohttp.ClientSession, *, lease: timedelta
) -> RefreshService:
    """A refresh service of the test's own (the world's refresher has its loop off)."""
    cipher = CredentialCipher(current_key=encryption_key)
    return RefreshService(
        state=RefreshStateStore(client, db, cipher),
        integrations=CachedIntegrations(db, cipher),
        catalog=load_catalog(str(tmp_path / "providers.yaml")),
        http=http,
        publish_soon=lambda rows: None,  # the rows stay in the outbox; not what this test is about
        owner="holder",
        source="/keyway/tests",
        lease=lease,
        timeout_seconds=10.0,
    )
