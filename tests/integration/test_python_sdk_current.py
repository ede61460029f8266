"""keyway-client's ``current`` API against the real gateway (in this process, on the real broker and
database): every method of Nango's current routes, its typed result read back through the gateway,
and at least one refusal per route family mapped to its exception. The 2024 methods see what the
current ones write (one stored integration, one stored connection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyway_client import (
    ApiKeyCredentials,
    AsyncClient,
    AuthenticationError,
    BasicCredentials,
    Client,
    ConnectSessionToken,
    CurrentConnection,
    CurrentIntegration,
    EndUser,
    EndUserOrganization,
    NotFoundError,
    Provider,
    ValidationError,
)

from .gateway_app import Gateway, StartGateway, create_integration

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

ANN = {"id": "u-ann", "email": "ann@example.com", "display_name": "Ann"}


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        await create_integration(gateway, "posthog", "ph")
        await create_integration(gateway, "freshdesk", "fd")
        yield gateway


@pytest.fixture
async def keyway(gw: Gateway) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(host=gw.url, secret_key=gw.secret_key) as client:
        yield client


def _recent(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and abs(datetime.now(UTC) - value) < timedelta(minutes=5)


async def test_providers(keyway: AsyncClient) -> None:
    found = await keyway.current.list_providers(search="GITHUB")
    assert found
    assert all(isinstance(p, Provider) and "github" in p.name for p in found)
    everything = await keyway.current.list_providers()
    assert len(everything) > len(found)
    github = await keyway.current.get_provider("github")
    assert (github.name, github.auth_mode) == ("github", "OAUTH2")
    assert github.display_name == "GitHub"
    assert github in everything
    with pytest.raises(NotFoundError) as unknown:
        await keyway.current.get_provider("no-such-provider")
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")
    with pytest.raises(ValidationError) as bad_search:  # '/' is outside Nango's pattern for a search
        await keyway.current.list_providers(search="a/b")
    assert (bad_search.value.status, bad_search.value.code) == (400, "invalid_query_params")
    assert bad_search.value.errors
    assert bad_search.value.errors[0]["path"] == ["search"]


async def test_integrations(keyway: AsyncClient) -> None:
    app = {"type": "OAUTH2", "client_id": "cid", "client_secret": "csecret", "scopes": "repo,user"}
    created = await keyway.current.create_integration("github", "gh", display_name="Our GitHub", credentials=app)
    assert isinstance(created, CurrentIntegration)
    assert (created.unique_key, created.provider, created.display_name, created.forward_webhooks) == (
        "gh",
        "github",
        "Our GitHub",
        True,
    )
    assert _recent(created.created_at)
    assert (created.credentials, created.webhook_url) == (None, None)

    listed = await keyway.current.list_integrations()
    assert sorted(i.unique_key for i in listed) == ["fd", "gh", "ph"]
    assert next(i for i in listed if i.unique_key == "ph").display_name == "PostHog"  # its provider's
    assert "gh" in [i.unique_key for i in await keyway.list_integrations()]  # the 2024 list sees it

    plain = await keyway.current.get_integration("gh")
    assert "credentials" not in plain.data
    full = await keyway.current.get_integration("gh", include_webhook=True, include_credentials=True)
    assert full.credentials is not None
    assert (full.credentials.type, full.credentials.client_id, full.credentials.client_secret) == (
        "OAUTH2",
        "cid",
        "csecret",
    )
    assert full.credentials.scopes == ["repo", "user"]
    assert full.webhook_url is None
    assert "webhook_url" in full.data
    assert "csecret" not in repr(full)
    api_key = await keyway.current.get_integration("ph", include_credentials=True)
    assert ("credentials" in api_key.data, api_key.credentials) == (True, None)  # its mode holds no app

    changed = await keyway.current.update_integration(
        "gh",
        new_unique_key="gh-2",
        display_name="GitHub 2",
        forward_webhooks=False,
        credentials={"type": "OAUTH2", "client_id": "cid2", "client_secret": "csecret2"},
    )
    assert (changed.unique_key, changed.display_name, changed.forward_webhooks) == ("gh-2", "GitHub 2", False)
    renamed = await keyway.current.get_integration("gh-2", include_credentials=True)
    assert renamed.credentials is not None
    assert renamed.credentials.client_id == "cid2"

    with pytest.raises(ValidationError) as duplicate:
        await keyway.current.create_integration("github", "gh-2", credentials=app)
    assert (duplicate.value.status, duplicate.value.code) == (400, "invalid_body")
    with pytest.raises(ValidationError) as no_app:
        await keyway.current.create_integration("github", "gh-3")
    assert (no_app.value.code, no_app.value.message) == ("invalid_body", "Missing credentials")
    with pytest.raises(ValidationError) as unknown_field:
        await keyway.current.create_integration("posthog", "ph-2", custom={"k": 1})  # type: ignore[dict-item]
    assert unknown_field.value.errors
    assert unknown_field.value.errors[0]["path"][0] == "custom"

    await keyway.current.delete_integration("gh-2")
    with pytest.raises(NotFoundError) as gone:
        await keyway.current.get_integration("gh-2")
    assert (gone.value.status, gone.value.code) == (404, "not_found")
    with pytest.raises(NotFoundError):
        await keyway.current.delete_integration("gh-2")


async def test_connections(keyway: AsyncClient) -> None:
    made = await keyway.current.import_connection(
        "ph",
        {"type": "API_KEY", "apiKey": "phx_ann"},
        connection_id="c-ann",
        metadata={"plan": "pro"},
        end_user=ANN,
        tags={"tier": "gold"},
        webhook_url_override="https://app.example/hooks",
    )
    assert isinstance(made, CurrentConnection)
    assert (made.connection_id, made.provider_config_key, made.provider) == ("c-ann", "ph", "posthog")
    assert isinstance(made.credentials, ApiKeyCredentials)
    assert made.credentials.api_key == "phx_ann"
    assert made.end_user == EndUser(id="u-ann", email="ann@example.com", display_name="Ann")
    assert made.tags["tier"] == "gold"
    assert made.tags["end_user_id"] == "u-ann"  # the end user's fields are tags too, as in Nango
    assert (made.metadata, made.webhook_url_override, made.errors) == ({"plan": "pro"}, "https://app.example/hooks", [])
    assert _recent(made.created_at)
    bob = await keyway.current.import_connection(
        "fd", {"type": "BASIC", "username": "bob", "password": "pw"}, end_user={"id": "u-bob"}
    )
    assert bob.connection_id  # the gateway picked one

    # the 2024 routes read the same connection
    assert (await keyway.get_connection("ph", "c-ann")).metadata == {"plan": "pro"}

    listed = await keyway.current.list_connections()
    assert [c.connection_id for c in listed] == [bob.connection_id, "c-ann"]  # newest first
    ann = listed[1]
    assert (ann.end_user, ann.tags, ann.metadata) == (made.end_user, made.tags, {"plan": "pro"})
    assert _recent(ann.created)
    for filters, expected in (
        ({"end_user_id": "u-bob"}, [bob.connection_id]),
        ({"tags": {"TIER": "gold"}}, ["c-ann"]),
        ({"search": "ann@"}, ["c-ann"]),
        ({"integration_id": ["ph", "fd"], "limit": 1, "page": 1}, ["c-ann"]),
        ({"integration_id": "fd"}, [bob.connection_id]),
        ({"connection_id": "c-ann", "end_user_id": "u-bob"}, []),
        ({"limit": 1, "page": 5}, []),
    ):
        assert [c.connection_id for c in await keyway.current.list_connections(**filters)] == expected, filters

    got = await keyway.current.get_connection("fd", bob.connection_id, refresh_token=True)
    assert isinstance(got.credentials, BasicCredentials)
    assert (got.credentials.username, got.credentials.password) == ("bob", "pw")
    assert _recent(got.last_fetched_at)

    await keyway.current.patch_connection(
        "ph",
        "c-ann",
        end_user={"id": "u-ann", "email": "ann@new.example", "tags": {"seat": "admin"}},
        webhook_url_override="",
    )
    patched = await keyway.current.get_connection("ph", "c-ann")
    assert patched.end_user == EndUser(id="u-ann", email="ann@new.example", tags={"seat": "admin"})
    assert patched.webhook_url_override is None
    await keyway.current.patch_connection("ph", "c-ann", tags={"tier": "silver"})
    assert (await keyway.current.get_connection("ph", "c-ann")).tags == {"tier": "silver"}

    await keyway.current.set_metadata("ph", "c-ann", {"only": True})
    await keyway.current.update_metadata("ph", ["c-ann"], {"more": 1})
    assert (await keyway.current.get_connection("ph", "c-ann")).metadata == {"only": True, "more": 1}

    assert await keyway.current.delete_connection("fd", bob.connection_id) is None
    assert await keyway.current.list_connections(end_user_id="u-bob") == []


async def test_connection_refusals(keyway: AsyncClient) -> None:
    await keyway.current.import_connection("ph", {"type": "API_KEY", "apiKey": "k"}, connection_id="c-1")
    with pytest.raises(NotFoundError) as missing:
        await keyway.current.get_connection("ph", "nobody")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(NotFoundError) as no_integration:  # Nango's 400; the code says what it is
        await keyway.current.get_connection("nope", "c-1")
    assert (no_integration.value.status, no_integration.value.code) == (400, "unknown_provider_config")
    with pytest.raises(ValidationError) as too_many:
        await keyway.current.list_connections(limit=5000)
    assert (too_many.value.code, too_many.value.errors and too_many.value.errors[0]["path"]) == (
        "invalid_query_params",
        ["limit"],
    )
    with pytest.raises(ValidationError) as bad_url:
        await keyway.current.patch_connection("ph", "c-1", webhook_url_override="not a url")
    assert (bad_url.value.status, bad_url.value.code) == (400, "invalid_body")
    with pytest.raises(ValidationError) as wrong_kind:
        await keyway.current.import_connection("ph", {"type": "BASIC", "username": "a", "password": "b"})
    assert wrong_kind.value.code == "invalid_body"
    with pytest.raises(NotFoundError) as not_there:
        await keyway.current.delete_connection("ph", "nobody")
    assert (not_there.value.status, not_there.value.code) == (400, "unknown_connection")
    with pytest.raises(NotFoundError) as no_metadata_target:
        await keyway.current.set_metadata("ph", ["c-1", "nobody"], {"a": 1})
    assert (no_metadata_target.value.status, no_metadata_target.value.code) == (404, "unknown_connection")
    assert (await keyway.current.get_connection("ph", "c-1")).metadata == {}  # all or nothing


async def test_webhook_signing_key(gw: Gateway, keyway: AsyncClient) -> None:
    resp = await gw.client.get("/environment", headers=gw.auth)
    before = (await resp.json())["environment"]["webhook_signing_key"]
    rotated = await keyway.current.rotate_webhook_signing_key()
    assert rotated != before
    resp = await gw.client.get("/environment", headers=gw.auth)
    assert (await resp.json())["environment"]["webhook_signing_key"] == rotated
    assert await keyway.current.rotate_webhook_signing_key() not in (before, rotated)
    async with AsyncClient(host=gw.url, secret_key="00000000-0000-4000-8000-000000000000") as stranger:
        with pytest.raises(AuthenticationError) as refused:
            await stranger.current.rotate_webhook_signing_key()
    assert (refused.value.status, refused.value.code) == (401, "unknown_user_account")


async def test_connect_sessions(gw: Gateway, keyway: AsyncClient) -> None:
    minted = await keyway.current.create_connect_session(
        end_user={**ANN, "tags": {"plan": "pro"}},
        organization={"id": "org-1", "display_name": "Acme"},
        allowed_integrations=["ph"],
        tags={"team": "core"},
    )
    assert isinstance(minted, ConnectSessionToken)
    assert minted.connect_link is not None
    assert minted.connect_link.endswith(f"/connect-ui/?session_token={minted.token}")
    assert minted.expires_at is not None
    assert minted.expires_at > datetime.now(UTC)
    assert minted.token not in repr(minted)

    session = await keyway.current.get_connect_session(minted.token)
    organization = EndUserOrganization(id="org-1", display_name="Acme")
    assert session.end_user == EndUser(**ANN, tags={"plan": "pro"}, organization=organization)
    assert (session.allowed_integrations, session.is_reconnecting) == (["ph"], False)
    assert session.expires_at == minted.expires_at

    # the end user connects through the session; the connection carries the session's end user and tags
    resp = await gw.client.post(
        f"/api-auth/api-key/ph?connect_session_token={minted.token}", json={"apiKey": "phx_session"}
    )
    assert resp.status == 200, await resp.text()
    connection_id = (await resp.json())["connectionId"]
    [connected] = await keyway.current.list_connections(end_user_organization_id="org-1")
    assert connected.connection_id == connection_id
    assert connected.end_user is not None
    assert (connected.end_user.id, connected.tags["team"]) == ("u-ann", "core")

    again = await keyway.current.create_reconnect_session(connection_id, "ph")
    reconnecting = await keyway.current.get_connect_session(again.token)
    assert (reconnecting.is_reconnecting, reconnecting.allowed_integrations) == (True, ["ph"])
    assert reconnecting.end_user is not None
    assert reconnecting.end_user.id == "u-ann"  # the connection's own end user

    with pytest.raises(ValidationError) as unknown_integration:
        await keyway.current.create_connect_session(end_user={"id": "u-1"}, allowed_integrations=["nope"])
    assert (unknown_integration.value.status, unknown_integration.value.code) == (400, "invalid_body")
    assert unknown_integration.value.errors == [
        {"code": "custom", "message": "Integration does not exist", "path": ["allowed_integrations", 0]}
    ]
    with pytest.raises(ValidationError) as no_such_connection:
        await keyway.current.create_reconnect_session("nobody", "ph")
    assert no_such_connection.value.code == "invalid_body"
    with pytest.raises(AuthenticationError) as spent:
        await keyway.current.get_connect_session("nango_connect_session_" + "0" * 64)
    assert (spent.value.status, spent.value.code) == (401, "unknown_connect_session_token")
    with pytest.raises(AuthenticationError):  # the secret key is not a session token
        await keyway.current.get_connect_session(gw.secret_key)


async def test_sync_client(gw: Gateway) -> None:
    """The blocking client's ``current``, called from a worker thread (this loop runs the gateway)."""

    def use_it() -> dict[str, Any]:
        with Client(host=gw.url, secret_key=gw.secret_key, timeout=10) as keyway:
            current = keyway.current
            current.import_connection("ph", {"type": "API_KEY", "apiKey": "k"}, connection_id="s-1", tags={"a": "b"})
            current.patch_connection("ph", "s-1", end_user={"id": "u-sync"})
            current.update_metadata("ph", "s-1", {"m": 1})
            token = current.create_connect_session(end_user={"id": "u-sync"}).token
            result: dict[str, Any] = {
                "provider": current.get_provider("posthog").auth_mode,
                "integrations": [i.unique_key for i in current.list_integrations()],
                "listed": [c.connection_id for c in current.list_connections(end_user_id="u-sync")],
                "connection": current.get_connection("ph", "s-1"),
                "session_user": current.get_connect_session(token).end_user,
            }
            try:
                current.get_integration("nope")
            except NotFoundError as exc:
                result["missing"] = exc.code
            current.delete_connection("ph", "s-1")
            result["after_delete"] = current.list_connections()
        return result

    result = await asyncio.to_thread(use_it)
    assert result["provider"] == "API_KEY"
    assert sorted(result["integrations"]) == ["fd", "ph"]
    assert result["listed"] == ["s-1"]
    connection = result["connection"]
    assert isinstance(connection, CurrentConnection)
    assert (connection.end_user, connection.metadata, connection.tags["end_user_id"]) == (
        EndUser(id="u-sync"),
        {"m": 1},
        "u-sync",
    )
    assert result["session_user"] == EndUser(id="u-sync")
    assert result["missing"] == "not_found"
    assert result["after_delete"] == []
