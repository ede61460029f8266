"""The OAuth 2 popup flow through the gateway, driven over HTTP and the WebSocket as the SDK does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ..support.oauth_provider import OAuthProvider
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def gw(provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    catalog = {
        "test-oauth2": provider.template(token_response_metadata=["team.id"], scope_separator=" "),
        "test-tenant": provider.template(
            authorization_url=f"{provider.base}/t/${{connectionConfig.tenant}}/authorize",
            token_url=f"{provider.base}/t/${{connectionConfig.tenant}}/token",
            authorization_params={"prompt": "consent", "access_type": "offline"},
            connection_config={"tenant": {"type": "string"}},
        ),
        "test-basic-auth": provider.template(authorization_method="header", disable_pkce=True),
        "test-slow": provider.template(),
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=1.0,
        public_key_connect="allowed",
    ) as gateway:
        for key, template in [("oauth", "test-oauth2"), ("tenant", "test-tenant"), ("basicauth", "test-basic-auth")]:
            await create_integration(gateway, template, key, **provider.integration_fields, oauth_scopes="read,write")
        yield gateway


async def open_socket(gw: Gateway) -> tuple[Any, str]:
    socket = await gw.client.ws_connect("/")
    ack = json.loads((await socket.receive()).data)
    assert ack["message_type"] == "connection_ack"
    return socket, ack["ws_client_id"]


async def run_flow(gw: Gateway, provider: OAuthProvider, key: str, query: str) -> tuple[Any, Any, dict[str, Any]]:
    """connect → provider → callback; returns (callback response, its html, the websocket frame)."""
    socket, ws_client_id = await open_socket(gw)
    resp = await gw.client.get(
        f"/oauth/connect/{key}?{query}&public_key={gw.public_key}&ws_client_id={ws_client_id}", allow_redirects=False
    )
    if resp.status != 302:
        frame = json.loads((await socket.receive(timeout=10)).data)
        await socket.close()
        return resp, await resp.text(), frame
    location = resp.headers["Location"]
    resp.release()
    async with gw.client.session.get(location, allow_redirects=False) as authorized:
        callback = authorized.headers["Location"]
    parts = urlsplit(callback)
    resp = await gw.client.get(f"{parts.path}?{parts.query}", allow_redirects=False)
    frame = json.loads((await socket.receive(timeout=10)).data)
    await socket.close()
    return resp, await resp.text(), frame


async def test_authorization_code_with_pkce_end_to_end(gw: Gateway, provider: OAuthProvider, db: Any) -> None:
    resp, html, frame = await run_flow(
        gw, provider, "oauth", "connection_id=user-1&authorization_params[login_hint]=a@b.c"
    )
    assert resp.status == 200, html
    assert "window.close" in html
    assert frame == {
        "message_type": "success",
        "provider_config_key": "oauth",
        "connection_id": "user-1",
        "is_pending": False,
    }
    authorize = provider.authorize_requests[-1]
    assert authorize["response_type"] == "code"
    assert authorize["scope"] == "read write"  # integration scopes joined with the template's separator
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["login_hint"] == "a@b.c"
    assert authorize["redirect_uri"] == gw.settings.callback_url
    token_request = provider.token_requests[-1]
    assert token_request["grant_type"] == "authorization_code"
    assert token_request["code_verifier"]  # the PKCE verifier reached the token endpoint (and matched)
    assert token_request["client_secret"] == provider.client_secret  # client_secret_post by default

    resp = await gw.client.get("/connection/user-1?provider_config_key=oauth", headers=gw.auth)
    connection = await resp.json()
    credentials = connection["credentials"]
    assert credentials["type"] == "OAUTH2"
    assert credentials["access_token"].startswith("at_")
    assert credentials["expires_at"].endswith("Z")
    assert "refresh_token" not in credentials
    assert "refresh_token" not in credentials["raw"]
    assert connection["connection_config"]["team.id"] == "T123"  # token_response_metadata
    resp = await gw.client.get("/connection/user-1?provider_config_key=oauth&refresh_token=true", headers=gw.auth)
    credentials = (await resp.json())["credentials"]
    assert credentials["refresh_token"].startswith("rt_")
    assert credentials["raw"]["refresh_token"] == credentials["refresh_token"]
    raw = await db["connections"].find_one({"connection_id": "user-1"})
    assert credentials["refresh_token"] not in json.dumps(raw, default=str)

    # the same connection authorized again is an override, not a second connection
    resp, _html, frame = await run_flow(gw, provider, "oauth", "connection_id=user-1")
    assert frame["message_type"] == "success"
    assert await db["connections"].count_documents({"connection_id": "user-1"}) == 1


async def test_interpolated_urls_params_and_basic_client_auth(gw: Gateway, provider: OAuthProvider) -> None:
    _resp, _html, frame = await run_flow(
        gw,
        provider,
        "tenant",
        "connection_id=t-1&params[tenant]=acme&params[oauth_scopes_override]=admin&authorization_params[prompt]=undefined",
    )
    assert frame["message_type"] == "success", frame
    authorize = provider.authorize_requests[-1]
    assert authorize["scope"] == "admin"
    assert "prompt" not in authorize  # the literal 'undefined' removed the template default
    assert authorize["access_type"] == "offline"
    resp = await gw.client.get("/connection/t-1?provider_config_key=tenant", headers=gw.auth)
    config = (await resp.json())["connection_config"]
    assert config["tenant"] == "acme"
    assert config["oauth_scopes_override"] == ["admin"]

    resp, _html, frame = await run_flow(gw, provider, "basicauth", "connection_id=b-1")
    assert frame["message_type"] == "success", frame
    assert "code_challenge" not in provider.authorize_requests[-1]  # disable_pkce
    token_request = provider.token_requests[-1]
    assert token_request["_auth"].startswith("Basic ")
    assert "client_secret" not in token_request


async def test_client_overrides_are_used_and_stored(gw: Gateway, provider: OAuthProvider) -> None:
    # The backend lets this session's browser bring its own client id and fixes the secret itself.
    defaults = {
        "oauth": {"connection_config": {"oauth_client_id_override": "", "oauth_client_secret_override": "override-s3"}}
    }
    resp = await gw.client.post(
        "/connect/sessions",
        json={"end_user": {"id": "u-1"}, "integrations_config_defaults": defaults},
        headers=gw.auth,
    )
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["data"]["token"]
    query = (
        f"connect_session_token={token}&credentials[oauth_client_id_override]=override-id"
        "&credentials[oauth_client_secret_override]=the-browsers-secret"
    )
    socket, ws_client_id = await open_socket(gw)
    resp = await gw.client.get(f"/oauth/connect/oauth?{query}&ws_client_id={ws_client_id}", allow_redirects=False)
    assert resp.status == 302, await resp.text()
    async with gw.client.session.get(resp.headers["Location"], allow_redirects=False) as authorized:
        callback = urlsplit(authorized.headers["Location"])
    resp = await gw.client.get(f"{callback.path}?{callback.query}", allow_redirects=False)
    frame = json.loads((await socket.receive(timeout=10)).data)
    await socket.close()
    assert frame["message_type"] == "success", frame
    assert provider.authorize_requests[-1]["client_id"] == "override-id"
    assert provider.token_requests[-1]["client_secret"] == "override-s3"  # the session's value, not the browser's
    resp = await gw.client.get(f"/connection/{frame['connection_id']}?provider_config_key=oauth", headers=gw.auth)
    credentials = (await resp.json())["credentials"]
    assert credentials["config_override"] == {"client_id": "override-id", "client_secret": "override-s3"}


@pytest.mark.parametrize(
    ("query", "key", "error_type", "status"),
    [
        ("public_key_missing", "oauth", "missing_public_key", 401),
        ("", "oauth", "missing_connection_id", 400),
        ("connection_id=c", "nope", "provider_config_err", 400),
        ("connection_id=c", "tenant", "url_param_err", 400),
    ],
)
async def test_connect_errors_reach_the_socket(
    gw: Gateway, provider: OAuthProvider, db: Any, query: str, key: str, error_type: str, status: int
) -> None:
    socket, ws_client_id = await open_socket(gw)
    public = "" if query == "public_key_missing" else f"&public_key={gw.public_key}"
    query = "connection_id=c" if query == "public_key_missing" else query
    resp = await gw.client.get(
        f"/oauth/connect/{key}?{query}{public}&ws_client_id={ws_client_id}", allow_redirects=False
    )
    assert resp.status == status  # the request's fault: 4xx (a 500 says the gateway failed)
    assert resp.content_type == "text/html"
    frame = json.loads((await socket.receive(timeout=10)).data)
    assert frame["message_type"] == "error"
    assert frame["error_type"] == error_type
    assert await db["connections"].count_documents({}) == 0
    await socket.close()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("error_400", "invalid_request"), ("error_500", "503"), ("html", "HTML"), ("hang", "did not answer")],
)
async def test_token_endpoint_failures(gw: Gateway, provider: OAuthProvider, db: Any, mode: str, expected: str) -> None:
    provider.token_mode = mode
    resp, _html, frame = await run_flow(gw, provider, "oauth", "connection_id=fail-1")
    assert resp.status == 500
    assert frame["message_type"] == "error"
    assert frame["error_type"] == "token_err"
    assert expected in frame["error_desc"]
    assert await db["connections"].count_documents({}) == 0


async def test_access_denied_reused_and_unknown_state(gw: Gateway, provider: OAuthProvider, db: Any) -> None:
    provider.authorize_mode = "deny"
    resp, _html, frame = await run_flow(gw, provider, "oauth", "connection_id=d-1")
    assert frame["error_type"] == "callback_err"
    assert "access_denied" in frame["error_desc"]
    provider.authorize_mode = "approve"

    socket, ws_client_id = await open_socket(gw)
    resp = await gw.client.get(
        f"/oauth/connect/oauth?connection_id=r-1&public_key={gw.public_key}&ws_client_id={ws_client_id}",
        allow_redirects=False,
    )
    resp.release()
    async with gw.client.session.get(resp.headers["Location"], allow_redirects=False) as authorized:
        callback = urlsplit(authorized.headers["Location"])
    first = await gw.client.get(f"{callback.path}?{callback.query}")
    assert first.status == 200
    assert json.loads((await socket.receive(timeout=10)).data)["message_type"] == "success"
    replay = await gw.client.get(f"{callback.path}?{callback.query}")
    assert replay.status == 400
    assert "already completed" in await replay.text()

    state = parse_qs(callback.query)["state"][0]
    unknown = await gw.client.get(f"/oauth/callback?code=x&state={state[::-1]}")
    assert unknown.status == 400
    assert "expired or is unknown" in await unknown.text()
    missing = await gw.client.get("/oauth/callback?code=x")
    assert missing.status == 400


async def test_legacy_popup_without_ws_client_id_posts_message(gw: Gateway, provider: OAuthProvider) -> None:
    resp = await gw.client.get(
        f"/oauth/connect/oauth?connection_id=l-1&public_key={gw.public_key}", allow_redirects=False
    )
    resp.release()
    async with gw.client.session.get(resp.headers["Location"], allow_redirects=False) as authorized:
        callback = urlsplit(authorized.headers["Location"])
    page = await gw.client.get(f"{callback.path}?{callback.query}")
    html = await page.text()
    assert page.status == 200
    assert "AUTHORIZATION_SUCEEDED" in html
    assert '"connectionId": "l-1"' in html


async def test_github_installation_started_on_github_goes_back(gw: Gateway) -> None:
    for path in ("/oauth/callback", "/app-auth/connect"):
        resp = await gw.client.get(
            f"{path}?installation_id=42&setup_action=install",
            headers={"Referer": "https://github.com/settings/installations"},
            allow_redirects=False,
        )
        assert resp.status == 302
        assert resp.headers["Location"] == "https://github.com/settings/installations"
        resp = await gw.client.get(f"{path}?installation_id=42&setup_action=install", allow_redirects=False)
        assert resp.headers["Location"] == "https://github.com"
