"""Contract tests: Keyway's real templates of the 30 most-used providers against fakes that answer
as each provider documents (issue #18, "how it is shown").

For each row of providers_table.py, the built-in template (``load_catalog().raw(name)``) is copied
with only its ``https://`` origins moved onto the fake (fake_provider.py), and a gateway loads it
under the provider's own name. Then, as the frontend SDK does:

- connect: the auth mode's flow through the gateway; the consent page, the token request, the calls
  the connect makes (verification, post-connection enrichment) reach the documented URLs with the
  documented fields, and the connection holds the fields Nango fills;
- refresh: ``GET /connection/{id}?force_refresh=true`` makes the documented refresh grant at the
  documented token URL, and the stored expiry is the documented lifetime (so the refresher renews
  before the grant dies); a token that does not expire is left alone;
- proxy: a documented endpoint path reaches the documented upstream URL with the documented
  authentication.

A failure names the provider and what differs from the documentation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp.connector
import pytest

from keyway_shared import egress
from keyway_shared.providers import load_catalog

from ..integration.flow_helpers import get_connection, run_popup
from ..integration.gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from ..support.github_app_provider import rsa_key_pem
from ..support.polling import eventually
from .fake_provider import FakeProviders, Seen, rewrite_origins
from .providers_table import BY_NAME, CLIENT_ID, CLIENT_SECRET, CODE, ROWS, Exchange, Row, answers_for

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

KEY = "contract"
CONNECTION_ID = "contract-1"
NAMES = [row.name for row in ROWS]


@dataclass
class World:
    row: Row
    fake: FakeProviders
    gw: Gateway


def _integration_fields(row: Row, fake: FakeProviders) -> dict[str, Any]:
    if row.auth_mode == "APP":
        pem, _public = rsa_key_pem()
        app = dict(row.integration)
        app["oauth_client_secret"] = base64.b64encode(pem.encode()).decode()
        app["app_link"] = rewrite_origins(app["app_link"], fake.base)
        return app
    if row.auth_mode in {"API_KEY", "BASIC"}:
        return dict(row.integration)
    fields: dict[str, Any] = {"oauth_client_id": CLIENT_ID, "oauth_client_secret": CLIENT_SECRET}
    if row.scopes:
        fields["oauth_scopes"] = row.scopes
    return {**fields, **row.integration}


@pytest.fixture
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    row = BY_NAME[request.param]
    fake = await FakeProviders(answers=answers_for(row), tls_hosts=list(row.tls_hosts)).start(tmp_path)
    if row.tls_hosts:
        # The origins a provider's answer names (instance_url...) must be https: they resolve to the
        # fake's HTTPS door, whose throwaway authority the gateway's client sessions trust here.
        monkeypatch.setattr(egress, "DefaultResolver", fake.resolver)
        monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", fake.client_ssl_context())
    template = rewrite_origins(load_catalog().raw(row.name), fake.base)
    try:
        async with start_gateway(
            providers_file=providers_yaml(tmp_path, {row.name: template}),
            egress_allowlist="127.0.0.0/8",
            public_key_connect="allowed",
            provider_timeout_seconds=5.0,
        ) as gw:
            fake.setup_url = f"{gw.url}/app-auth/connect"
            await create_integration(gw, row.name, KEY, **_integration_fields(row, fake))
            yield World(row, fake, gw)
    finally:
        await fake.stop()


def _query(params: dict[str, str]) -> str:
    return "".join(f"&params[{quote(k)}]={quote(v)}" for k, v in params.items())


async def connect(world: World) -> None:
    """The row's auth mode through the gateway, as @nangohq/frontend does it; fails on any error."""
    row, gw = world.row, world.gw
    base = f"connection_id={CONNECTION_ID}{_query(dict(row.params))}"
    if row.auth_mode in {"OAUTH2", "APP"}:
        result = await run_popup(gw, KEY, base)
        assert result.frame.get("message_type") == "success", (
            f"{row.name}: connect failed: {result.frame} (requests the fake saw: {world.fake.seen})"
        )
        return
    route = {"API_KEY": "/api-auth/api-key/", "BASIC": "/api-auth/basic/", "TBA": "/auth/tba/"}[row.auth_mode]
    resp = await gw.client.post(f"{route}{KEY}?{base}&public_key={gw.public_key}", json=dict(row.credentials))
    assert resp.status == 200, f"{row.name}: connect failed: {resp.status} {await resp.text()}"


def _expires_in(credentials: dict[str, Any]) -> float | None:
    expires_at = credentials.get("expires_at")
    if not expires_at:
        return None
    at = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
    return (at - datetime.now(UTC)).total_seconds()


