"""keyway-client's ``current`` API (Nango's current routes) against a fake gateway on 127.0.0.1: what
each method sends (method, path, query, body, credential), how each answer is parsed into its typed
result, and how Nango's current error envelope maps to the exception tree."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keyway_client import (
    ApiKeyCredentials,
    AsyncClient,
    AuthenticationError,
    Client,
    ConnectionIssue,
    CurrentConnection,
    EndUser,
    EndUserOrganization,
    NotFoundError,
    OAuth2Credentials,
    TransportError,
    ValidationError,
)

SECRET = "0b1c7f3e-5d3a-4c55-9f0e-2a4b6c8d0e1f"
Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Sent:
    method: str
    path: str  # as sent, still escaped
    query: list[tuple[str, str]]
    body: Any
    authorization: str | None


@dataclass
class Fake:
    server: TestServer
    sent: list[Sent] = field(default_factory=list)
    answers: dict[tuple[str, str], Any] = field(default_factory=dict)  # (method, path) → JSON, or a handler

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def answer(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.answers[(method, path)] = (status, body)


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    state = Fake(server)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        state.sent.append(
            Sent(
                request.method,
                request.raw_path.split("?")[0],
                list(request.query.items()),
                json.loads(raw) if raw else None,
                request.headers.get("Authorization"),
            )
        )
        status, body = state.answers.get((request.method, request.path), (404, _envelope("not_found")))
        return web.json_response(body, status=status)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    await server.start_server()
    yield state
    await server.close()


def _envelope(code: str, message: str | None = None, **extra: Any) -> dict[str, Any]:
    """Nango's current envelope (no top-level ``type``)."""
    return {"error": {"code": code, "message": message or code, **extra}}


END_USER = {
    "id": "u-1",
    "display_name": "Ann",
    "email": "ann@example.com",
    "tags": {"plan": "pro"},
    "organization": {"id": "org-1", "display_name": "Acme"},
}
LISTED = {
    "id": 7,
    "connection_id": "c-1",
    "provider_config_key": "gh",
    "provider": "github",
    "errors": [{"type": "auth", "log_id": None}],
    "end_user": END_USER,
    "tags": {"tier": "gold"},
    "metadata": {"a": 1},
    "created": "2025-01-02T03:04:05.678+00:00",
}
FULL = {
    **{k: v for k, v in LISTED.items() if k != "created"},
    "connection_config": {"subdomain": "acme"},
    "webhook_url_override": "https://app.example/hooks",
    "created_at": "2025-01-02T03:04:05.678+00:00",
    "updated_at": "2025-01-03T03:04:05.678Z",
    "last_fetched_at": None,
    "credentials": {"type": "OAUTH2", "access_token": "at-secret", "expires_at": "2025-02-01T00:00:00.000Z"},
}
INTEGRATION = {
    "unique_key": "gh",
    "provider": "github",
    "display_name": "GitHub",
    "forward_webhooks": True,
    "created_at": "2025-01-02T03:04:05.678Z",
    "updated_at": "2025-01-02T03:04:05.678Z",
}


async def test_providers(fake: Fake) -> None:
    provider = {"name": "github", "display_name": "GitHub", "auth_mode": "OAUTH2", "categories": ["dev-tools"]}
    fake.answer("GET", "/providers", {"data": [provider]})
    fake.answer("GET", "/providers/git hub", {"data": {**provider, "docs": "https://docs"}})
    async with AsyncClient(host=fake.url, secret_key=SECRET) as keyway:
        [listed] = await keyway.current.list_providers(search="git")
        one = await keyway.current.get_provider("git hub")
        assert await keyway.current.list_providers() == [listed]
    assert (listed.name, listed.display_name, listed.auth_mode, listed.categories, listed.docs) == (
        "github",
        "GitHub",
        "OAUTH2",
        ["dev-tools"],
        None,
    )
    assert (one.docs, one.data["name"]) == ("https://docs", "github")
    assert [(s.method, s.path, s.query) for s in fake.sent] == [
        ("GET", "/providers", [("search", "git")]),
        ("GET", "/providers/git%20hub", []),
        ("GET", "/providers", []),
    ]
    assert all(s.authorization == f"Bearer {SECRET}" for s in fake.sent)


