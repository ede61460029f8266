"""The gateway with its database link cut or blackholed (issue 15, item 4): the real embedded
database behind a TCP link the test breaks, the real broker.

While the link is down, reading, importing and deleting connections answer ``503``
``service_unavailable`` with ``Retry-After`` within the request deadline (a second here), never a
500 and never a hang; ``/readyz`` says 503. Once the link is back, ``/readyz`` says 200 again within
seconds and the same calls succeed, with no restart.

The figures each run measured are printed (``pytest -s``): the slowest answer during the outage,
and how long ``/readyz`` took to say 200 after the heal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from ..support.faulty_link import FaultyLink
from ..support.polling import eventually
from .gateway_app import Gateway, StartGateway, create_integration

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

DEADLINE = 1.0  # KEYWAY_REQUEST_DEADLINE_SECONDS in these tests
RETRY_AFTER = 3
READY_AGAIN_WITHIN = 5.0  # issue 15: /readyz 200 within 5 s of the database's return
GIVE_UP_AFTER = 30.0  # a client that waited this long has long given up
T = TypeVar("T")


@pytest.fixture
async def link(mongo_url: str) -> AsyncIterator[FaultyLink]:
    server = urlsplit(mongo_url)
    faulty = FaultyLink(server.hostname or "127.0.0.1", server.port or 27017)
    await faulty.start()
    yield faulty
    await faulty.cut()


def through(link: FaultyLink, mongo_url: str) -> str:
    """The test's database URL, through the link (direct: the replica set names the server's own port)."""
    parts = urlsplit(mongo_url)
    query = "&".join(q for q in (parts.query, "directConnection=true") if q)
    return urlunsplit((parts.scheme, link.url_host, parts.path or "/", query, ""))


@pytest.fixture
async def gw(start_gateway: StartGateway, link: FaultyLink, mongo_url: str) -> AsyncIterator[Gateway]:
    async with start_gateway(
        mongo_url=through(link, mongo_url), request_deadline_seconds=DEADLINE, retry_after_seconds=RETRY_AFTER
    ) as gateway:
        await create_integration(gateway, "posthog", "ph")
        for connection_id in ("seen", "unseen", "doomed"):
            resp = await gateway.client.post(
                "/connection",
                json={"connection_id": connection_id, "provider_config_key": "ph", "api_key": f"phx_{connection_id}"},
                headers=gateway.auth,
            )
            assert resp.status == 201, await resp.text()
        resp = await gateway.client.get("/connection/seen?provider_config_key=ph", headers=gateway.auth)
        assert resp.status == 200
        yield gateway


Call = Callable[[Gateway], Awaitable[aiohttp.ClientResponse]]

# The backend API's reads and writes of connections; "unseen" is in no cache, so its read needs the database.
CALLS: dict[str, tuple[Call, int]] = {
    "GET /connection": (lambda gw: gw.client.get("/connection", headers=gw.auth), 200),
    "GET /connection/{id}": (
        lambda gw: gw.client.get("/connection/unseen?provider_config_key=ph", headers=gw.auth),
        200,
    ),
    "POST /connection": (
        lambda gw: gw.client.post(
            "/connection",
            json={"connection_id": "imported", "provider_config_key": "ph", "api_key": "phx_new"},
            headers=gw.auth,
        ),
        201,
    ),
    "DELETE /connection/{id}": (
        lambda gw: gw.client.delete("/connection/doomed?provider_config_key=ph&revoke=false", headers=gw.auth),
        200,
    ),
}


async def answered(call: Awaitable[T], name: str) -> T:
    """The answer, or a failure that says there was none (a client's patience: generous, not tight)."""
    try:
        return await asyncio.wait_for(call, timeout=GIVE_UP_AFTER)
    except TimeoutError:
        pytest.fail(f"{name}: no answer within {GIVE_UP_AFTER} s")


async def readyz(gw: Gateway) -> tuple[int, dict[str, Any]]:
    resp = await gw.client.get("/readyz")
    return resp.status, await resp.json()


async def assert_unavailable(resp: aiohttp.ClientResponse) -> None:
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.headers["Retry-After"] == str(RETRY_AFTER)
    assert body["type"] == body["error"]["code"] == "service_unavailable"
    assert body["error"]["payload"] == {"retry_after": RETRY_AFTER}
    assert "mongo" not in body["error"]["message"].lower()  # nothing of the driver's words leaks


@pytest.mark.parametrize("fault", ["blackhole", "cut"])
async def test_a_database_outage_answers_503_in_time_and_heals_by_itself(
    gw: Gateway, link: FaultyLink, fault: str
) -> None:
    if fault == "blackhole":
        link.blackhole()
    else:
        await link.cut()

    slowest = 0.0
    for name, (call, _ok) in CALLS.items():
        started = time.monotonic()
        resp = await answered(call(gw), name)
        took = time.monotonic() - started
        slowest = max(slowest, took)
        await assert_unavailable(resp)
        assert took < 3 * DEADLINE, f"{name} answered after {took:.1f} s"

    started = time.monotonic()
    status, body = await answered(readyz(gw), "/readyz")
    assert (status, body["checks"]["mongo"]) == (503, False)
    assert time.monotonic() - started < 3 * DEADLINE + 2.0  # the ping's own 2 s, within the request's

    await link.heal()
    healed = time.monotonic()

    async def ready() -> bool:
        return (await readyz(gw))[0] == 200

    await eventually(ready, timeout=READY_AGAIN_WITHIN, interval=0.1, what="/readyz 200 once the database is back")
    ready_after = time.monotonic() - healed
    print(
        f"\n[{fault}] slowest answer during the outage {slowest:.2f} s; /readyz 200 {ready_after:.2f} s after the heal"
    )

    for name, (call, ok) in CALLS.items():
        resp = await call(gw)
        assert resp.status == ok, f"{name} after the heal: {resp.status} {await resp.text()}"


async def test_a_keyed_write_refused_in_an_outage_can_be_retried_soon_after_the_heal(
    gw: Gateway, link: FaultyLink
) -> None:
    """The claim of an ``Idempotency-Key`` sent into a blackholed link may land only after the heal, once
    the request's own release has failed: the key must still be free again within seconds, not be
    answered 409 "in flight" until its 60 s lease runs out."""
    keyed = {**gw.auth, "Idempotency-Key": "delete-doomed-1"}
    link.blackhole()
    resp = await answered(
        gw.client.delete("/connection/doomed?provider_config_key=ph&revoke=false", headers=keyed), "keyed DELETE"
    )
    await assert_unavailable(resp)
    await link.heal()

    async def retried() -> int | None:
        again = await gw.client.delete("/connection/doomed?provider_config_key=ph&revoke=false", headers=keyed)
        return again.status if again.status != 409 else None

    status = await eventually(retried, timeout=15, interval=0.5, what="the key free again after the heal")
    assert status == 200