def _check_client_auth(row: Row, exchange: Exchange, seen: Seen) -> None:
    auth = seen.headers.get("authorization", "")
    fields = seen.fields()
    user = f"{CLIENT_SECRET}:" if exchange.basic_user_only else f"{CLIENT_ID}:{CLIENT_SECRET}"
    basic = "Basic " + base64.b64encode(user.encode()).decode()
    in_body = fields.get("client_id") == CLIENT_ID and fields.get("client_secret") == CLIENT_SECRET
    if exchange.client_auth == "jwt":
        assert auth.startswith("Bearer "), f"{row.name}: no app JWT: {auth[:20]!r}"
        assert auth.count(".") == 2, f"{row.name}: not an app JWT: {auth[:20]!r}"
    elif exchange.client_auth == "basic":
        assert auth == basic, (
            f"{row.name}: the documented client auth is HTTP Basic ({user.split(':')[0]}:...); got Authorization "
            f"{auth.split(' ')[0] or 'none'!r} and fields {sorted(fields)}"
        )
    elif exchange.client_auth == "body":
        assert in_body, f"{row.name}: client_id and client_secret must be in the request body: {sorted(fields)}"
    else:
        assert auth == basic or in_body, f"{row.name}: no client authentication in {sorted(fields)}"


def _check_exchange(row: Row, exchange: Exchange, seen: list[Seen], *, what: str) -> Seen:
    posts = [s for s in seen if s.url == exchange.url and s.method == "POST"]
    assert posts, f"{row.name}: no {what} reached the documented {exchange.url}; the fake saw {seen}"
    last = posts[-1]
    fields = last.fields()
    wrong = {k: fields.get(k) for k, v in exchange.fields.items() if fields.get(k) != v}
    assert not wrong, f"{row.name}: {what} fields differ from the documented {dict(exchange.fields)}: got {wrong}"
    _check_client_auth(row, exchange, last)
    return last


@pytest.mark.parametrize("world", NAMES, indirect=True)
async def test_connect_and_enrich(world: World) -> None:
    row, fake, gw = world.row, world.fake, world.gw
    await connect(world)

    if row.authorize_url:
        pages = fake.requests_to(row.authorize_url, "GET")
        assert pages, f"{row.name}: the consent page is not the documented {row.authorize_url}; saw {fake.seen}"
        page = pages[-1].query
        wrong = {k: page.get(k) for k, v in row.authorize_params.items() if page.get(k) != v}
        assert not wrong, f"{row.name}: consent page parameters differ from {dict(row.authorize_params)}: {wrong}"
        if row.auth_mode == "OAUTH2":
            assert page.get("redirect_uri") == gw.settings.callback_url
    if row.token is not None:
        grant = _check_exchange(row, row.token, fake.seen, what="token request")
        if row.auth_mode == "OAUTH2":
            assert grant.fields().get("code") == CODE
            assert grant.fields().get("redirect_uri") == gw.settings.callback_url, (
                f"{row.name}: the code exchange must repeat the redirect_uri"
            )
    for method, url in row.connect_calls:
        calls = fake.requests_to(url, method)
        assert calls, f"{row.name}: connect made no {method} {url}; saw {fake.seen}"
        if row.proxy is not None:  # the key is checked with the credentials the API documents
            _check_auth_header(row, calls[-1], *row.proxy.auth_header)

    async def config_filled() -> dict[str, Any] | None:
        connection = await get_connection(gw, CONNECTION_ID, KEY)
        config = connection.get("connection_config") or {}
        return connection if all(config.get(k) == v for k, v in row.expected_config.items()) else None

    try:
        connection = await eventually(config_filled, timeout=5, interval=0.2, what="the enriched connection config")
    except AssertionError:
        config = (await get_connection(gw, CONNECTION_ID, KEY)).get("connection_config")
        missing = {k: v for k, v in row.expected_config.items() if (config or {}).get(k) != v}
        enrichment = [f"{a.method} {a.url}" for a in row.enrichment]
        pytest.fail(
            f"{row.name}: connection_config lacks what Nango fills {missing}; has {config}; "
            f"documented enrichment calls {enrichment}; the fake saw {fake.seen}"
        )
    credentials = connection["credentials"]
    if row.access_token:
        token = credentials.get("access_token") or credentials.get("apiKey")
        assert token == row.access_token, f"{row.name}: stored token {token!r} is not the documented one"
    if row.expires_in is not None:
        left = _expires_in(credentials)
        assert left is not None, f"{row.name}: no expires_at, though the token lives {row.expires_in}s"
        assert abs(left - row.expires_in) < 120, f"{row.name}: expires in {left:.0f}s, documented {row.expires_in}s"