async def test_integrations(fake: Fake) -> None:
    credentials = {
        "type": "OAUTH2",
        "client_id": "cid",
        "client_secret": "csecret",
        "scopes": "repo,user",
        "webhook_secret": None,
    }
    fake.answer("GET", "/integrations", {"data": [INTEGRATION]})
    fake.answer("GET", "/integrations/g h", {"data": {**INTEGRATION, "webhook_url": None, "credentials": credentials}})
    fake.answer("POST", "/integrations", {"data": INTEGRATION})
    fake.answer("PATCH", "/integrations/gh", {"data": {**INTEGRATION, "unique_key": "gh2"}})
    fake.answer("DELETE", "/integrations/gh2", {"success": True})
    async with AsyncClient(host=fake.url, secret_key=SECRET) as keyway:
        [listed] = await keyway.current.list_integrations()
        full = await keyway.current.get_integration("g h", include_webhook=True, include_credentials=True)
        await keyway.current.get_integration("g h")
        created = await keyway.current.create_integration(
            "github", "gh", credentials={"type": "OAUTH2", "client_id": "cid", "client_secret": "s"}
        )
        await keyway.current.create_integration(
            "github", "gh", display_name="GH", forward_webhooks=False, custom={"k": "v"}
        )
        renamed = await keyway.current.update_integration("gh", new_unique_key="gh2", display_name="New")
        await keyway.current.delete_integration("gh2")
    assert (listed.unique_key, listed.provider, listed.display_name, listed.forward_webhooks) == (
        "gh",
        "github",
        "GitHub",
        True,
    )
    assert listed.created_at == datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert (listed.webhook_url, listed.credentials) == (None, None)
    app = full.credentials
    assert app is not None
    assert (app.type, app.client_id, app.client_secret, app.scopes, app.webhook_secret) == (
        "OAUTH2",
        "cid",
        "csecret",
        ["repo", "user"],
        None,
    )
    assert "csecret" not in repr(full)
    assert (created.unique_key, renamed.unique_key) == ("gh", "gh2")
    assert [(s.method, s.path, s.query, s.body) for s in fake.sent] == [
        ("GET", "/integrations", [], None),
        ("GET", "/integrations/g%20h", [("include", "webhook"), ("include", "credentials")], None),
        ("GET", "/integrations/g%20h", [], None),
        (
            "POST",
            "/integrations",
            [],
            {
                "provider": "github",
                "unique_key": "gh",
                "credentials": {"type": "OAUTH2", "client_id": "cid", "client_secret": "s"},
            },
        ),
        (
            "POST",
            "/integrations",
            [],
            {
                "provider": "github",
                "unique_key": "gh",
                "display_name": "GH",
                "forward_webhooks": False,
                "custom": {"k": "v"},
            },
        ),
        ("PATCH", "/integrations/gh", [], {"unique_key": "gh2", "display_name": "New"}),
        ("DELETE", "/integrations/gh2", [], None),
    ]


