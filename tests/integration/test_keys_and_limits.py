"""Key rotation without downtime, rate limiting with Nango's headers, and the limiters' bounds.

The attacks on the limits (a public-key flood, many addresses, failed attempts) are in
test_browser_limits.py.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from auth_gateway.app import create_app
from auth_gateway.http.ratelimit import RateLimiter
from auth_gateway.operations.failure_announcements import TokenBuckets
from auth_gateway.settings import GatewaySettings
from keyway_shared.cipher import CredentialCipher
from keyway_shared.store import EnvironmentStore

from ..support.polling import eventually
from .gateway_app import StartGateway
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


async def test_secret_and_public_key_rotation(
    start_gateway: StartGateway, service_settings: dict[str, Any], db: Any, encryption_key: str
) -> None:
    async with start_gateway() as gw:
        resp = await gw.client.post("/environment/rotate-key", json={"type": "secret"}, headers=gw.auth)
        assert resp.status == 409  # the test pins its keys like an operator would
        assert_envelope(await resp.json(), "key_pinned")
    # An unpinned environment rotates through the API.
    settings = GatewaySettings(**service_settings, encryption_key=encryption_key)
    async with TestClient(TestServer(create_app(settings))) as client:
        env = await EnvironmentStore(db, CredentialCipher(current_key=encryption_key)).get("dev")
        assert env is not None
        old = {"Authorization": f"Bearer {env.secret_key}"}
        resp = await client.post("/environment/rotate-key", json={"type": "secret"}, headers=old)
        pending = (await resp.json())["key"]
        uuid.UUID(pending)
        new = {"Authorization": f"Bearer {pending}"}
        assert (await client.get("/config", headers=old)).status == 200  # both work while pending
        assert (await client.get("/config", headers=new)).status == 200
        resp = await client.get("/environment", headers=new)
        assert (await resp.json())["environment"]["pending_secret_key"] == pending
        resp = await client.post("/environment/activate-key", json={"type": "secret"}, headers=new)
        assert await resp.json() == {"success": True}
        resp = await client.get("/config", headers=old)
        assert resp.status == 401  # the old key is refused once the new one is active
        assert (await client.get("/config", headers=new)).status == 200
        resp = await client.post("/environment/activate-key", json={"type": "secret"}, headers=new)
        assert_envelope(await resp.json(), "no_pending_key")

        resp = await client.post("/environment/rotate-key", json={"type": "public"}, headers=new)
        pending_public = (await resp.json())["key"]
        resp = await client.post("/environment/revert-key", json={"type": "public"}, headers=new)
        assert resp.status == 200
        resp = await client.post(
            "/api-auth/api-key/x?connection_id=c&public_key=" + pending_public, json={"apiKey": "k"}
        )
        assert_envelope(await resp.json(), "unknown_user_account")  # reverted: never valid again
        resp = await client.post("/environment/rotate-key", json={"type": "both"}, headers=new)
        assert_envelope(await resp.json(), "invalid_body")


async def test_rate_limit_headers_and_429(start_gateway: StartGateway) -> None:
    async with start_gateway(rate_limit_per_minute=5) as gw:
        statuses = []
        for _ in range(7):
            resp = await gw.client.get("/config", headers=gw.auth)
            statuses.append(resp.status)
            assert resp.headers["X-RateLimit-Limit"] == "5"
            assert int(resp.headers["X-RateLimit-Reset"]) >= int(time.time())
        # a window boundary may fall inside the loop; at least one request must have been refused
        assert statuses.count(429) >= 1
        resp = await gw.client.get("/config", headers=gw.auth)
        if resp.status == 429:
            assert_envelope(await resp.json(), "too_many_request")
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.headers["X-RateLimit-Remaining"] == "0"


def test_fixed_window_counts_and_resets() -> None:
    limiter = RateLimiter(limit=2, window_seconds=60)
    first = limiter.hit("env:dev", now=120.0)
    assert (first.allowed, first.remaining, first.reset_at) == (True, 1, 180)
    assert limiter.hit("env:dev", now=150.0).allowed
    assert not limiter.hit("env:dev", now=179.9).allowed
    assert limiter.hit("env:prod", now=179.9).allowed  # environments do not share a budget
    assert limiter.hit("env:dev", now=180.0).allowed  # a new window


def test_a_limiter_keeps_a_bounded_number_of_keys() -> None:
    limiter = RateLimiter(limit=1, max_keys=10)
    assert limiter.hit("k0", now=0).allowed
    assert not limiter.hit("k0", now=0).allowed
    for n in range(1, 30):  # a flood spread over many addresses
        limiter.hit(f"k{n}", now=0)
    assert not limiter.hit("k29", now=0).allowed  # the latest are still counted
    assert limiter.hit("k0", now=0).allowed  # the oldest were forgotten: memory stays bounded


def test_announcement_buckets_refill_and_tell_the_first_refusal() -> None:
    buckets = TokenBuckets(per_minute=2)
    assert buckets.take("dev 203.0.113.1", now=0) == (True, False)
    assert buckets.take("dev 203.0.113.1", now=0) == (True, False)
    assert buckets.take("dev 203.0.113.1", now=0) == (False, True)  # the one that logs
    assert buckets.take("dev 203.0.113.1", now=10) == (False, False)
    assert buckets.take("dev 203.0.113.2", now=10) == (True, False)  # clients do not share a bucket
    assert buckets.take("dev 203.0.113.1", now=30) == (True, False)  # one token per 30 s
    assert buckets.take("dev 203.0.113.1", now=30) == (False, True)
    assert TokenBuckets(per_minute=0).take("dev x", now=0) == (True, False)  # 0: no limit


async def test_a_key_change_on_one_replica_reaches_the_others_cache(
    service_settings: dict[str, Any], db: Any, amqp: Any, encryption_key: str
) -> None:
    def settings() -> GatewaySettings:
        return GatewaySettings(**service_settings, encryption_key=encryption_key, environment_cache_seconds=600)

    async with (
        TestClient(TestServer(create_app(settings()))) as one,
        TestClient(TestServer(create_app(settings()))) as two,
    ):
        env = await EnvironmentStore(db, CredentialCipher(current_key=encryption_key)).get("dev")
        assert env is not None
        old = {"Authorization": f"Bearer {env.secret_key}"}

        async def both_ready() -> bool:
            statuses = [(await c.get("/readyz")).status for c in (one, two)]
            return statuses == [200, 200]

        await eventually(both_ready, what="both replicas connected to the broker")
        assert (await two.get("/config", headers=old)).status == 200  # replica two caches the key now
        pending = (await (await one.post("/environment/rotate-key", json={"type": "secret"}, headers=old)).json())[
            "key"
        ]
        activated = await one.post(
            "/environment/activate-key", json={"type": "secret"}, headers={"Authorization": f"Bearer {pending}"}
        )
        assert activated.status == 200

        async def refused_on_two() -> bool:
            return (await two.get("/config", headers=old)).status == 401

        await eventually(refused_on_two, timeout=5, what="replica two to drop the old key (cache TTL is 600 s)")
