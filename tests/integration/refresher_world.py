"""A world for the token-refresher's tests: a gateway, a refresher and, on request, the webhook
dispatcher and activity log, in process on the real broker and MongoDB-wire server, against the
strict OAuth2 server (rotating refresh tokens; reuse revokes the grant) that here also mints grants
directly. Tests start one through the ``start_refresher_world`` fixture.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from activity_log.app import create_app as create_activity_app
from activity_log.settings import ActivityLogSettings
from keyway_shared.clock import SYSTEM_CLOCK, Clock
from token_refresher.app import create_app as create_refresher_app
from token_refresher.settings import RefresherSettings
from webhook_dispatcher.app import create_app as create_dispatcher_app
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import running
from ..support.oauth_provider import Grant, OAuthProvider
from ..support.receiver import WebhookReceiver
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml


@dataclass
class RefreshProvider(OAuthProvider):
    """The strict provider, plus: grants minted directly (no browser flow), a 429 mode with
    Retry-After, an optional delay before the token endpoint acts, a record of every refresh, and
    (``expiring`` off) access tokens answered without ``expires_in``, as some providers do."""

    delay: float = 0.0
    expiring: bool = True
    # Refresh tokens unused this long are refused (Microsoft: 90 days of inactivity), by ``clock``.
    idle_after: timedelta | None = None
    clock: Clock = SYSTEM_CLOCK
    refresh_issued: dict[str, datetime] = field(default_factory=dict)  # refresh token -> when issued
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

    def _issue(self, grant_id: str) -> dict[str, Any]:
        body = super()._issue(grant_id)
        if not self.expiring:
            del body["expires_in"]
        if "refresh_token" in body:
            self.refresh_issued[body["refresh_token"]] = self.clock.now()
        return body

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
        issued = self.refresh_issued.get(form.get("refresh_token", ""))
        if self.idle_after is not None and issued is not None and self.clock.now() - issued > self.idle_after:
            # As Microsoft answers (AADSTS700082) a refresh token left unused past its inactivity limit.
            description = "AADSTS700082: The refresh token has expired due to inactivity."
            return web.json_response({"error": "invalid_grant", "error_description": description}, status=400)
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
    refresher_settings: RefresherSettings
    receiver: WebhookReceiver | None = None
    grants: dict[str, str] = field(default_factory=dict)  # connection id -> grant id

    async def import_connection(self, connection_id: str, *, expires_in: int | None = 3, key: str = "oauth") -> None:
        """Import a freshly minted grant through ``POST /connection``; ``expires_in`` None: no expiry."""
        access, refresh = self.provider.mint()
        self.grants[connection_id] = self.provider.refresh_index[refresh]
        body: dict[str, Any] = {
            "connection_id": connection_id,
            "provider_config_key": key,
            "access_token": access,
            "refresh_token": refresh,
        }
        body |= {"expires_in": expires_in} if expires_in is not None else {"no_expiration": True}
        resp = await self.gw.client.post("/connection", json=body, headers=self.gw.auth)
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


# The refresher's settings in every world, short enough to watch; a test's own keywords override them.
REFRESHER_SETTINGS: dict[str, Any] = {
    "egress_allowlist": "127.0.0.0/8",
    "refresh_lease_seconds": 5.0,
    "provider_timeout_seconds": 3.0,
    "outbox_sweep_seconds": 0.5,
    "outbox_stale_seconds": 1.0,
    "shutdown_grace_seconds": 5.0,
}


@asynccontextmanager
async def refresher_world(
    start_gateway: StartGateway,
    common: dict[str, Any],
    tmp_path: Path,
    db: Any,
    *,
    consumers: bool = False,
    templates: dict[str, dict[str, Any]] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    idle_days: int | None = None,
    **refresher: Any,
) -> AsyncIterator[World]:
    """Gateway (creates the integration and imports connections), refresher and, with ``consumers``,
    the webhook dispatcher and activity log with a receiver set as the environment's webhook URL.
    ``clock``: the refresher's (the gateway keeps the real one; the provider's idle rule goes by it).
    ``idle_days``: the provider revokes refresh tokens unused that long, and its template says so.

    ``common``: the settings of every service here (database, bus namespace, encryption key).
    """
    idle_after = timedelta(days=idle_days) if idle_days is not None else None
    provider = await RefreshProvider(token_lifetime=3, idle_after=idle_after, clock=clock).start()
    template = provider.template() | ({"refresh_token_idle_days": idle_days} if idle_days is not None else {})
    providers_file = providers_yaml(tmp_path, {"test-oauth2": template, **(templates or {})})
    async with AsyncExitStack() as stack:
        stack.push_async_callback(provider.stop)
        gw = await stack.enter_async_context(
            start_gateway(providers_file=providers_file, egress_allowlist="127.0.0.0/8", provider_timeout_seconds=3.0)
        )
        for key, template in [("oauth", "test-oauth2"), *((name, name) for name in templates or {})]:
            await create_integration(gw, template, key, **provider.integration_fields)
        receiver = None
        if consumers:
            receiver = await WebhookReceiver().start()
            stack.push_async_callback(receiver.stop)
            resp = await gw.client.patch(
                "/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=gw.auth
            )
            assert resp.status == 200, await resp.text()
            await stack.enter_async_context(
                running(create_dispatcher_app(DispatcherSettings(**common, egress_allowlist="127.0.0.1/32")))
            )
            await stack.enter_async_context(running(create_activity_app(ActivityLogSettings(**common))))
        settings = RefresherSettings(**(common | REFRESHER_SETTINGS | {"providers_file": providers_file} | refresher))
        app = await stack.enter_async_context(running(create_refresher_app(settings, clock=clock)))
        yield World(gw=gw, provider=provider, db=db, refresher=app, refresher_settings=settings, receiver=receiver)


class StartRefresherWorld(Protocol):
    """The ``start_refresher_world`` fixture: :func:`refresher_world` on this test's database, broker and namespace.

    Keywords are the test's own: ``consumers``, ``templates``, ``clock``, ``idle_days`` and the
    refresher's settings.
    """

    def __call__(self, **settings: Any) -> AbstractAsyncContextManager[World]: ...
