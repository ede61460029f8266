"""The refresh loop in the token-refresher, in process, on the real broker and MongoDB-wire server,
against the strict OAuth2 server (rotating refresh tokens; reuse revokes the grant).

Proves: connections are refreshed in the background before they expire and their events are
published (outbox emptied); an idle loop sleeps instead of polling and a ``connection.*`` event
wakes it for an earlier due time; on shutdown it stops claiming, lets refreshes in flight finish
and leaves no lease behind.

The helpers here (a provider that mints grants directly, a world of gateway + refresher + optional
webhook dispatcher and activity log) are shared with the other refresher tests.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from activity_log.app import create_app as create_activity_app
from activity_log.settings import ActivityLogSettings
from keyway_shared.events import utcnow
from token_refresher.app import REFRESHER
from token_refresher.app import create_app as create_refresher_app
from token_refresher.settings import RefresherSettings
from webhook_dispatcher.app import create_app as create_dispatcher_app
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import running
from ..support.oauth_provider import Grant, OAuthProvider
from ..support.polling import eventually
from ..support.receiver import WebhookReceiver
from .gateway_app import Gateway, running_gateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@dataclass
class RefreshProvider(OAuthProvider):
    """The strict provider, plus: grants minted directly (no browser flow), a 429 mode with
    Retry-After, an optional delay before the token endpoint acts, and a record of every refresh."""

    delay: float = 0.0
    retry_after: int = 120
    refreshes: list[tuple[str, float]] = field(default_factory=list)  # (grant id, when) per success
    dropped: int = 0  # requests whose client hung up during the delay (never acted on)
    delayed: int = 0  # requests waiting out the delay right now

    def mint(self) -> tuple[str, str]:
        """A new grant: its access token (living ``token_lifetime``) and refresh token."""
        grant_id = secrets.token_hex(8)
        self.grants[grant_id] = Grant(client_id=self.client_id, scope="")
        body = self._issue(grant_id)
        return str(body["access_token"]), str(body["refresh_token"])

    def grant_of(self, refresh_token: str) -> Grant:
        return self.grants[self.refresh_index[refresh_token]]

    def refresh_counts(self) -> dict[str, int]:
        """How often each refresh token was presented to the token endpoint."""
        counts: dict[str, int] = {}
        for request in self.token_requests:
            if request.get("grant_type") == "refresh_token":
                counts[request["refresh_token"]] = counts.get(request["refresh_token"], 0) + 1
        return counts

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if self.token_mode == "rate_limited":
            self.token_requests.append({"grant_type": "rate_limited"})
            return web.json_response(
                {"error": "rate_limited"}, status=429, headers={"Retry-After": str(self.retry_after)}
            )
        if self.delay:
            self.delayed += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.delayed -= 1
            if request.transport is None or request.transport.is_closing():
                self.dropped += 1  # the caller died meanwhile: act as if it never arrived
                return web.Response(status=499)
        return await super()._token(request)

    def _refresh(self, form: dict[str, str]) -> web.Response:
        grant_id = self.refresh_index.get(form.get("refresh_token", ""))
        response = super()._refresh(form)
        if response.status == 200 and grant_id is not None:
            self.refreshes.append((grant_id, time.time()))
        return response


@dataclass
class World:
    gw: Gateway
    provider: RefreshProvider
    db: Any
    refresher: web.Application
    receiver: WebhookReceiver | None = None
    grants: dict[str, str] = field(default_factory=dict)  # connection id -> grant id

    async def import_connection(self, connection_id: str, *, expires_in: int = 3, key: str = "oauth") -> None:
        access, refresh = self.provider.mint()
        self.grants[connection_id] = self.provider.refresh_index[refresh]
        resp = await self.gw.client.post(
            "/connection",
            json={
                "connection_id": connection_id,
                "provider_config_key": key,
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": expires_in,
            },
            headers=self.gw.auth,
        )
        assert resp.status == 201, await resp.text()

    async def doc(self, connection_id: str) -> dict[str, Any]:
        found = await self.db["connections"].find_one({"connection_id": connection_id})
        assert found is not None
        return found

    async def credentials(self, connection_id: str) -> dict[str, Any]:
        resp = await self.gw.client.get(
            f"/connection/{connection_id}?provider_config_key=oauth&refresh_token=true", headers=self.gw.auth
        )
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = (await resp.json())["credentials"]
        return body

    def refreshes_of(self, connection_id: str) -> int:
        grant = self.grants[connection_id]
        return sum(1 for g, _ in self.provider.refreshes if g == grant)


def refresher_settings(
    *, mongo_url: str, db_name: str, amqp_url: str, namespace: str, encryption_key: str, **extra: Any
) -> RefresherSettings:
    values: dict[str, Any] = {
        "mongodb_url": mongo_url,
        "mongodb_database": db_name,
        "amqp_url": amqp_url,
        "bus_namespace": namespace,
        "encryption_key": encryption_key,
        "queue_type": "classic",
        "egress_allowlist": "127.0.0.0/8",
        "refresh_lease_seconds": 5.0,
        "provider_timeout_seconds": 3.0,
        "outbox_sweep_seconds": 0.5,
        "outbox_stale_seconds": 1.0,
        "shutdown_grace_seconds": 5.0,
    }
    return RefresherSettings(**(values | extra))


@asynccontextmanager
async def refresher_world(
    *,
    tmp_path: Path,
    mongo_url: str,
    db_name: str,
    db: Any,
    amqp_url: str,
    namespace: str,
    encryption_key: str,
    consumers: bool = False,
    templates: dict[str, dict[str, Any]] | None = None,
    **refresher: Any,
) -> AsyncIterator[World]:
    """Gateway (creates the integration and imports connections), refresher and, with ``consumers``,
    the webhook dispatcher and activity log with a receiver set as the environment's webhook URL."""
    provider = await RefreshProvider(token_lifetime=3).start()
    names = {"mongo_url": mongo_url, "db_name": db_name, "amqp_url": amqp_url, "namespace": namespace}
    providers_file = tmp_path / "providers.yaml"
    providers_file.write_text(yaml.safe_dump({"test-oauth2": provider.template(), **(templates or {})}))
    async with AsyncExitStack() as stack:
        stack.push_async_callback(provider.stop)
        gw = await stack.enter_async_context(
            running_gateway(
                **names,
                encryption_key=encryption_key,
                providers_file=str(providers_file),
                egress_allowlist="127.0.0.0/8",
                provider_timeout_seconds=3.0,
            )
        )
        for key, template in [("oauth", "test-oauth2"), *((name, name) for name in templates or {})]:
            resp = await gw.client.post(
                "/config",
                json={
                    "provider": template,
                    "provider_config_key": key,
                    "oauth_client_id": provider.client_id,
                    "oauth_client_secret": provider.client_secret,
                },
                headers=gw.auth,
            )
            assert resp.status == 200, await resp.text()
        receiver = None
        if consumers:
            receiver = await WebhookReceiver().start()
            stack.push_async_callback(receiver.stop)
            resp = await gw.client.patch(
                "/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=gw.auth
            )
            assert resp.status == 200, await resp.text()
            common = {
                "mongodb_url": mongo_url,
                "mongodb_database": db_name,
                "amqp_url": amqp_url,
                "bus_namespace": namespace,
                "encryption_key": encryption_key,
                "queue_type": "classic",
            }
            await stack.enter_async_context(
                running(create_dispatcher_app(DispatcherSettings(**common, egress_allowlist="127.0.0.1/32")))
            )
            await stack.enter_async_context(running(create_activity_app(ActivityLogSettings(**common))))
        settings = refresher_settings(
            **names, encryption_key=encryption_key, providers_file=str(providers_file), **refresher
        )
        app = await stack.enter_async_context(running(create_refresher_app(settings)))
        yield World(gw=gw, provider=provider, db=db, refresher=app, receiver=receiver)