async def _check_schedule(row: Row, db: Any) -> None:
    """The stored connection is due for renewal after now and before its token dies (or never, when it
    does not expire): what the token-refresher and refresh on read go by."""
    stored = await db["connections"].find_one({"connection_id": CONNECTION_ID})
    assert stored is not None
    due, expires = stored.get("refresh_due_at"), stored.get("credentials_expires_at")
    if row.expires_in is None:
        if row.refresh is None:
            assert due is None, f"{row.name}: a token that does not expire is due for renewal at {due}"
        return
    now = datetime.now(UTC)
    assert expires is not None, f"{row.name}: no stored expiry, though the token lives {row.expires_in}s"
    assert due is not None, f"{row.name}: expires at {expires}, yet no renewal is due"
    assert now < due < expires, f"{row.name}: renewal due {due} is not between now {now} and the expiry {expires}"


@pytest.mark.parametrize("world", NAMES, indirect=True)
async def test_refresh_before_expiry(world: World, db: Any) -> None:
    row, fake, gw = world.row, world.fake, world.gw
    await connect(world)
    await _check_schedule(row, db)
    before = len(fake.seen)
    if row.refresh is None:
        connection = await get_connection(gw, CONNECTION_ID, KEY)
        token_urls = {row.token.url} if row.token else set()
        calls = [s for s in fake.seen[before:] if s.url in token_urls]
        assert not calls, f"{row.name}: a token that does not expire was renewed: {calls}"
        credentials = connection["credentials"]
        assert "expires_at" not in credentials or not credentials["expires_at"], (
            f"{row.name}: the documented token does not expire, yet expires_at={credentials.get('expires_at')}"
        )
        return

    resp = await gw.client.get(
        f"/connection/{CONNECTION_ID}?provider_config_key={KEY}&force_refresh=true", headers=gw.auth
    )
    assert resp.status == 200, f"{row.name}: force_refresh failed: {resp.status} {await resp.text()}"
    connection = await resp.json()
    grant = _check_exchange(row, row.refresh, fake.seen[before:], what="refresh grant")
    if row.auth_mode == "OAUTH2":
        assert grant.fields().get("grant_type") == "refresh_token"
    token = connection["credentials"].get("access_token")
    assert token == row.refreshed_token, f"{row.name}: after the refresh the token is {token!r}"
    if row.expires_in is not None:
        left = _expires_in(connection["credentials"])
        assert left is not None, f"{row.name}: the renewed token has no expires_at"
        assert abs(left - row.expires_in) < 120, (
            f"{row.name}: the renewed token expires in {left}s, documented {row.expires_in}s"
        )


def _check_auth_header(row: Row, seen: Seen, name: str, value: str) -> None:
    got = seen.headers.get(name, "")
    if value.startswith("OAuth "):  # TBA: OAuth 1.0a HMAC-SHA256, the account as realm
        for part in (value, 'oauth_signature_method="HMAC-SHA256"', 'oauth_token="', "oauth_consumer_key="):
            assert part in got, f"{row.name}: {name} lacks {part!r}: {got[:60]!r}..."
        return
    assert got == value, f"{row.name}: upstream {name} is {got[:24]!r}..., documented {value[:24]!r}..."


@pytest.mark.parametrize("world", NAMES, indirect=True)
async def test_proxy_reaches_documented_url(world: World) -> None:
    row, fake, gw = world.row, world.fake, world.gw
    assert row.proxy is not None
    await connect(world)
    before = len(fake.seen)
    headers = {**gw.auth, "Connection-Id": CONNECTION_ID, "Provider-Config-Key": KEY}
    body: dict[str, Any] | None = {} if row.proxy.method == "POST" else None
    resp = await gw.client.request(row.proxy.method, f"/proxy{row.proxy.endpoint}", headers=headers, json=body)
    text = await resp.text()
    reached = [s for s in fake.seen[before:] if s.url == row.proxy.upstream and s.method == row.proxy.method]
    assert reached, (
        f"{row.name}: {row.proxy.method} /proxy{row.proxy.endpoint} did not reach {row.proxy.upstream}; "
        f"it reached {fake.seen[before:]} (gateway answered {resp.status} {text[:200]})"
    )
    assert resp.status == 200, f"{row.name}: proxy answered {resp.status}: {text[:300]}"
    assert json.loads(text) == reached[-1].answered, f"{row.name}: the proxy did not pass the answer through"
    name, value = row.proxy.auth_header
    _check_auth_header(row, reached[-1], name, value)
    for header, expected in row.proxy.extra_headers.items():
        got = reached[-1].headers.get(header)
        assert got == expected, f"{row.name}: upstream {header} is {got!r}, documented {expected!r}"
