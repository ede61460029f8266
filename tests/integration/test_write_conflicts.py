"""Connection writes that collide with another transaction (issue 15, item 4): the real database's
``WriteConflict``, raised at once while another transaction holds the document.

A write tried again at once collides again: the gateway answered 500 ("connection write kept
colliding", or the ``WriteConflict`` of a deletion) after a few tries within milliseconds. It now
backs off (capped, jittered) between tries, so a collision that lasts a moment costs a moment,
and one that outlasts the request's deadline answers 503 with ``Retry-After``, within it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from .gateway_app import Gateway, StartGateway, create_integration

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

DEADLINE = 2.0
HELD_FOR = 0.6  # seconds the rival transaction holds the document: far longer than a few immediate retries


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(request_deadline_seconds=DEADLINE) as gateway:
        await create_integration(gateway, "posthog", "ph")
        resp = await gateway.client.post(
            "/connection",
            json={"connection_id": "contested", "provider_config_key": "ph", "api_key": "phx_1"},
            headers=gateway.auth,
        )
        assert resp.status == 201, await resp.text()
        yield gateway


@contextlib.asynccontextmanager
async def rival_transaction(mongo_client: Any, db: Any, *, hold: float | None) -> AsyncIterator[asyncio.Event]:
    """Another transaction that writes the connection and holds it, ``hold`` seconds (None: until the
    block ends) before aborting; the event is set once it holds the document."""
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold_it() -> None:
        async with mongo_client.start_session() as session:
            await session.start_transaction()
            await db["connections"].update_one(
                {"connection_id": "contested"}, {"$set": {"metadata": {"rival": True}}}, session=session
            )
            holding.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), timeout=hold)
            await session.abort_transaction()

    task = asyncio.create_task(hold_it())
    await asyncio.wait_for(holding.wait(), timeout=10)
    try:
        yield holding
    finally:
        release.set()
        await task


async def delete(gw: Gateway) -> aiohttp.ClientResponse:
    return await gw.client.delete("/connection/contested?provider_config_key=ph&revoke=false", headers=gw.auth)


async def reimport(gw: Gateway) -> aiohttp.ClientResponse:
    body = {"connection_id": "contested", "provider_config_key": "ph", "api_key": "phx_2"}
    return await gw.client.post("/connection", json=body, headers=gw.auth)


@pytest.mark.parametrize(("write", "ok"), [(delete, 200), (reimport, 201)], ids=["delete", "import"])
async def test_a_write_that_collides_for_a_moment_backs_off_and_goes_through(
    gw: Gateway, mongo_client: Any, db: Any, write: Any, ok: int
) -> None:
    async with rival_transaction(mongo_client, db, hold=HELD_FOR):
        started = time.monotonic()
        resp = await write(gw)
        took = time.monotonic() - started
    assert resp.status == ok, await resp.text()
    assert took < DEADLINE + 1.0, f"answered after {took:.1f} s"


@pytest.mark.parametrize("write", [delete, reimport], ids=["delete", "import"])
async def test_a_write_that_collides_past_the_deadline_answers_503_within_it(
    gw: Gateway, mongo_client: Any, db: Any, write: Any
) -> None:
    async with rival_transaction(mongo_client, db, hold=None):
        started = time.monotonic()
        resp = await asyncio.wait_for(write(gw), timeout=30)
        took = time.monotonic() - started
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.headers["Retry-After"] == "2"
    assert body["error"]["code"] == "service_unavailable"
    assert took < 3 * DEADLINE, f"answered after {took:.1f} s"
    # Nothing was written: the next try, the rival gone, goes through.
    resp = await write(gw)
    assert resp.status in (200, 201), await resp.text()