async def test_connection_reads(fake: Fake) -> None:
    fake.answer("GET", "/connections", {"connections": [LISTED, {**LISTED, "end_user": None, "errors": []}]})
    fake.answer("GET", "/connections/a/b c", {**FULL, "connection_id": "a/b c"})
    async with AsyncClient(host=fake.url, secret_key=SECRET) as keyway:
        first, second = await keyway.current.list_connections(
            connection_id="c-1",
            search="ann",
            end_user_id="u-1",
            end_user_organization_id="org-1",
            integration_id=["gh", "ph"],
            tags={"tier": "gold", "region": "eu"},
            limit=2,
            page=0,
        )
        await keyway.current.list_connections(integration_id="gh")
        await keyway.current.list_connections()
        one = await keyway.current.get_connection("gh", "a/b c", force_refresh=True, refresh_github_app_jwt_token=True)
    organization = EndUserOrganization(id="org-1", display_name="Acme")
    ann = EndUser(
        id="u-1", display_name="Ann", email="ann@example.com", tags={"plan": "pro"}, organization=organization
    )
    assert (first.id, first.connection_id, first.provider_config_key, first.provider) == (7, "c-1", "gh", "github")
    assert (first.end_user, first.tags, first.metadata) == (ann, {"tier": "gold"}, {"a": 1})
    assert first.errors == [ConnectionIssue(type="auth", log_id=None)]
    assert first.created == datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert (second.end_user, second.errors) == (None, [])
    assert isinstance(one, CurrentConnection)
    assert (one.connection_id, one.end_user, one.connection_config) == ("a/b c", ann, {"subdomain": "acme"})
    assert (one.webhook_url_override, one.last_fetched_at) == ("https://app.example/hooks", None)
    assert one.updated_at == datetime(2025, 1, 3, 3, 4, 5, 678000, tzinfo=UTC)
    assert isinstance(one.credentials, OAuth2Credentials)
    assert one.credentials.access_token == "at-secret"
    assert "at-secret" not in repr(one)
    assert [(s.path, s.query) for s in fake.sent] == [
        (
            "/connections",
            [
                ("connectionId", "c-1"),
                ("search", "ann"),
                ("endUserId", "u-1"),
                ("endUserOrganizationId", "org-1"),
                ("integrationId", "gh,ph"),
                ("tags[tier]", "gold"),
                ("tags[region]", "eu"),
                ("limit", "2"),
                ("page", "0"),
            ],
        ),
        ("/connections", [("integrationId", "gh")]),
        ("/connections", []),
        (
            "/connections/a%2Fb%20c",
            [
                ("provider_config_key", "gh"),
                ("force_refresh", "true"),
                ("refresh_token", "false"),
                ("refresh_github_app_jwt_token", "true"),
            ],
        ),
    ]


async def test_connection_writes(fake: Fake) -> None:
    imported = {**FULL, "credentials": {"type": "API_KEY", "apiKey": "k-secret"}}
    fake.answer("POST", "/connections", imported, status=201)
    fake.answer("PATCH", "/connections/c-1", {"success": True})
    fake.answer("DELETE", "/connections/c-1", {"success": True})
    revocation = {"status": "revoked", "detail": None, "tokens": ["refresh_token"]}
    fake.answer("DELETE", "/connections/c-2", {"success": True, "revocation": revocation})
    fake.answer("POST", "/connections/metadata", {"echo": True}, status=201)
    fake.answer("PATCH", "/connections/metadata", {"echo": True})
    async with AsyncClient(host=fake.url, secret_key=SECRET) as keyway:
        made = await keyway.current.import_connection(
            "ph",
            {"type": "API_KEY", "apiKey": "k-secret"},
            connection_id="c-1",
            metadata={"m": 1},
            end_user={"id": "u-1"},
            tags={"tier": "gold"},
        )
        await keyway.current.import_connection("ph", {"type": "NONE"})
        await keyway.current.patch_connection("ph", "c-1", tags={"tier": "silver"}, webhook_url_override="")
        await keyway.current.patch_connection("ph", "c-1", end_user={"id": "u-2", "email": "b@example.com"})
        assert await keyway.current.delete_connection("ph", "c-1") is None
        assert await keyway.current.delete_connection("ph", "c-2", revoke=True) == revocation
        await keyway.current.delete_connection("ph", "c-1", revoke=False)
        await keyway.current.set_metadata("ph", "c-1", {"a": 1})
        await keyway.current.update_metadata("ph", ("c-1", "c-2"), {"b": 2})
    assert isinstance(made.credentials, ApiKeyCredentials)
    assert made.credentials.api_key == "k-secret"
    assert [(s.method, s.path, s.query, s.body) for s in fake.sent] == [
        (
            "POST",
            "/connections",
            [],
            {
                "provider_config_key": "ph",
                "connection_id": "c-1",
                "credentials": {"type": "API_KEY", "apiKey": "k-secret"},
                "metadata": {"m": 1},
                "end_user": {"id": "u-1"},
                "tags": {"tier": "gold"},
            },
        ),
        ("POST", "/connections", [], {"provider_config_key": "ph", "credentials": {"type": "NONE"}}),
        (
            "PATCH",
            "/connections/c-1",
            [("provider_config_key", "ph")],
            {"tags": {"tier": "silver"}, "webhook_url_override": ""},
        ),
        (
            "PATCH",
            "/connections/c-1",
            [("provider_config_key", "ph")],
            {"end_user": {"id": "u-2", "email": "b@example.com"}},
        ),
        ("DELETE", "/connections/c-1", [("provider_config_key", "ph")], None),
        ("DELETE", "/connections/c-2", [("provider_config_key", "ph"), ("revoke", "true")], None),
        ("DELETE", "/connections/c-1", [("provider_config_key", "ph"), ("revoke", "false")], None),
        (
            "POST",
            "/connections/metadata",
            [],
            {"connection_id": "c-1", "provider_config_key": "ph", "metadata": {"a": 1}},
        ),
        (
            "PATCH",
            "/connections/metadata",
            [],
            {"connection_id": ["c-1", "c-2"], "provider_config_key": "ph", "metadata": {"b": 2}},
        ),
    ]


