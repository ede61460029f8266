"""MCP_OAUTH2 and MCP_OAUTH2_GENERIC against a strict MCP authorization server on 127.0.0.1.

The popup flow as the frontend SDK runs it (``/oauth/connect`` → the server's ``/authorize`` → the
callback), then a refresh and a proxied MCP call. Nango's references: ``mcp.client.ts`` (registration),
``mcpGeneric.client.ts`` (discovery, refresh), ``oauth.controller.ts``'s MCP branches and
``clientMetadata/environmentUuid/getClientMetadata.ts`` (the client ID metadata document).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from activity_log.app import create_app as create_activity_app
from activity_log.settings import ActivityLogSettings
from token_refresher.app import create_app as create_refresher_app
from token_refresher.settings import RefresherSettings

from ..support.inproc import running
from ..support.mcp_auth_server import Client, McpAuthServer
from ..support.polling import eventually
from .flow_helpers import get_connection, run_popup
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .refresher_world import REFRESHER_SETTINGS
from .test_activity_connect_steps import everything_stored, operation_of

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def server() -> AsyncIterator[McpAuthServer]:
    mcp = await McpAuthServer().start()
    yield mcp
    await mcp.stop()


def catalog(server: McpAuthServer) -> dict[str, Any]:
    return {
        "test-mcp": server.template("dynamic"),
        "test-mcp-cimd": server.template("cimd"),
        "test-mcp-static": server.template("static"),
        "test-mcp-generic": {
            "display_name": "MCP (generic)",
            "auth_mode": "MCP_OAUTH2_GENERIC",
            # As Nango's mcp-generic: no proxy base URL, the calls go to the connection's server.
            "connection_config": {"mcp_server_url": {"type": "string", "title": "MCP Server URL"}},
        },
        # Nango's entry: only https MCP servers.
        "mcp-generic-https": {
            "auth_mode": "MCP_OAUTH2_GENERIC",
            "connection_config": {"mcp_server_url": {"type": "string", "pattern": "^https://[a-zA-Z0-9.-]+(?:/.*)?$"}},
        },
    }


@pytest.fixture
async def gw(server: McpAuthServer, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog(server)),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        await create_integration(gateway, "test-mcp", "mcp")
        await create_integration(gateway, "test-mcp-cimd", "mcp-cimd")
        await create_integration(gateway, "test-mcp-generic", "mcp-any")
        await create_integration(gateway, "mcp-generic-https", "mcp-https")
        yield gateway


async def refreshed(gw: Gateway, connection_id: str, key: str) -> dict[str, Any]:
    resp = await gw.client.get(
        f"/connection/{connection_id}?provider_config_key={key}&refresh_token=true&force_refresh=true", headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def mcp_call(gw: Gateway, connection_id: str, key: str, path: str = "/proxy/mcp") -> tuple[int, Any]:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
    resp = await gw.client.post(
        path, json=call, headers={**gw.auth, "Connection-Id": connection_id, "Provider-Config-Key": key}
    )
    return resp.status, await resp.json()


async def test_registered_once_then_connect_refresh_and_proxy(gw: Gateway, server: McpAuthServer, db: Any) -> None:
    result = await run_popup(gw, "mcp", "connection_id=m-1")
    assert result.frame["message_type"] == "success", result.frame
    assert len(server.registrations) == 1
    registration = server.registrations[0]
    assert registration["redirect_uris"] == [gw.settings.callback_url]
    assert registration["token_endpoint_auth_method"] == "none"
    assert registration["grant_types"] == ["authorization_code", "refresh_token"]
    (client_id,) = server.clients
    authorize = server.authorize_requests[-1]
    assert (authorize["client_id"], authorize["resource"]) == (client_id, server.mcp_url)
    assert authorize["code_challenge_method"] == "S256"
    exchange = server.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["resource"] == server.mcp_url
    assert "client_secret" not in exchange  # a public client sends its id alone

    connection = await get_connection(gw, "m-1", "mcp")
    assert connection["credentials"]["type"] == "OAUTH2"
    assert json.loads(connection["connection_config"]["oauth_client_info"]) == {"client_id": client_id}

    # The client is reused: a second connect registers nothing.
    assert (await run_popup(gw, "mcp", "connection_id=m-2")).frame["message_type"] == "success"
    assert len(server.registrations) == 1
    assert server.authorize_requests[-1]["client_id"] == client_id

    before = connection["credentials"]["access_token"]
    after = await refreshed(gw, "m-1", "mcp")
    assert after["credentials"]["access_token"] != before
    refresh = server.token_requests[-1]
    assert (refresh["grant_type"], refresh["client_id"], refresh["resource"]) == (
        "refresh_token",
        client_id,
        server.mcp_url,
    )

    status, answer = await mcp_call(gw, "m-1", "mcp")
    assert status == 200, answer
    assert answer == {"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}
    assert server.mcp_calls[-1]["method"] == "tools/list"


async def test_a_registered_secret_is_kept_encrypted_and_sent(gw: Gateway, server: McpAuthServer, db: Any) -> None:
    server.issue_secrets = True
    assert (await run_popup(gw, "mcp", "connection_id=s-1")).frame["message_type"] == "success"
    (client,) = server.clients.values()
    assert server.token_requests[-1]["client_secret"] == client.client_secret
    stored = await db["integrations"].find_one({"unique_key": "mcp"})
    assert client.client_secret not in json.dumps(stored, default=str)
    assert client.client_secret not in json.dumps(await get_connection(gw, "s-1", "mcp"))
    # Replacing the integration with PUT /config keeps the client its connections were made as.
    resp = await gw.client.put(
        "/config", json={"provider": "test-mcp", "provider_config_key": "mcp", "oauth_scopes": "a"}, headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    await refreshed(gw, "s-1", "mcp")
    assert server.token_requests[-1]["client_secret"] == client.client_secret
    assert (await run_popup(gw, "mcp", "connection_id=s-2")).frame["message_type"] == "success"
    assert len(server.registrations) == 1


async def test_two_connects_registering_at_once_keep_one_client(gw: Gateway, server: McpAuthServer, db: Any) -> None:
    server.registration_delay = 0.3  # both find no client and register
    first, second = await asyncio.gather(
        run_popup(gw, "mcp", "connection_id=race-1"), run_popup(gw, "mcp", "connection_id=race-2")
    )
    assert first.frame["message_type"] == second.frame["message_type"] == "success"
    assert len(server.registrations) == 2
    used = {request["client_id"] for request in server.authorize_requests}
    assert len(used) == 1  # the second registration was dropped for the first one kept
    stored = set()
    for connection_id in ("race-1", "race-2"):
        config = (await get_connection(gw, connection_id, "mcp"))["connection_config"]
        stored.add(json.loads(config["oauth_client_info"])["client_id"])
    assert stored == used
    resp = await gw.client.get("/config/mcp?include_creds=true", headers=gw.auth)
    custom = (await resp.json())["config"]["custom"]
    (kept,) = [json.loads(value)["client_id"] for name, value in custom.items() if name.startswith("mcp_client:")]
    assert {kept} == used
    await refreshed(gw, "race-2", "mcp")


async def test_a_registration_refused_stores_nothing(gw: Gateway, server: McpAuthServer, db: Any) -> None:
    server.refuse_registration = True
    result = await run_popup(gw, "mcp", "connection_id=r-1")
    assert (result.frame["message_type"], result.frame["error_type"]) == ("error", "client_registration_err")
    assert "400" in result.frame["error_desc"]
    assert server.authorize_requests == []
    resp = await gw.client.get("/connection/r-1?provider_config_key=mcp", headers=gw.auth)
    assert resp.status == 404
    server.refuse_registration = False  # a later connect registers: nothing half-kept stood in the way
    assert (await run_popup(gw, "mcp", "connection_id=r-1")).frame["message_type"] == "success"
    assert len(server.clients) == 1


async def test_client_metadata_document_names_the_client(gw: Gateway, server: McpAuthServer) -> None:
    server.cimd_supported = True
    result = await run_popup(gw, "mcp-cimd", "connection_id=c-1")
    assert result.frame["message_type"] == "success", result.frame
    document_url = f"{gw.settings.public_url}/oauth/client-metadata/dev/mcp-cimd"
    assert server.authorize_requests[-1]["client_id"] == document_url
    assert server.metadata_fetches
    assert set(server.metadata_fetches) == {document_url}
    assert server.registrations == []

    resp = await gw.client.get("/oauth/client-metadata/dev/mcp-cimd")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    document = await resp.json()
    assert document["client_id"] == document_url
    assert document["redirect_uris"] == [gw.settings.callback_url]
    assert document["token_endpoint_auth_method"] == "none"
    assert document["grant_types"] == ["authorization_code", "refresh_token"]

    await refreshed(gw, "c-1", "mcp-cimd")
    assert server.token_requests[-1]["client_id"] == document_url


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/oauth/client-metadata/nowhere/mcp-cimd", "unknown_environment"),
        ("/oauth/client-metadata/dev/missing", "unknown_provider_config"),
    ],
)
async def test_client_metadata_document_for_nothing_is_a_404(gw: Gateway, path: str, code: str) -> None:
    resp = await gw.client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == code


async def test_client_metadata_document_only_for_mcp_integrations(gw: Gateway, tmp_path: Path) -> None:
    await create_integration(gw, "posthog", "ph")
    resp = await gw.client.get("/oauth/client-metadata/dev/ph")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "unknown_provider_config"


async def test_generic_discovers_registers_refreshes(gw: Gateway, server: McpAuthServer) -> None:
    url = quote(server.mcp_url, safe="")
    # A browser's own metadata is dropped: only discovery says where tokens go.
    forged = quote(json.dumps({"token_endpoint": "https://attacker.example/token"}), safe="")
    result = await run_popup(
        gw, "mcp-any", f"connection_id=g-1&params[mcp_server_url]={url}&params[oauth_metadata]={forged}"
    )
    assert result.frame["message_type"] == "success", result.frame
    assert len(server.registrations) == 1
    assert server.registrations[0]["redirect_uris"] == [gw.settings.callback_url]
    authorize = server.authorize_requests[-1]
    assert authorize["scope"] == "mcp:tools"  # the resource's scopes_supported
    assert authorize["resource"] == server.mcp_url

    connection = await get_connection(gw, "g-1", "mcp-any")
    config = connection["connection_config"]
    assert config["mcp_server_url"] == server.mcp_url
    assert json.loads(config["oauth_metadata"])["token_endpoint"] == f"{server.base}/as/token"
    assert config["oauth_resource_url"] == server.mcp_url

    assert (await run_popup(gw, "mcp-any", f"connection_id=g-2&params[mcp_server_url]={url}")).frame[
        "message_type"
    ] == "success"
    assert len(server.registrations) == 1  # kept per authorization server, reused

    after = await refreshed(gw, "g-1", "mcp-any")
    assert after["credentials"]["access_token"] != connection["credentials"]["access_token"]
    assert server.token_requests[-1]["grant_type"] == "refresh_token"
    status, answer = await mcp_call(gw, "g-1", "mcp-any", "/proxy/")  # the server's own URL
    assert status == 200, answer
    assert answer["result"] == {"tools": []}


async def test_generic_prefers_the_metadata_document(gw: Gateway, server: McpAuthServer) -> None:
    server.cimd_supported = True
    url = quote(server.mcp_url, safe="")
    result = await run_popup(gw, "mcp-any", f"connection_id=g-3&params[mcp_server_url]={url}")
    assert result.frame["message_type"] == "success", result.frame
    assert server.registrations == []
    assert server.authorize_requests[-1]["client_id"].endswith("/oauth/client-metadata/dev/mcp-any")


@pytest.mark.parametrize(
    ("key", "params", "error_type"),
    [
        ("mcp-any", "", "missing_connection_config"),
        ("mcp-https", "&params[mcp_server_url]=http%3A%2F%2F127.0.0.1%3A1%2Fmcp", "url_param_err"),
        ("mcp-any", "&params[mcp_server_url]=http%3A%2F%2F127.0.0.1%3A1%2Fmcp", "discovery_err"),
        # A browser naming the cloud's metadata service: the egress guard refuses it before any byte goes.
        ("mcp-any", "&params[mcp_server_url]=http%3A%2F%2F169.254.169.254%2Fmcp", "discovery_err"),
        ("mcp-any", "&params[mcp_server_url]=http%3A%2F%2F10.0.0.1%2Fmcp", "discovery_err"),
    ],
)
async def test_generic_bad_input_is_refused_and_nothing_stored(
    gw: Gateway, key: str, params: str, error_type: str
) -> None:
    result = await run_popup(gw, key, f"connection_id=bad{params}")
    assert result.frame["message_type"] == "error"
    assert result.frame["error_type"] == error_type
    if error_type == "discovery_err":
        assert result.frame["error_desc"] == "The MCP server's metadata could not be reached."
    resp = await gw.client.get(f"/connection/bad?provider_config_key={key}", headers=gw.auth)
    assert resp.status == 404


async def test_the_token_refresher_renews_before_expiry(
    gw: Gateway, server: McpAuthServer, tmp_path: Path, service_settings: dict[str, Any], encryption_key: str
) -> None:
    server.token_lifetime = 3  # short-lived: the refresher re-mints halfway
    assert (await run_popup(gw, "mcp", "connection_id=bg-1")).frame["message_type"] == "success"
    first = (await get_connection(gw, "bg-1", "mcp"))["credentials"]["access_token"]
    settings = RefresherSettings(
        **service_settings,
        **REFRESHER_SETTINGS,
        encryption_key=encryption_key,
        providers_file=providers_yaml(tmp_path, catalog(server)),
    )
    async with running(create_refresher_app(settings)):

        async def refreshed_in_background() -> bool:
            return any(request["grant_type"] == "refresh_token" for request in server.token_requests)

        await eventually(refreshed_in_background, timeout=15, what="the refresher to refresh the MCP connection")
    refresh = next(request for request in server.token_requests if request["grant_type"] == "refresh_token")
    assert refresh["resource"] == server.mcp_url
    assert "client_secret" not in refresh
    stored = (await get_connection(gw, "bg-1", "mcp"))["credentials"]["access_token"]
    assert stored != first
    assert (await mcp_call(gw, "bg-1", "mcp"))[0] == 200


async def test_the_activity_log_tells_discovery_and_registration_without_secrets(
    gw: Gateway, server: McpAuthServer, service_settings: dict[str, Any], db: Any
) -> None:
    server.issue_secrets = True
    settings = ActivityLogSettings(**service_settings, batch_delay_ms=20)
    async with running(create_activity_app(settings)):
        url = quote(server.mcp_url, safe="")
        result = await run_popup(gw, "mcp-any", f"connection_id=log-1&params[mcp_server_url]={url}")
        assert result.frame["message_type"] == "success"
        op = await operation_of(gw, "log-1", "success", 5)
    messages = [m["message"] for m in op["messages"]]
    assert messages[:3] == [
        f"Authorization server discovered: {server.base}/as",
        "OAuth client registered at 127.0.0.1",
        "OAuth client: dynamic",
    ]
    assert op["messages"][0]["meta"]["token_endpoint"] == f"{server.base}/as/token"
    (client,) = server.clients.values()
    assert op["messages"][2]["meta"] == {"client_registration": "dynamic", "client_id": client.client_id}
    stored = await everything_stored(db)
    assert client.client_secret not in stored


async def test_a_static_client_is_the_integrations_own(gw: Gateway, server: McpAuthServer) -> None:
    await create_integration(gw, "test-mcp-static", "mcp-static")
    result = await run_popup(gw, "mcp-static", "connection_id=st-0")
    assert (result.frame["message_type"], result.frame["error_type"]) == ("error", "provider_config_err")

    server.clients["own-app"] = Client(
        client_id="own-app", client_secret="own-secret", redirect_uris=[gw.settings.callback_url]
    )
    resp = await gw.client.put(
        "/config",
        json={
            "provider": "test-mcp-static",
            "provider_config_key": "mcp-static",
            "oauth_client_id": "own-app",
            "oauth_client_secret": "own-secret",
        },
        headers=gw.auth,
    )
    assert resp.status == 200, await resp.text()
    result = await run_popup(gw, "mcp-static", "connection_id=st-1")
    assert result.frame["message_type"] == "success", result.frame
    assert server.registrations == []
    exchange = server.token_requests[-1]
    assert (exchange["client_id"], exchange["client_secret"], exchange["resource"]) == (
        "own-app",
        "own-secret",
        server.mcp_url,
    )
    await refreshed(gw, "st-1", "mcp-static")
    assert server.token_requests[-1]["client_secret"] == "own-secret"


async def test_the_metadata_document_carries_the_integrations_branding(gw: Gateway) -> None:
    branding = {
        "oauth_client_name": "Acme Assistant",
        "oauth_client_uri": "https://acme.example",
        "oauth_client_logo_uri": "https://acme.example/logo.png",
    }
    resp = await gw.client.patch("/integrations/mcp-cimd", json={"custom": branding}, headers=gw.auth)
    assert resp.status == 200, await resp.text()
    document = await (await gw.client.get("/oauth/client-metadata/dev/mcp-cimd")).json()
    assert (document["client_name"], document["client_uri"], document["logo_uri"]) == (
        "Acme Assistant",
        "https://acme.example",
        "https://acme.example/logo.png",
    )
    branding["oauth_client_logo_uri"] = "javascript:alert(1)"  # not a web URL: left out
    await gw.client.patch("/integrations/mcp-cimd", json={"custom": branding}, headers=gw.auth)
    document = await (await gw.client.get("/oauth/client-metadata/dev/mcp-cimd")).json()
    assert "logo_uri" not in document
