"""The cap on concurrent database work per replica (``KEYWAY_DATABASE_CONCURRENCY``, issue 15 item 4).

Two slots, both held by requests whose database reads a slow fake keeps waiting: a third request
of the backend API is answered ``503`` with ``Retry-After`` at once, having done nothing, instead
of queueing behind them. A ``GET /connection/{id}`` the connection cache answers takes no slot and
is served all the same; one that must read the database is refused like the others. Once the
slots are given back, the same requests are served.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from auth_gateway.resources import STORES

from .gateway_app import Gateway, StartGateway, create_integration

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

SLOTS = 2


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(database_concurrency=SLOTS, retry_after_seconds=1) as gateway:
        await create_integration(gateway, "posthog", "ph")
        for connection_id in ("cached", "cold"):
            body = {"connection_id": connection_id, "provider_config_key": "ph", "api_key": f"phx_{connection_id}"}
            resp = await gateway.client.post("/connection", json=body, headers=gateway.auth)
            assert resp.status == 201, await resp.text()
        resp = await gateway.client.get("/connection/cached?provider_config_key=ph", headers=gateway.auth)
        assert resp.status == 200
        yield gateway


async def test_past_the_cap_requests_are_refused_at_once_and_cache_hits_still_served(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections = gw.client.server.app[STORES].connections
    slow_reads = 0
    all_held = asyncio.Event()
    go_on = asyncio.Event()
    real_summaries = connections.summaries

    async def slow_summaries(*args: Any, **kwargs: Any) -> Any:
        nonlocal slow_reads
        slow_reads += 1
        if slow_reads == SLOTS:
            all_held.set()
        await go_on.wait()
        return await real_summaries(*args, **kwargs)

    monkeypatch.setattr(connections, "summaries", slow_summaries)
    holders = [asyncio.create_task(gw.client.get("/connection", headers=gw.auth)) for _ in range(SLOTS)]
    try:
        await asyncio.wait_for(all_held.wait(), timeout=10)

        async def promptly(path: str) -> Any:
            try:
                return await asyncio.wait_for(gw.client.get(path, headers=gw.auth), timeout=5)
            except TimeoutError:
                pytest.fail(f"GET {path} waited for a slot instead of being answered")

        refused = await promptly("/connection")
        body = await refused.json()
        assert refused.status == 503, body
        assert refused.headers["Retry-After"] == "1"
        assert body["error"]["code"] == "service_unavailable"
        assert "nothing was done" in body["error"]["message"]
        assert slow_reads == SLOTS  # refused before any database work

        hit = await promptly("/connection/cached?provider_config_key=ph")
        assert hit.status == 200, await hit.text()
        miss = await promptly("/connection/cold?provider_config_key=ph")
        assert miss.status == 503, await miss.text()
    finally:
        go_on.set()
        answers = await asyncio.gather(*holders)
    assert [answer.status for answer in answers] == [200] * SLOTS

    for path in ("/connection", "/connection/cold?provider_config_key=ph"):
        resp = await gw.client.get(path, headers=gw.auth)
        assert resp.status == 200, await resp.text()
