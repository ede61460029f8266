"""The refresh loop in the token-refresher, in process, on the real broker and MongoDB-wire server,
against the strict OAuth2 server (rotating refresh tokens; reuse revokes the grant).

Proves: connections are refreshed in the background before they expire and their events are
published (outbox emptied); an idle loop sleeps instead of polling and a ``connection.*`` event
wakes it for an earlier due time; on shutdown it stops claiming, lets refreshes in flight finish
and leaves no lease behind.

The world these tests run in (a provider that mints grants directly, a gateway + refresher +
optional webhook dispatcher and activity log) is in ``refresher_world``, shared with the other
refresher tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyway_shared.events import utcnow
from token_refresher.app import REFRESHER

from ..support.polling import eventually
from .refresher_world import StartRefresherWorld, World

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def world(start_refresher_world: StartRefresherWorld) -> AsyncIterator[World]:
    async with start_refresher_world() as the_world:
        yield the_world


async def test_connections_are_refreshed_in_the_background_before_they_expire(world: World) -> None:
    ids = [f"bg-{i}" for i in range(10)]
    for connection_id in ids:
        await world.import_connection(connection_id, expires_in=3)

    async def twice_each() -> bool:
        return all(world.refreshes_of(c) >= 2 for c in ids)

    await eventually(twice_each, timeout=20, what="every connection refreshed twice by the refresher")
    assert world.provider.reuse_detected == 0
    assert all(count == 1 for count in world.provider.refresh_counts().values())
    for connection_id in ids:
        doc = await world.doc(connection_id)
        assert doc["refresh_failed"] is False
        assert doc["credentials_expires_at"] > utcnow()
        token = (await world.credentials(connection_id))["access_token"]
        async with world.gw.client.session.get(
            f"{world.provider.base}/api/me", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200
    # Every token.refreshed row was published and deleted (the import's events went out too).
    await eventually(lambda: _outbox_empty(world), timeout=10, what="the outbox to drain")
    loop = world.refresher[REFRESHER].loop
    assert loop.in_flight <= 10


async def _outbox_empty(world: World) -> bool:
    return await world.db["outbox"].count_documents({}) == 0


@pytest.fixture
async def idle_world(start_refresher_world: StartRefresherWorld) -> AsyncIterator[World]:
    async with start_refresher_world(refresh_max_sleep_seconds=30.0) as the_world:
        yield the_world


async def test_an_idle_loop_sleeps_and_a_connection_event_wakes_it(idle_world: World) -> None:
    world = idle_world
    loop = world.refresher[REFRESHER].loop
    # A connection due in ten minutes: the loop may sleep (capped at 30 s) instead of polling.
    await world.import_connection("later", expires_in=1200)
    await asyncio.sleep(1.0)  # the event reaches the consumer, which wakes the loop once
    rounds = loop.rounds
    await asyncio.sleep(2.0)
    assert loop.rounds - rounds <= 1  # asleep: no polling of the due index

    # A connection due in one second: its connection.created event wakes the sleeping loop.
    await world.import_connection("soon", expires_in=2)

    async def refreshed() -> bool:
        return world.refreshes_of("soon") >= 1

    await eventually(refreshed, timeout=10, what="the refresher to wake and refresh 'soon'")
    first = next(t for g, t in world.provider.refreshes if g == world.grants["soon"])
    imported = (await world.doc("soon"))["created_at"].timestamp()
    print(f"woken refresh {first - imported:.2f}s after import (due at 1.0s, expiry at 2.0s)")
    assert world.refreshes_of("later") == 0


async def test_shutdown_drains_refreshes_in_flight_and_releases_leases(
    start_refresher_world: StartRefresherWorld, db: Any
) -> None:
    async with start_refresher_world() as world:
        world.provider.delay = 1.0  # every token request takes a second
        for i in range(5):
            await world.import_connection(f"sd-{i}", expires_in=2)
        loop = world.refresher[REFRESHER].loop

        async def busy() -> bool:
            return loop.in_flight >= 3

        await eventually(busy, timeout=10, what="refreshes in flight")
        grants = dict(world.grants)
        before = len(world.provider.refreshes)
        await world.refresher[REFRESHER].loop.stop(grace=5.0)  # what the app's cleanup does first
        assert loop.in_flight == 0
        assert len(world.provider.refreshes) > before  # the ones in flight finished
        held = await db["connections"].count_documents({"refresh_lease_owner": {"$ne": None}})
        assert held == 0
        for connection_id, grant in grants.items():
            if any(g == grant for g, _ in world.provider.refreshes):
                doc = await world.doc(connection_id)
                assert doc["credentials_expires_at"] > doc["created_at"]  # their result was stored
        assert world.provider.reuse_detected == 0
