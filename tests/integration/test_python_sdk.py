"""keyway-client against the real gateway (in this process, on the real broker and database): every
operation, its typed result, the exception each kind of refusal becomes, and ``verify_webhook`` on a
webhook the real dispatcher sent.

The OAuth 2 connection is made through the popup flow against a real OAuth 2 server on 127.0.0.1, so
``force_refresh`` is a real refresh; the proxy calls a third-party API stand-in on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyway_client import (
    ApiError,
    ApiKeyCredentials,
    AsyncClient,
    AuthenticationError,
    BasicCredentials,
    Client,
    Connection,
    ConnectionSummary,
    Integration,
    IntegrationSummary,
    NoCredentials,
    NotFoundError,
    OAuth1Credentials,
    OAuth2Credentials,
    RateLimitedError,
    ValidationError,
    WebhookVerificationError,
    verify_webhook,
)
from keyway_shared.cipher import CredentialCipher
from keyway_shared.store import WebhookKeyStore
from webhook_dispatcher.app import create_app as create_dispatcher
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import running
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from ..support.receiver import Received, WebhookReceiver, webhook_receiver
from ..support.upstream import EchoUpstream
from .gateway_app import Gateway, StartGateway, providers_yaml
from .test_oauth2_flow import run_flow

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@dataclass
class World:
    gw: Gateway
    provider: OAuthProvider
    upstream: EchoUpstream


@pytest.fixture
async def world(tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[World]:
    provider = await OAuthProvider().start()
    upstream = await EchoUpstream().start()
    catalog = {"test-oauth2": provider.template(proxy={"base_url": f"{upstream.base}/v1"})}
    try:
        async with start_gateway(
            providers_file=providers_yaml(tmp_path, catalog),
            egress_allowlist="127.0.0.0/8",
            provider_timeout_seconds=2.0,
        ) as gw:
            await _prepare(gw, provider)
            yield World(gw, provider, upstream)
    finally:
        await upstream.stop()
        await provider.stop()


async def _prepare(gw: Gateway, provider: OAuthProvider) -> None:
    for body in (
        {
            "provider": "test-oauth2",
            "provider_config_key": "oauth",
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
        },
        {"provider": "posthog", "provider_config_key": "ph"},
        {"provider": "freshdesk", "provider_config_key": "fd"},
        {"provider": "trello", "provider_config_key": "tr", "oauth_client_id": "k", "oauth_client_secret": "s"},
        {"provider": "unauthenticated", "provider_config_key": "none"},
    ):
        resp = await gw.client.post("/config", json=body, headers=gw.auth)
        assert resp.status == 200, await resp.text()
    _resp, html, frame = await run_flow(gw, provider, "oauth", "connection_id=py-oauth")
    assert frame["message_type"] == "success", html
    for body in (
        {"connection_id": "py-ph", "provider_config_key": "ph", "api_key": "phx_py_key"},
        {"connection_id": "py-fd", "provider_config_key": "fd", "username": "ann", "password": "pw"},
        {"connection_id": "py-fd-2", "provider_config_key": "fd", "username": "bob", "password": "pw2"},
        {"connection_id": "py-tr", "provider_config_key": "tr", "oauth_token": "ot", "oauth_token_secret": "ots"},
        {"connection_id": "py-none", "provider_config_key": "none"},
        {"connection_id": "team a/b?c#d", "provider_config_key": "ph", "api_key": "phx_odd"},
    ):
        resp = await gw.client.post("/connection", json=body, headers=gw.auth)
        assert resp.status == 201, await resp.text()


@pytest.fixture
async def keyway(world: World) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(host=world.gw.url, secret_key=world.gw.secret_key) as client:
        yield client


def _recent(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and abs(datetime.now(UTC) - value) < timedelta(minutes=5)


async def test_connections_tokens_and_credentials(world: World, keyway: AsyncClient) -> None:
    conn = await keyway.get_connection("oauth", "py-oauth")
    assert isinstance(conn, Connection)
    assert (conn.connection_id, conn.provider_config_key, conn.provider, conn.environment) == (
        "py-oauth",
        "oauth",
        "test-oauth2",
        "dev",
    )
    assert isinstance(conn.id, int)
    assert _recent(conn.created_at)
    assert _recent(conn.last_fetched_at)
    assert conn.metadata is None
    creds = conn.credentials
    assert isinstance(creds, OAuth2Credentials)
    assert creds.refresh_token is None  # stripped unless asked for
    assert "refresh_token" not in creds.raw
    assert creds.expires_at is not None
    assert creds.expires_at > datetime.now(UTC)
    assert creds.access_token not in repr(conn)  # secrets stay out of logs

    with_refresh = (await keyway.get_connection("oauth", "py-oauth", refresh_token=True)).credentials
    assert isinstance(with_refresh, OAuth2Credentials)
    assert with_refresh.access_token == creds.access_token
    assert with_refresh.refresh_token in world.provider.refresh_index

    forced = (await keyway.get_connection("oauth", "py-oauth", force_refresh=True, refresh_token=True)).credentials
    assert isinstance(forced, OAuth2Credentials)
    assert forced.access_token != creds.access_token
    assert forced.refresh_token not in (None, with_refresh.refresh_token)
    assert world.provider.token_requests[-1]["grant_type"] == "refresh_token"

    assert await keyway.get_token("oauth", "py-oauth") == forced.access_token
    renewed = await keyway.get_token("oauth", "py-oauth", force_refresh=True)
    assert isinstance(renewed, str)
    assert renewed != forced.access_token
    assert renewed in world.provider.access_tokens
    raw = await keyway.get_raw_token_response("oauth", "py-oauth")
    assert raw["access_token"] == renewed
    assert "refresh_token" not in raw
    assert await keyway.get_raw_token_response("ph", "py-ph") == {}

    api_key = await keyway.get_token("ph", "py-ph")
    assert isinstance(api_key, ApiKeyCredentials)
    assert api_key.api_key == "phx_py_key"
    assert "phx_py_key" not in repr(api_key)
    basic = await keyway.get_token("fd", "py-fd")
    assert isinstance(basic, BasicCredentials)
    assert (basic.username, basic.password) == ("ann", "pw")
    oauth1 = await keyway.get_token("tr", "py-tr")
    assert isinstance(oauth1, OAuth1Credentials)
    assert (oauth1.oauth_token, oauth1.oauth_token_secret) == ("ot", "ots")
    assert isinstance(await keyway.get_token("none", "py-none"), NoCredentials)

    # an id with '/', '?', '#' and a space travels as one path segment
    odd = await keyway.get_connection("ph", "team a/b?c#d")
    assert odd.connection_id == "team a/b?c#d"
    assert isinstance(odd.credentials, ApiKeyCredentials)
    assert odd.credentials.api_key == "phx_odd"

    with pytest.raises(NotFoundError) as missing:
        await keyway.get_connection("oauth", "nobody")
    assert (missing.value.status, missing.value.code) == (404, "unknown_connection")
    assert missing.value.payload == {"connectionId": "nobody", "providerConfigKey": "oauth", "environmentName": "dev"}


async def test_list_and_delete_connections(keyway: AsyncClient) -> None:
    listed = await keyway.list_connections()
    assert all(isinstance(c, ConnectionSummary) for c in listed)
    assert [c.connection_id for c in listed] == [
        "team a/b?c#d",
        "py-none",
        "py-tr",
        "py-fd-2",
        "py-fd",
        "py-ph",
        "py-oauth",
    ]  # newest first
    assert all(_recent(c.created) for c in listed)
    [one] = await keyway.list_connections("py-fd")
    assert (one.connection_id, one.provider_config_key, one.provider, one.metadata) == (
        "py-fd",
        "fd",
        "freshdesk",
        None,
    )
    assert await keyway.list_connections("nobody") == []

    await keyway.delete_connection("ph", "team a/b?c#d")
    assert await keyway.list_connections("team a/b?c#d") == []
    with pytest.raises(NotFoundError) as again:
        await keyway.delete_connection("ph", "team a/b?c#d")
    assert (again.value.status, again.value.code) == (404, "unknown_connection")


async def test_metadata(keyway: AsyncClient) -> None:
    assert await keyway.get_metadata("ph", "py-ph") is None
    await keyway.set_metadata("ph", "py-ph", {"plan": "pro", "seats": 3})
    assert await keyway.get_metadata("ph", "py-ph") == {"plan": "pro", "seats": 3}
    await keyway.update_metadata("ph", "py-ph", {"seats": 5, "region": "eu"})
    assert await keyway.get_metadata("ph", "py-ph") == {"plan": "pro", "seats": 5, "region": "eu"}
    await keyway.set_metadata("ph", "py-ph", {"only": True})
    assert await keyway.get_metadata("ph", "py-ph") == {"only": True}
    await keyway.set_metadata("fd", ["py-fd", "py-fd-2"], {"team": "a"})
    await keyway.update_metadata("fd", ("py-fd", "py-fd-2"), {"tier": 1})
    assert [c.metadata for c in await keyway.list_connections("py-fd-2")] == [{"team": "a", "tier": 1}]
    with pytest.raises(NotFoundError) as missing:
        await keyway.set_metadata("ph", "nobody", {"a": 1})
    assert missing.value.code == "unknown_connection"
    with pytest.raises(ValidationError) as bad:
        await keyway.set_metadata("", "py-ph", {"a": 1})
    assert (bad.value.status, bad.value.code) == (400, "missing_provider_config")


async def test_integrations(keyway: AsyncClient) -> None:
    before = await keyway.list_integrations()
    assert all(isinstance(i, IntegrationSummary) for i in before)
    assert sorted((i.unique_key, i.provider) for i in before) == [
        ("fd", "freshdesk"),
        ("none", "unauthenticated"),
        ("oauth", "test-oauth2"),
        ("ph", "posthog"),
        ("tr", "trello"),
    ]
    created = await keyway.create_integration(
        "github", "gh-py", oauth_client_id="cid", oauth_client_secret="csecret", oauth_scopes=["repo", "user"]
    )
    assert (created.unique_key, created.provider) == ("gh-py", "github")
    plain = await keyway.get_integration("gh-py")
    assert isinstance(plain, Integration)
    assert (plain.unique_key, plain.provider, plain.syncs, plain.actions) == ("gh-py", "github", [], [])
    assert (plain.client_id, plain.client_secret, plain.scopes, plain.auth_mode) == (None, None, None, None)
    full = await keyway.get_integration("gh-py", include_credentials=True)
    assert (full.client_id, full.client_secret, full.scopes, full.auth_mode) == (
        "cid",
        "csecret",
        ["repo", "user"],
        "OAUTH2",
    )
    assert _recent(full.created_at)
    assert "csecret" not in repr(full)

    updated = await keyway.update_integration(
        "github", "gh-py", oauth_client_id="cid2", oauth_client_secret="csecret2", oauth_scopes="repo"
    )
    assert updated.unique_key == "gh-py"
    full = await keyway.get_integration("gh-py", include_credentials=True)
    assert (full.client_id, full.client_secret, full.scopes) == ("cid2", "csecret2", ["repo"])

    with pytest.raises(ValidationError) as duplicate:
        await keyway.create_integration("github", "gh-py", oauth_client_id="x", oauth_client_secret="y")
    assert (duplicate.value.status, duplicate.value.code) == (409, "duplicate_provider_config")
    with pytest.raises(ValidationError) as no_client:
        await keyway.create_integration("github", "gh-other")
    assert (no_client.value.status, no_client.value.code) == (400, "missing_client_id")
    with pytest.raises(ValidationError) as not_editable:
        await keyway.update_integration("posthog", "ph")
    assert not_editable.value.code == "provider_config_edit_not_allowed"
    with pytest.raises(ValidationError) as unknown_provider:
        await keyway.create_integration("no-such-provider", "x")
    assert unknown_provider.value.code == "unknown_provider_template"

    await keyway.delete_integration("gh-py")
    with pytest.raises(NotFoundError) as gone:
        await keyway.delete_integration("gh-py")
    assert (gone.value.status, gone.value.code) == (404, "not_found")
    with pytest.raises(NotFoundError) as unknown:  # Nango answers 400 here; the code says what it is
        await keyway.get_integration("gh-py")
    assert (unknown.value.status, unknown.value.code) == (400, "unknown_provider_config")
    with pytest.raises(NotFoundError):
        await keyway.update_integration("github", "gh-py", oauth_client_id="x", oauth_client_secret="y")


async def test_proxy(world: World, keyway: AsyncClient) -> None:
    token = await keyway.get_token("oauth", "py-oauth")
    target = {"provider_config_key": "oauth", "connection_id": "py-oauth"}

    got = await keyway.get(
        **target, endpoint="/echo/items", params={"page": 2, "tag": ["a", "b c"]}, headers={"X-Custom": "v"}
    )
    assert (got.status, got.ok, got.headers["X-Upstream"]) == (200, True, "echo")
    seen = got.json()
    assert (seen["method"], seen["path"]) == ("GET", "/v1/echo/items")
    assert seen["query"] == {"page": ["2"], "tag": ["a", "b c"]}
    assert seen["headers"]["authorization"] == f"Bearer {token}"
    assert seen["headers"]["x-custom"] == "v"
    assert world.gw.secret_key not in got.text()

    posted = (await keyway.post(**target, endpoint="echo/items", data={"name": "n", "n": 1})).json()
    assert (posted["method"], posted["body"], posted["headers"]["content-type"]) == (
        "POST",
        '{"name":"n","n":1}',
        "application/json",
    )
    raw = (
        await keyway.put(**target, endpoint="/echo/raw", data=b"<a/>", headers={"Content-Type": "application/xml"})
    ).json()
    assert (raw["method"], raw["body"], raw["headers"]["content-type"]) == ("PUT", "<a/>", "application/xml")
    assert (await keyway.patch(**target, endpoint="/echo/p", data="text")).json()["body"] == "text"
    assert (await keyway.delete(**target, endpoint="/echo/d")).json()["method"] == "DELETE"
    assert (await keyway.proxy(**target, method="post", endpoint="/echo/m")).json()["method"] == "POST"

    retried = await keyway.get(**target, endpoint="/flaky/a?times=2", retries=3)
    assert retried.json()["attempt"] == 3
    retried_on = await keyway.get(
        **target, endpoint="/flaky/b", params={"times": 1, "code": 409}, retries=2, retry_on=[409]
    )
    assert retried_on.json()["attempt"] == 2
    assert world.upstream.attempts["/v1/flaky/a"] == 3

    override = await keyway.get(
        provider_config_key="ph", connection_id="py-ph", endpoint="/echo/me", base_url_override=world.upstream.base
    )
    assert override.json()["headers"]["authorization"] == "Bearer phx_py_key"
    basic = await keyway.get(
        provider_config_key="fd", connection_id="py-fd", endpoint="/echo/me", base_url_override=world.upstream.base
    )
    assert basic.json()["headers"]["authorization"] == "Basic " + base64.b64encode(b"ann:pw").decode()

    # the upstream's own errors come back as answers; raise_for_status turns them into exceptions
    not_found = await keyway.get(**target, endpoint="/status/404")
    assert (not_found.status, not_found.ok, not_found.json()) == (404, False, {"upstream": 404})
    with pytest.raises(NotFoundError) as upstream_error:
        not_found.raise_for_status()
    assert (upstream_error.value.status, upstream_error.value.code) == (404, None)
    failing = await keyway.get(**target, endpoint="/status/503")
    assert failing.status == 503
    with pytest.raises(ApiError) as server_error:
        failing.raise_for_status()
    assert type(server_error.value) is ApiError

    # Keyway's own refusals raise
    with pytest.raises(NotFoundError) as unknown:
        await keyway.get(provider_config_key="oauth", connection_id="nobody", endpoint="/echo/x")
    assert unknown.value.code == "unknown_connection"
    with pytest.raises(ValidationError) as no_base:  # posthog's base URL needs connectionConfig.subdomain
        await keyway.get(provider_config_key="ph", connection_id="py-ph", endpoint="/x")
    assert no_base.value.code == "missing_connection_config"

    # OAuth 1 connections are signed by the proxy (RFC 5849), with the integration's consumer key
    signed = await keyway.get(
        provider_config_key="tr", connection_id="py-tr", endpoint="/echo/x", base_url_override=world.upstream.base
    )
    authorization = signed.json()["headers"]["authorization"]
    assert authorization.startswith("OAuth ")
    assert 'oauth_consumer_key="k"' in authorization
    assert 'oauth_token="ot"' in authorization
    assert 'oauth_signature_method="HMAC-SHA1"' in authorization
    assert "oauth_signature=" in authorization


async def test_authentication_errors(world: World) -> None:
    async with AsyncClient(host=world.gw.url, secret_key="00000000-0000-4000-8000-000000000000") as unknown:
        with pytest.raises(AuthenticationError) as caught:
            await unknown.list_integrations()
    assert (caught.value.status, caught.value.code) == (401, "unknown_user_account")
    async with AsyncClient(host=world.gw.url, secret_key="not-a-uuid") as malformed:
        with pytest.raises(AuthenticationError) as caught:
            await malformed.list_connections()
    assert (caught.value.status, caught.value.code) == (401, "invalid_secret_key_format")
    assert "not-a-uuid" not in repr(malformed)


async def test_rate_limited(start_gateway: StartGateway) -> None:
    async with (
        start_gateway(rate_limit_per_minute=2) as gw,
        AsyncClient(host=gw.url, secret_key=gw.secret_key) as keyway,
    ):
        await keyway.list_integrations()
        await keyway.list_integrations()
        with pytest.raises(RateLimitedError) as caught:
            await keyway.list_integrations()
    assert (caught.value.status, caught.value.code) == (429, "too_many_request")
    assert caught.value.retry_after is not None
    assert 1 <= caught.value.retry_after <= 60


async def test_sync_client(world: World) -> None:
    """The blocking client, called from a worker thread (this loop runs the gateway)."""

    def use_it() -> dict[str, Any]:
        with Client(host=world.gw.url, secret_key=world.gw.secret_key, timeout=10) as keyway:
            token = keyway.get_token("oauth", "py-oauth")
            keyway.set_metadata("ph", "py-ph", {"from": "sync"})
            keyway.update_metadata("ph", "py-ph", {"more": 1})
            created = keyway.create_integration("github", "gh-sync", oauth_client_id="a", oauth_client_secret="b")
            keyway.update_integration("github", "gh-sync", oauth_client_id="c", oauth_client_secret="d")
            integration = keyway.get_integration("gh-sync", include_credentials=True)
            keyway.delete_integration("gh-sync")
            try:
                keyway.get_connection("oauth", "nobody")
            except NotFoundError as exc:
                missing = exc.code
            result = {
                "token": token,
                "refreshed": keyway.get_connection("oauth", "py-oauth", force_refresh=True).credentials,
                "raw": keyway.get_raw_token_response("oauth", "py-oauth"),
                "metadata": keyway.get_metadata("ph", "py-ph"),
                "listed": [c.connection_id for c in keyway.list_connections("py-ph")],
                "integrations": sorted(i.unique_key for i in keyway.list_integrations()),
                "created": created,
                "client_id": integration.client_id,
                "missing": missing,
                "proxied": keyway.post(
                    provider_config_key="oauth", connection_id="py-oauth", endpoint="/echo/s", data=[1]
                ).json(),
                "proxied_via_proxy": keyway.proxy(
                    provider_config_key="oauth", connection_id="py-oauth", endpoint="/echo/t"
                ).status,
            }
            keyway.delete_connection("fd", "py-fd-2")
        try:
            keyway.list_integrations()
        except RuntimeError as exc:
            result["after_close"] = str(exc)
        return result

    result = await asyncio.to_thread(use_it)
    assert isinstance(result["token"], str)
    assert isinstance(result["refreshed"], OAuth2Credentials)
    assert result["refreshed"].access_token != result["token"]
    assert result["raw"]["access_token"] == result["refreshed"].access_token
    assert result["metadata"] == {"from": "sync", "more": 1}
    assert result["listed"] == ["py-ph"]
    assert "gh-sync" not in result["integrations"]
    assert result["created"] == IntegrationSummary(unique_key="gh-sync", provider="github", data=result["created"].data)
    assert result["client_id"] == "c"
    assert result["missing"] == "unknown_connection"
    assert (result["proxied"]["method"], result["proxied"]["body"]) == ("POST", "[1]")
    assert result["proxied_via_proxy"] == 200
    assert result["after_close"] == "this Client is closed"
    resp = await world.gw.client.get("/connection/py-fd-2?provider_config_key=fd", headers=world.gw.auth)
    assert resp.status == 404


async def test_verify_webhook_on_a_real_webhook(
    world: World,
    keyway: AsyncClient,
    db: Any,
    service_settings: dict[str, Any],
    encryption_key: str,
) -> None:
    """A webhook the dispatcher really sent, checked by each of the three signatures it carries."""
    settings = DispatcherSettings(**service_settings, encryption_key=encryption_key, egress_allowlist="127.0.0.0/8")
    async with webhook_receiver() as receiver, running(create_dispatcher(settings)):
        resp = await world.gw.client.patch(
            "/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=world.gw.auth
        )
        assert resp.status == 200
        webhook_signing_key = (await resp.json())["environment"]["webhook_signing_key"]
        resp = await world.gw.client.post(
            "/connection",
            json={"connection_id": "py-hook", "provider_config_key": "ph", "api_key": "k"},
            headers=world.gw.auth,
        )
        assert resp.status == 201
        hook = await eventually(lambda: _hook_for(receiver, "py-hook"), timeout=30, what="the auth webhook")
    signing_keys = await WebhookKeyStore(db, CredentialCipher(current_key=encryption_key)).signing_keys("dev")

    payload = verify_webhook(hook.body, hook.headers, signing_keys=signing_keys)  # Standard Webhooks
    assert (payload["connectionId"], payload["operation"], payload["success"]) == ("py-hook", "creation", True)
    assert verify_webhook(hook.body, hook.headers, webhook_signing_key=webhook_signing_key) == payload  # HMAC
    assert keyway.verify_webhook(hook.body, hook.headers, webhook_signing_key=webhook_signing_key) == payload
    with pytest.raises(WebhookVerificationError, match="X-Nango-Hmac-Sha256"):  # not keyed by the secret key
        verify_webhook(hook.body, hook.headers, webhook_signing_key=world.gw.secret_key)
    assert keyway.verify_webhook(hook.body, hook.headers) == payload  # the client's secret key: X-Nango-Signature
    legacy_only = {k: v for k, v in hook.headers.items() if k.lower() != "x-nango-hmac-sha256"}
    assert verify_webhook(hook.body, legacy_only, secret_key=world.gw.secret_key) == payload  # X-Nango-Signature
    with pytest.raises(WebhookVerificationError):
        verify_webhook(hook.body, legacy_only, secret_key=world.gw.secret_key, allow_legacy=False)
    tampered = hook.body.replace(b"py-hook", b"py-hoox")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(tampered, hook.headers, signing_keys=signing_keys)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(tampered, hook.headers, secret_key=world.gw.secret_key)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(tampered, hook.headers, webhook_signing_key=webhook_signing_key)


async def _hook_for(receiver: WebhookReceiver, connection_id: str) -> Received | None:
    """The queue was declared with the gateway, so the other connections' webhooks arrive too."""
    return next((h for h in receiver.received if json.loads(h.body)["connectionId"] == connection_id), None)
