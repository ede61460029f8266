"""What anyone holding the public key can do to the gateway's limits, performed over HTTP (issue 14, item 5).

- A flood of public-key requests never answers the app's backend 429: browsers and the secret key
  have separate budgets per environment.
- Browser routes have a budget per client address (the socket's peer, or behind a trusted proxy the
  address it names in X-Forwarded-For), checked before any database work: the flooding address gets
  429 while another address still gets through.
- Failed attempts are announced (auth.failed, then webhook and activity entry) only within a budget
  per environment and client address, and one per environment: a flood of failures is answered,
  but not multiplied into webhooks.

Clocks are frozen by hand (no assertion depends on how long the test takes). Another client address
is a second loopback address (127.0.0.2) the test connects from, or a trusted proxy's header.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractQueue
from prometheus_client import REGISTRY

from auth_gateway.http.ratelimit import RATE_LIMITS
from auth_gateway.operations.failure_announcements import FAILURE_ANNOUNCEMENTS

from ..support.polling import eventually
from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

OTHER_ADDRESS = "127.0.0.2"  # on the loopback interface like 127.0.0.1, so a real second peer
NOW = 1_900_000_020.0  # a frozen clock, well inside one minute's window


def freeze_limits(gw: Gateway, now: float = NOW) -> None:
    limits = gw.client.app[RATE_LIMITS]
    for limiter in (limits.secret, limits.public, limits.client):
        limiter.clock = lambda: now


@asynccontextmanager
async def client_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from ``address``."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def connect_path(gw: Gateway, key: str = "nope", connection_id: str = "c1") -> str:
    return f"/oauth/connect/{key}?public_key={gw.public_key}&connection_id={connection_id}"


async def test_a_public_key_flood_leaves_the_backend_its_budget(start_gateway: StartGateway) -> None:
    async with start_gateway(
        rate_limit_per_minute=5,
        public_rate_limit_per_minute=5,
        client_rate_limit_per_minute=0,  # only the environment's budgets here
        public_key_connect="allowed",
    ) as gw:
        freeze_limits(gw)
        for _ in range(12):  # the audit's /oauth/connect flood, with nothing but the public key
            resp = await gw.client.get(connect_path(gw), allow_redirects=False)
            resp.release()
        # The browsers' budget is spent (the popup route answers with its page, this one with the envelope)...
        resp = await gw.client.post(f"/api-auth/api-key/nope?public_key={gw.public_key}&connection_id=c1", json={})
        assert resp.status == 429
        assert_envelope(await resp.json(), "too_many_request")
        assert resp.headers["X-RateLimit-Limit"] == "5"
        assert resp.headers["X-RateLimit-Remaining"] == "0"
        assert int(resp.headers["Retry-After"]) >= 1

        for _ in range(5):  # ...and the backend still has all of its own
            resp = await gw.client.get("/config", headers=gw.auth)
            assert resp.status == 200, await resp.text()
            assert resp.headers["X-RateLimit-Limit"] == "5"
        resp = await gw.client.get("/config", headers=gw.auth)
        assert resp.status == 429  # and it is a budget of its own, with Nango's envelope
        assert_envelope(await resp.json(), "too_many_request")


async def test_the_flooding_address_gets_429_and_another_gets_through(start_gateway: StartGateway, db: Any) -> None:
    async with start_gateway(client_rate_limit_per_minute=5, public_key_connect="allowed") as gw:
        await create_integration(gw, "posthog", "ph")
        freeze_limits(gw)
        statuses = []
        for _ in range(8):
            resp = await gw.client.get(connect_path(gw), allow_redirects=False)
            statuses.append(resp.status)
            if resp.status == 429:
                assert_envelope(await resp.json(), "too_many_request")
                assert resp.headers["X-RateLimit-Limit"] == "5"
                assert resp.headers["X-RateLimit-Remaining"] == "0"
                assert int(resp.headers["Retry-After"]) >= 1
                assert resp.headers["Access-Control-Allow-Origin"] == "*"  # the browser can read why
            resp.release()
        assert 429 not in statuses[:5]
        assert statuses[5:] == [429, 429, 429]
        # Refused before any work: an unknown session token is not even looked up (else 401).
        resp = await gw.client.post("/api-auth/api-key/ph?connect_session_token=nango_connect_session_x", json={})
        assert resp.status == 429
        assert_envelope(await resp.json(), "too_many_request")
        before = await db["connections"].count_documents({})
        resp = await gw.client.post(
            f"/api-auth/api-key/ph?public_key={gw.public_key}&connection_id=blocked", json={"apiKey": "k"}
        )
        assert resp.status == 429
        assert await db["connections"].count_documents({}) == before

        async with client_from(OTHER_ADDRESS) as other:
            async with other.post(
                f"{gw.url}/api-auth/api-key/ph?public_key={gw.public_key}&connection_id=mine", json={"apiKey": "k"}
            ) as resp:
                assert resp.status == 200, await resp.text()
            async with other.get(f"{gw.url}{connect_path(gw)}", allow_redirects=False) as resp:
                assert resp.status != 429
        resp = await gw.client.get("/config", headers=gw.auth)  # the backend, from the flooding address too
        assert resp.status == 200


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(start_gateway: StartGateway) -> None:
    async with start_gateway(
        client_rate_limit_per_minute=3, trusted_proxies="127.0.0.1/32", public_key_connect="allowed"
    ) as gw:
        freeze_limits(gw)

        async def status_as(forwarded_for: str) -> int:
            resp = await gw.client.get(connect_path(gw), headers={"X-Forwarded-For": forwarded_for})
            resp.release()
            return resp.status

        # Twenty browsers behind the proxy, a few requests each: nobody is refused.
        for round_ in range(3):
            statuses = [await status_as(f"203.0.113.{n}") for n in range(20)]
            assert 429 not in statuses, (round_, statuses)
        # The fourth from one of them is; the others are not affected.
        assert await status_as("203.0.113.7") == 429
        assert await status_as("198.51.100.1") != 429
        # A browser cannot choose its address: the proxy appends the one it saw, and that one counts.
        statuses = [await status_as(f"192.0.2.{n}, 198.51.100.2") for n in range(5)]
        assert statuses[:3].count(429) == 0
        assert statuses[3:] == [429, 429]
        resp = await gw.client.get("/config", headers=gw.auth)
        assert resp.status == 200

    # Without a trusted proxy the header is ignored: every request is the socket's peer's.
    async with start_gateway(client_rate_limit_per_minute=3, public_key_connect="allowed") as gw:
        freeze_limits(gw)
        statuses = []
        for n in range(5):
            resp = await gw.client.get(connect_path(gw), headers={"X-Forwarded-For": f"203.0.113.{n}"})
            statuses.append(resp.status)
            resp.release()
        assert statuses[3:] == [429, 429]


class AuthFailedEvents:
    """auth.failed events on the bus, counted once everything the gateway wrote to its outbox is out."""

    def __init__(self, queue: AbstractQueue, db: Any) -> None:
        self._queue = queue
        self._db = db
        self.events: list[dict[str, Any]] = []

    async def settled(self) -> int:
        async def outbox_empty() -> bool:
            return await self._db["outbox"].count_documents({}) == 0

        await eventually(outbox_empty, what="the outbox published")
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            self.events.append(json.loads(message.body))
        return len(self.events)


@pytest.fixture
async def auth_failed(amqp: Any, namespace: str, db: Any) -> AsyncIterator[AuthFailedEvents]:
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", "topic", durable=True)
    queue = await channel.declare_queue(f"{namespace}.test.auth-failed", auto_delete=True)
    await queue.bind(exchange, routing_key="auth.failed")
    yield AuthFailedEvents(queue, db)
    await channel.close()


def suppressed(scope: str) -> float:
    return REGISTRY.get_sample_value("keyway_auth_failed_suppressed_total", {"scope": scope}) or 0.0


async def test_a_flood_of_failed_attempts_is_answered_but_announced_within_a_bound(
    start_gateway: StartGateway, auth_failed: AuthFailedEvents
) -> None:
    async with start_gateway(
        auth_failed_events_per_client_per_minute=3,
        auth_failed_events_per_minute=5,
        client_rate_limit_per_minute=0,
        public_rate_limit_per_minute=0,
        trusted_proxies="127.0.0.1/32",
        public_key_connect="allowed",
    ) as gw:
        clock = [1000.0]
        gw.client.app[FAILURE_ANNOUNCEMENTS].clock = lambda: clock[0]
        client_before, environment_before = suppressed("client"), suppressed("environment")

        # Twenty failed attempts from one browser, each answered 4xx, three announced.
        for n in range(20):
            resp = await gw.client.post(
                f"/api-auth/api-key/nope?public_key={gw.public_key}&connection_id=c{n}", json={"apiKey": "k"}
            )
            assert resp.status == 400
            assert_envelope(await resp.json(), "unknown_provider_config")
        for _ in range(5):  # the popup route announces through the same budget
            resp = await gw.client.get(connect_path(gw), allow_redirects=False)
            assert resp.status >= 400
            resp.release()
        assert await auth_failed.settled() == 3
        assert suppressed("client") - client_before == 22

        # From many addresses (through the trusted proxy): the environment's bound holds them all.
        for n in range(30):
            resp = await gw.client.post(
                f"/api-auth/api-key/nope?public_key={gw.public_key}&connection_id=d{n}",
                json={"apiKey": "k"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            assert resp.status == 400
        assert await auth_failed.settled() == 5
        assert suppressed("environment") - environment_before == 28

        # A budget, not a mute: a minute later failures are announced again.
        clock[0] += 60
        resp = await gw.client.post(
            f"/api-auth/api-key/nope?public_key={gw.public_key}&connection_id=later", json={"apiKey": "k"}
        )
        assert resp.status == 400
        assert await auth_failed.settled() == 6
        assert auth_failed.events[-1]["data"]["connection_id"] == "later"