@pytest.fixture
async def world(
    tmp_path: Path, mongo_url: str, db_name: str, db: Any, amqp_url: str, namespace: str, amqp: Any, encryption_key: str
) -> AsyncIterator[World]:
    async with refresher_world(
        tmp_path=tmp_path,
        mongo_url=mongo_url,
        db_name=db_name,
        db=db,
        amqp_url=amqp_url,
        namespace=namespace,
        encryption_key=encryption_key,
    ) as the_world:
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
async def idle_world(
    tmp_path: Path, mongo_url: str, db_name: str, db: Any, amqp_url: str, namespace: str, amqp: Any, encryption_key: str
) -> AsyncIterator[World]:
    async with refresher_world(
        tmp_path=tmp_path,
        mongo_url=mongo_url,
        db_name=db_name,
        db=db,
        amqp_url=amqp_url,
        namespace=namespace,
        encryption_key=encryption_key,
        refresh_max_sleep_seconds=30.0,
    ) as the_world:
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
    tmp_path: Path, mongo_url: str, db_name: str, db: Any, amqp_url: str, namespace: str, amqp: Any, encryption_key: str
) -> None:
    async with refresher_world(
        tmp_path=tmp_path,
        mongo_url=mongo_url,
        db_name=db_name,
        db=db,
        amqp_url=amqp_url,
        namespace=namespace,
        encryption_key=encryption_key,
    ) as world:
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