async def test_signing_key_and_connect_sessions(fake: Fake) -> None:
    token = "nango_connect_session_" + "a" * 64
    minted = {"token": token, "connect_link": f"http://gw/connect-ui/?session_token={token}", "expires_at": None}
    fake.answer("POST", "/environment/webhook-signing-key/rotate", {"data": {"webhook_signing_key": "k-new"}})
    fake.answer("POST", "/connect/sessions", {"data": {**minted, "expires_at": "2025-01-02T03:34:05.678Z"}}, 201)
    fake.answer("POST", "/connect/sessions/reconnect", {"data": minted}, 201)
    fake.answer(
        "GET",
        "/connect/session",
        {
            "data": {
                "endUser": END_USER,
                "connectUISettings": {},
                "allowed_integrations": ["gh"],
                "isReconnecting": True,
                "end_user": {"id": "u-1"},
                "organization": None,
                "expires_at": "2025-01-02T03:34:05.678Z",
            }
        },
    )
    async with AsyncClient(host=fake.url, secret_key=SECRET) as keyway:
        assert await keyway.current.rotate_webhook_signing_key() == "k-new"
        session = await keyway.current.create_connect_session(
            end_user={"id": "u-1", "tags": {"plan": "pro"}},
            organization={"id": "org-1"},
            allowed_integrations=["gh"],
            integrations_config_defaults={"gh": {"user_scopes": "repo"}},
            overrides={"gh": {"docs_connect": "https://docs.example"}},
            webhook_url_override="https://app.example/hooks",
            tags={"tier": "gold"},
        )
        again = await keyway.current.create_reconnect_session("c-1", "gh", tags={"tier": "gold"})
        read = await keyway.current.get_connect_session(session.token)
    assert (session.token, session.connect_link) == (token, minted["connect_link"])
    assert session.expires_at == datetime(2025, 1, 2, 3, 34, 5, 678000, tzinfo=UTC)
    assert token not in repr(session)
    assert (again.token, again.expires_at) == (token, None)
    assert read.end_user is not None
    assert (read.end_user.id, read.end_user.organization) == (
        "u-1",
        EndUserOrganization(id="org-1", display_name="Acme"),
    )
    assert (read.allowed_integrations, read.is_reconnecting, read.overrides) == (["gh"], True, None)
    rotate, create, reconnect, get = fake.sent
    assert (rotate.method, rotate.path, rotate.body) == ("POST", "/environment/webhook-signing-key/rotate", None)
    assert create.body == {
        "end_user": {"id": "u-1", "tags": {"plan": "pro"}},
        "organization": {"id": "org-1"},
        "allowed_integrations": ["gh"],
        "integrations_config_defaults": {"gh": {"user_scopes": "repo"}},
        "overrides": {"gh": {"docs_connect": "https://docs.example"}},
        "webhook_url_override": "https://app.example/hooks",
        "tags": {"tier": "gold"},
    }
    assert reconnect.body == {"connection_id": "c-1", "integration_id": "gh", "tags": {"tier": "gold"}}
    # reading a session is done with its own token, never with the secret key
    assert (get.method, get.path, get.authorization) == ("GET", "/connect/session", f"Bearer {token}")
    assert create.authorization == f"Bearer {SECRET}"


