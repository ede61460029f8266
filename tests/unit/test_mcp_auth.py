"""MCP's OAuth additions, piece by piece (``keyway_shared.credentials.mcp_auth``): the template an
authorization server's flow runs on, the endpoints Keyway will send secrets to, discovery (RFC 9728,
RFC 8414) and registration (RFC 7591) against small servers on 127.0.0.1, and what a refresh reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from auth_gateway.connect.own_client import _reachable_base
from auth_gateway.dashboard.catalog import integration_needs
from keyway_shared.credentials import PermanentTokenError
from keyway_shared.credentials.mcp_auth import (
    AuthorizationServer,
    McpMetadataError,
    RegisteredClient,
    checked_endpoint,
    client_secret_for,
    discover,
    mcp_template,
    own_client_refresh,
    proxy_base,
    register_client,
)
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Integration

from ..support.procs import free_port

Routes = dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def _template(**extra: Any) -> ProviderTemplate:
    return ProviderTemplate.model_validate(
        {
            "auth_mode": "MCP_OAUTH2",
            "authorization_url": "https://as.example/authorize",
            "token_url": "https://as.example/token",
            "disable_pkce": True,
            "token_params": {"grant_type": "authorization_code"},
            **extra,
        }
    )


def _server(resource: str | None = "https://mcp.example/mcp") -> AuthorizationServer:
    return AuthorizationServer(
        issuer="https://auth.example",
        authorization_endpoint="https://auth.example/authorize",
        token_endpoint="https://auth.example/token",
        resource=resource,
    )


def test_the_template_of_a_catalog_entry_sends_its_resource_everywhere_with_pkce() -> None:
    template = mcp_template(_template(authorization_params={"resource": "https://mcp.example/v2"}), None)
    assert template.disable_pkce is False  # PKCE is not the catalog's to turn off here
    assert template.authorization_url == "https://as.example/authorize"
    assert template.authorization_params["resource"] == "https://mcp.example/v2"
    assert template.token_params == {"grant_type": "authorization_code", "resource": "https://mcp.example/v2"}
    assert template.refresh_params == {"resource": "https://mcp.example/v2"}


def test_the_template_of_a_discovered_server_uses_its_endpoints() -> None:
    template = mcp_template(_template(refresh_url="https://as.example/refresh"), _server())
    assert (template.authorization_url, template.token_url, template.refresh_url) == (
        "https://auth.example/authorize",
        "https://auth.example/token",
        None,
    )
    assert template.token_params["resource"] == "https://mcp.example/mcp"
    assert "resource" not in mcp_template(_template(), _server(resource=None)).token_params


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://auth.example/token", False, True),
        ("http://auth.example/token", False, False),
        ("http://127.0.0.1:9/token", True, True),
        ("https://user:pw@auth.example/token", False, False),
        ("https://auth.example/token#frag", False, False),
        ("https://auth.example/${connectionConfig.x}", False, False),
        ("javascript:alert(1)", True, False),
        ("", False, False),
        (None, False, False),
    ],
)
def test_only_plain_https_endpoints_are_sent_anything(url: Any, allow_http: bool, ok: bool) -> None:
    if ok:
        assert checked_endpoint(url, allow_http=allow_http) == url
    else:
        with pytest.raises(McpMetadataError):
            checked_endpoint(url, allow_http=allow_http)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Routes], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(routes: Routes) -> str:
        app = web.Application()
        for path, handler in routes.items():
            method, _, route = path.partition(" ")
            app.router.add_route(method, route, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_discovery_follows_the_resource_metadata_to_its_server(serve: Any) -> None:
    answers: dict[str, Any] = {}

    async def resource(_request: web.Request) -> web.Response:
        return web.json_response(answers["resource"])

    async def server(_request: web.Request) -> web.Response:
        return web.json_response(answers["server"])

    base = await serve(
        {
            "GET /.well-known/oauth-protected-resource/v1/mcp": resource,
            "GET /.well-known/oauth-authorization-server/tenant": server,
        }
    )
    answers["resource"] = {"resource": f"{base}/v1/mcp", "authorization_servers": [f"{base}/tenant"]}
    answers["server"] = {
        "issuer": f"{base}/tenant",
        "authorization_endpoint": f"{base}/tenant/authorize",
        "token_endpoint": f"{base}/tenant/token",
        "registration_endpoint": f"{base}/tenant/register",
        "scopes_supported": ["read", "write"],
        "client_id_metadata_document_supported": True,
    }
    async with aiohttp.ClientSession() as http:
        found = await discover(http, f"{base}/v1/mcp", timeout_seconds=2)
    assert found.issuer == f"{base}/tenant"
    assert found.token_endpoint == f"{base}/tenant/token"
    assert found.registration_endpoint == f"{base}/tenant/register"
    assert found.scopes == ("read", "write")
    assert found.resource == f"{base}/v1/mcp"
    assert found.client_id_metadata_document_supported is True
    stored = found.to_config()
    again = AuthorizationServer.from_config(stored, allow_http=True)
    assert again is not None
    assert (again.token_endpoint, again.resource) == (found.token_endpoint, found.resource)


async def test_without_resource_metadata_the_servers_origin_is_its_authorization_server(serve: Any) -> None:
    answers: dict[str, Any] = {}

    async def server(_request: web.Request) -> web.Response:
        return web.json_response(answers["server"])

    base = await serve({"GET /.well-known/openid-configuration": server})
    answers["server"] = {"authorization_endpoint": f"{base}/a", "token_endpoint": f"{base}/t"}
    async with aiohttp.ClientSession() as http:
        found = await discover(http, f"{base}/mcp", timeout_seconds=2)
    assert (found.issuer, found.authorization_endpoint, found.registration_endpoint) == (base, f"{base}/a", None)
    assert found.resource is None


async def test_discovery_refuses_a_server_without_s256_or_metadata(serve: Any) -> None:
    answers: dict[str, Any] = {}

    async def server(_request: web.Request) -> web.Response:
        return web.json_response(answers["server"])

    base = await serve({"GET /.well-known/oauth-authorization-server": server})
    answers["server"] = {
        "authorization_endpoint": f"{base}/a",
        "token_endpoint": f"{base}/t",
        "code_challenge_methods_supported": ["plain"],
    }
    async with aiohttp.ClientSession() as http:
        with pytest.raises(McpMetadataError, match="S256"):
            await discover(http, f"{base}/mcp", timeout_seconds=2)
        answers["server"] = {"authorization_endpoint": "https://elsewhere.example/a"}  # no token endpoint
        with pytest.raises(McpMetadataError, match="lacks an endpoint"):
            await discover(http, f"{base}/mcp", timeout_seconds=2)
        with pytest.raises(McpMetadataError, match="not an https URL"):
            await discover(http, "ftp://example.com/mcp", timeout_seconds=2)
    empty = await serve({})
    async with aiohttp.ClientSession() as http:
        with pytest.raises(McpMetadataError, match="publishes no metadata"):
            await discover(http, f"{empty}/mcp", timeout_seconds=2)


async def test_registration_asks_for_a_public_client_and_reads_the_answer(serve: Any) -> None:
    seen: list[dict[str, Any]] = []

    async def register(request: web.Request) -> web.Response:
        seen.append(await request.json())
        if seen[-1]["client_name"] == "refuse":
            return web.json_response({"error": "invalid_redirect_uri", "client_secret": "never-shown"}, status=400)
        return web.json_response({"client_id": "c-1", "client_secret": "s-1"}, status=201)

    base = await serve({"POST /register": register})
    async with aiohttp.ClientSession() as http:
        client = await register_client(
            http,
            f"{base}/register",
            redirect_uri="https://keyway.example/oauth/callback",
            client_name="Keyway",
            extra={"grant_types": ["authorization_code"]},
            timeout_seconds=2,
        )
        assert client == RegisteredClient(
            client_id="c-1", client_secret="s-1", redirect_uri="https://keyway.example/oauth/callback"
        )
        assert seen[0]["token_endpoint_auth_method"] == "none"
        assert seen[0]["redirect_uris"] == ["https://keyway.example/oauth/callback"]
        assert seen[0]["grant_types"] == ["authorization_code"]  # the catalog's, over the default
        with pytest.raises(McpMetadataError) as refused:
            await register_client(
                http, f"{base}/register", redirect_uri="x", client_name="refuse", extra={}, timeout_seconds=2
            )
    assert refused.value.message == "The client registration answered 400 (invalid_redirect_uri)."


def _integration(**fields: Any) -> Integration:
    return Integration(environment="dev", unique_key="mcp", provider="test-mcp", **fields)


def test_a_refresh_runs_as_the_client_the_connection_was_made_with() -> None:
    kept = RegisteredClient(client_id="reg-1", client_secret="reg-secret", redirect_uri="https://k/cb")
    integration = _integration(custom={"mcp_client:https://as.example/register": kept.dumps()})
    config = {"oauth_client_info": json.dumps({"client_id": "reg-1"})}
    template, client_id, secret = own_client_refresh(_template(), integration, config)
    assert (client_id, secret, template.token_url) == ("reg-1", "reg-secret", "https://as.example/token")
    assert client_secret_for(integration.custom, "someone-else") == ""

    static = _integration(oauth_client_id="own", oauth_client_secret="own-secret")
    assert own_client_refresh(_template(), static, {})[1:] == ("own", "own-secret")
    with pytest.raises(PermanentTokenError):
        own_client_refresh(_template(), _integration(), {})
    with pytest.raises(PermanentTokenError):
        own_client_refresh(_template(), static, {"oauth_metadata": "{not json"})


def test_the_proxy_goes_to_a_discovered_server_only_for_a_connection_authorized_there() -> None:
    stored = {"mcp_server_url": "https://mcp.example/mcp", **_server().to_config()}
    assert proxy_base(stored) == "https://mcp.example/mcp"
    assert proxy_base({"mcp_server_url": "https://mcp.example/mcp"}) is None


@pytest.mark.parametrize(
    ("url", "reachable"),
    [
        ("https://keyway.example", True),
        ("http://127.0.0.1:3003", True),
        ("http://localhost:3003", True),
        ("http://keyway.internal", False),
        ("http://10.0.0.1", False),
    ],
)
def test_a_metadata_document_needs_a_url_a_server_can_fetch(url: str, reachable: bool) -> None:
    assert _reachable_base(url) is reachable


@pytest.mark.parametrize(
    ("registration", "client", "callback"),
    [("static", True, True), ("dynamic", False, False), ("cimd", False, False), (None, False, False)],
)
def test_the_dashboard_asks_for_a_client_only_when_the_integration_brings_it(
    registration: str | None, client: bool, callback: bool
) -> None:
    needs = integration_needs(_template(client_registration=registration))
    assert (needs.client, needs.callback, needs.scopes) == (client, callback, True)