async def test_a_connect_session_in_keyways_first_shape(fake: Fake) -> None:
    """A gateway from before the current shape sends the end user and organization side by side."""
    fake.answer(
        "GET",
        "/connect/session",
        {
            "data": {
                "end_user": {"id": "u-1", "email": "ann@example.com"},
                "organization": {"id": "org-1"},
                "allowed_integrations": None,
                "expires_at": "2025-01-02T03:34:05.678Z",
            }
        },
    )
    async with AsyncClient(host=fake.url, secret_key=SECRET) as keyway:
        read = await keyway.current.get_connect_session("t")
    assert read.end_user == EndUser(
        id="u-1", email="ann@example.com", organization=EndUserOrganization(id="org-1", display_name=None)
    )
    assert (read.allowed_integrations, read.is_reconnecting) == (None, False)


async def test_current_error_envelopes_map_to_the_tree(fake: Fake) -> None:
    issues = [{"code": "too_big", "message": "Too big: expected number to be <=2000", "path": ["limit"]}]
    fake.answer("GET", "/connections", _envelope("invalid_query_params", "Invalid query", errors=issues), 400)
    fake.answer("GET", "/connections/c-1", _envelope("unknown_provider_config", "Provider does not exists"), 400)
    fake.answer("DELETE", "/connections/c-1", _envelope("unknown_connection"), 400)
    fake.answer("GET", "/connect/session", _envelope("unknown_connect_session_token"), 401)
    fake.answer("GET", "/integrations", {"configs": []})  # a 2024 answer where a current one is due
    async with AsyncClient(host=fake.url, secret_key=SECRET) as keyway:
        with pytest.raises(ValidationError) as invalid:
            await keyway.current.list_connections(limit=5000)
        with pytest.raises(NotFoundError) as unknown_integration:
            await keyway.current.get_connection("nope", "c-1")
        with pytest.raises(NotFoundError) as unknown_connection:
            await keyway.current.delete_connection("gh", "c-1")
        with pytest.raises(NotFoundError) as missing:
            await keyway.current.get_provider("nope")
        with pytest.raises(AuthenticationError) as spent:
            await keyway.current.get_connect_session("spent")
        with pytest.raises(TransportError, match="no 'data'"):
            await keyway.current.list_integrations()
    assert (invalid.value.status, invalid.value.code, invalid.value.errors) == (400, "invalid_query_params", issues)
    assert (unknown_integration.value.status, unknown_integration.value.code) == (400, "unknown_provider_config")
    assert (unknown_connection.value.status, unknown_connection.value.code) == (400, "unknown_connection")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert (spent.value.status, spent.value.code) == (401, "unknown_connect_session_token")


async def test_the_sync_client_has_them_too(fake: Fake) -> None:
    fake.answer("GET", "/connections", {"connections": [LISTED]})
    fake.answer("POST", "/environment/webhook-signing-key/rotate", {"data": {"webhook_signing_key": "k-new"}})

    def use_it() -> tuple[list[str], str, str]:
        with Client(host=fake.url, secret_key=SECRET) as keyway:
            listed = keyway.current.list_connections(tags={"tier": "gold"})
            return [c.connection_id for c in listed], keyway.current.rotate_webhook_signing_key(), repr(keyway.current)

    ids, key, shown = await asyncio.to_thread(use_it)
    assert (ids, key) == (["c-1"], "k-new")
    assert shown == f"CurrentApi(host={fake.url!r})"
    assert fake.sent[0].query == [("tags[tier]", "gold")]
