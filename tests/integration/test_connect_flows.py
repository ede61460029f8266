"""The connect flows beyond OAuth 2 (spec §2.4, §2.5, §5.8, §5.9), end to end through the gateway
against small real providers on 127.0.0.1: OAuth 1.0a, client credentials, App Store, GitHub App,
GitHub App with OAuth, and unauthenticated. Each success is read back as the node SDK would; each
failure must reach the SDK, publish ``auth.failed`` and write no connection.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ..support.github_app_provider import AppStoreKey, GitHubApp, GitHubLikeProvider, ec_key_pem, rsa_key_pem
from ..support.oauth1_provider import OAuth1Provider
from ..support.oauth_provider import OAuthProvider
from .flow_helpers import EventWatch, get_connection, run_popup, watched_events
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

APP_ID = "314159"  # the plain GitHub App
OAUTH_APP_ID = "271828"  # the GitHub App that also authorizes the user (CUSTOM)


@dataclass
class Providers:
    oauth1: OAuth1Provider
    oauth2: OAuthProvider
    github: GitHubLikeProvider
    app_key_pem: str
    oauth_app_key_pem: str


@pytest.fixture
async def providers() -> AsyncIterator[Providers]:
    oauth1, oauth2, github = (
        await OAuth1Provider().start(),
        await OAuthProvider().start(),
        await GitHubLikeProvider().start(),
    )
    app_pem, app_public = rsa_key_pem()
    oauth_app_pem, oauth_app_public = rsa_key_pem()
    github.apps["keyway-plain"] = GitHubApp(app_id=APP_ID, slug="keyway-plain", public_key=app_public)
    github.apps["keyway-oauth"] = GitHubApp(
        app_id=OAUTH_APP_ID,
        slug="keyway-oauth",
        public_key=oauth_app_public,
        client_id="Iv1.gh-client",
        client_secret="gh-client-secret",
    )
    yield Providers(oauth1=oauth1, oauth2=oauth2, github=github, app_key_pem=app_pem, oauth_app_key_pem=oauth_app_pem)
    for server in (oauth1, oauth2, github):
        await server.stop()


@pytest.fixture
async def events(amqp: Any, namespace: str) -> AsyncIterator[EventWatch]:
    async with watched_events(amqp, namespace, "connect-flows") as watch:
        yield watch


def _catalog(p: Providers) -> dict[str, Any]:
    installation_url = p.github.installation_token_url()
    return {
        "test-oauth1": p.oauth1.template(
            scope_separator=",",
            authorization_params={"expiration": "never"},
            request_params={"x_auth_access_type": "write"},
        ),
        "test-cc": p.oauth2.template(auth_mode="OAUTH2_CC", token_params={"grant_type": "client_credentials"}),
        "test-cc-basic": p.oauth2.template(auth_mode="OAUTH2_CC", token_request_auth_method="basic"),  # Spotify
        "test-github-app": {"auth_mode": "APP", "token_url": installation_url},
        "test-github-app-oauth": {
            "auth_mode": "CUSTOM",
            "token_url": {"OAUTH2": f"{p.github.base}/login/oauth/access_token", "APP": installation_url},
        },
        "test-app-store": {
            "auth_mode": "APP_STORE",
            "token_url": f"{p.github.base}/appstore/token",
            "authorization_params": {"audience": "appstoreconnect-v1"},
        },
    }


@pytest.fixture
async def gw(
    providers: Providers,
    events: EventWatch,
    tmp_path: Path,
    start_gateway: StartGateway,
) -> AsyncIterator[Gateway]:
    p = providers
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, _catalog(p)),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        public_url = gateway.settings.public_url.rstrip("/")
        p.github.apps["keyway-plain"].setup_url = f"{public_url}/app-auth/connect"
        p.github.apps["keyway-oauth"].setup_url = f"{public_url}/oauth/callback"
        consumer = {"oauth_client_id": p.oauth1.consumer_key}
        await create_integration(
            gateway,
            "test-oauth1",
            "oauth1",
            **consumer,
            oauth_client_secret=p.oauth1.consumer_secret,
            oauth_scopes="read,write",
        )
        await create_integration(gateway, "test-oauth1", "oauth1-wrong", **consumer, oauth_client_secret="not-it")
        unused = {"oauth_client_id": "unused", "oauth_client_secret": "unused"}  # OAUTH2_CC clients come per connection
        await create_integration(gateway, "test-cc", "cc", **unused, oauth_scopes="read,write")
        await create_integration(gateway, "test-cc-basic", "cc-basic", **unused)
        app_key_b64 = base64.b64encode(p.app_key_pem.encode()).decode()  # stored as Nango stores it
        app_link = f"{p.github.base}/apps/keyway-plain"
        await create_integration(
            gateway,
            "test-github-app",
            "ghapp",
            oauth_client_id=APP_ID,
            oauth_client_secret=app_key_b64,
            app_link=app_link,
        )
        await create_integration(
            gateway,
            "test-github-app",
            "ghapp-badkey",
            oauth_client_id=APP_ID,
            oauth_client_secret="nope",
            app_link=app_link,
        )
        await create_integration(
            gateway,
            "test-github-app-oauth",
            "ghapp-oauth",
            oauth_client_id="Iv1.gh-client",
            oauth_client_secret="gh-client-secret",
            app_link=f"{p.github.base}/apps/keyway-oauth",
            custom={"app_id": OAUTH_APP_ID, "private_key": p.oauth_app_key_pem},
        )
        await create_integration(gateway, "test-app-store", "asc")
        await create_integration(gateway, "unauthenticated", "none")
        yield gateway


async def assert_failed(events: EventWatch, db: Any, connection_id: str, error_type: str, auth_mode: str) -> None:
    """The attempt was announced as auth.failed, and nothing was written or announced as a connection."""
    failed = await events.wait_for("auth.failed", connection_id)
    assert failed["error"]["type"] == error_type, failed
    assert failed["auth_mode"] == auth_mode
    assert await db["connections"].count_documents({"connection_id": connection_id}) == 0
    assert not events.announced_connection(connection_id)


def success_frame(key: str, connection_id: str, *, pending: bool = False) -> dict[str, Any]:
    return {
        "message_type": "success",
        "provider_config_key": key,
        "connection_id": connection_id,
        "is_pending": pending,
    }


# --- OAuth 1.0a -------------------------------------------------------------------------------


async def test_oauth1_three_legged_end_to_end(gw: Gateway, providers: Providers, events: EventWatch, db: Any) -> None:
    oauth1 = providers.oauth1
    result = await run_popup(gw, "oauth1", "connection_id=tw-1&params[region]=eu")
    assert result.status == 200, result.html
    assert result.frame == success_frame("oauth1", "tw-1")
    assert oauth1.rejected == []  # every signature the provider checked was right
    request_token_call, access_token_call = oauth1.requests
    assert request_token_call["x_auth_access_type"] == "write"  # template request_params, inside the signature
    callback = urlsplit(request_token_call["oauth_callback"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == gw.settings.callback_url
    state = parse_qs(callback.query)["state"][0]
    assert result.provider_redirect is not None
    assert result.provider_redirect.startswith(f"{oauth1.base}/oauth/authorize?oauth_token=rt_")
    authorize = oauth1.authorize_requests[-1]
    assert authorize["scope"] == "read,write"  # integration scopes, template separator
    assert authorize["expiration"] == "never"  # template authorization_params
    assert access_token_call["path"] == "/oauth/access_token"
    assert access_token_call["oauth_verifier"]  # signed with the request-token secret and the verifier

    connection = await get_connection(gw, "tw-1", "oauth1")
    credentials = connection["credentials"]
    assert set(credentials) == {"type", "oauth_token", "oauth_token_secret", "raw"}
    assert credentials["type"] == "OAUTH1"
    assert oauth1.access_tokens[credentials["oauth_token"]] == credentials["oauth_token_secret"]
    assert credentials["raw"]["screen_name"] == "ada"
    assert connection["connection_config"] == {"region": "eu"}
    assert (await events.wait_for("connection.created", "tw-1"))["auth_mode"] == "OAUTH1"
    # The request-token secret waited in the session encrypted, never in the clear.
    session = await db["oauth_sessions"].find_one({"_id": state})
    assert session is not None
    assert oauth1.issued_secrets[0] not in json.dumps(session, default=str)


@pytest.mark.parametrize("mode", ["no_verifier", "deny"])
async def test_oauth1_callback_without_verifier(
    gw: Gateway, providers: Providers, events: EventWatch, db: Any, mode: str
) -> None:
    providers.oauth1.authorize_mode = mode
    result = await run_popup(gw, "oauth1", "connection_id=tw-2")
    assert result.status == 400  # the callback's fault, not the gateway's
    assert result.frame["message_type"] == "error"
    assert result.frame["error_type"] == "callback_err"
    assert "oauth_verifier" in result.frame["error_desc"]
    await assert_failed(events, db, "tw-2", "callback_err", "OAUTH1")


async def test_oauth1_token_endpoint_failures(gw: Gateway, providers: Providers, events: EventWatch, db: Any) -> None:
    providers.oauth1.access_mode = "error_500"
    result = await run_popup(gw, "oauth1", "connection_id=tw-3")
    assert (result.status, result.frame["error_type"]) == (500, "token_err")
    assert "503" in result.frame["error_desc"]
    await assert_failed(events, db, "tw-3", "token_err", "OAUTH1")

    # A consumer secret the provider does not know: the request token is refused, the browser never leaves.
    result = await run_popup(gw, "oauth1-wrong", "connection_id=tw-4")
    assert result.provider_redirect is None
    assert (result.status, result.frame["error_type"]) == (500, "token_err")
    assert "signature_invalid" in result.frame["error_desc"]
    await assert_failed(events, db, "tw-4", "token_err", "OAUTH1")
    assert await db["oauth_sessions"].count_documents({"connection_id": "tw-4"}) == 0


# --- OAuth 2 client credentials ---------------------------------------------------------------


async def test_client_credentials_end_to_end(gw: Gateway, providers: Providers, events: EventWatch) -> None:
    provider = providers.oauth2
    client = {"client_id": provider.client_id, "client_secret": provider.client_secret}
    resp = await gw.client.post(f"/oauth2/auth/cc?connection_id=cc-1&public_key={gw.public_key}", json=client)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"providerConfigKey": "cc", "connectionId": "cc-1"}
    token_request = provider.token_requests[-1]
    assert token_request["grant_type"] == "client_credentials"
    assert token_request["scope"] == "read write"  # integration scopes, template separator
    assert token_request["client_secret"] == provider.client_secret  # in the body by default
    credentials = (await get_connection(gw, "cc-1", "cc"))["credentials"]
    assert set(credentials) == {"type", "token", "client_id", "client_secret", "expires_at", "raw"}
    assert credentials["type"] == "OAUTH2_CC"
    assert credentials["token"] in provider.access_tokens
    assert (credentials["client_id"], credentials["client_secret"]) == (provider.client_id, provider.client_secret)
    assert credentials["expires_at"].endswith("Z")
    assert credentials["raw"]["access_token"] == credentials["token"]
    assert (await events.wait_for("connection.created", "cc-1"))["auth_mode"] == "OAUTH2_CC"

    # Client authentication as the template says (a Basic header), scopes from params[oauth_scopes].
    resp = await gw.client.post(
        f"/oauth2/auth/cc-basic?connection_id=cc-2&public_key={gw.public_key}&params[oauth_scopes]=admin", json=client
    )
    assert resp.status == 200, await resp.text()
    token_request = provider.token_requests[-1]
    assert token_request["_auth"].startswith("Basic ")
    assert "client_secret" not in token_request
    assert token_request["scope"] == "admin"
    assert (await get_connection(gw, "cc-2", "cc-basic"))["connection_config"] == {"oauth_scopes": "admin"}


@pytest.mark.parametrize(
    ("body", "token_mode", "status", "code"),
    [
        ({"client_id": "test-client", "client_secret": "wrong"}, "ok", 400, "invalid_client"),
        (
            {"client_id": "test-client", "client_secret": "test-client-secret"},
            "error_500",
            502,
            "token_provider_unavailable",
        ),
        ({"client_id": "test-client"}, "ok", 400, "missing_client_secret"),
    ],
)
async def test_client_credentials_failures(
    gw: Gateway,
    providers: Providers,
    events: EventWatch,
    db: Any,
    body: dict[str, str],
    token_mode: str,
    status: int,
    code: str,
) -> None:
    providers.oauth2.token_mode = token_mode
    resp = await gw.client.post(f"/oauth2/auth/cc?connection_id=cc-bad&public_key={gw.public_key}", json=body)
    assert resp.status == status, await resp.text()
    envelope = await resp.json()
    assert (envelope["error"]["code"], envelope["type"]) == (code, code)  # both SDK generations read it
    await assert_failed(events, db, "cc-bad", code, "OAUTH2_CC")


# --- App Store Connect ------------------------------------------------------------------------


async def test_app_store_end_to_end(gw: Gateway, providers: Providers, events: EventWatch) -> None:
    github = providers.github
    pem, public_key = ec_key_pem()
    github.app_store_keys["KEY123"] = AppStoreKey(issuer_id="issuer-1", public_key=public_key)
    body = {"privateKeyId": "KEY123", "issuerId": "issuer-1", "privateKey": pem, "scope": "GET /v1/apps"}
    resp = await gw.client.post(f"/app-store-auth/asc?connection_id=as-1&public_key={gw.public_key}", json=body)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"providerConfigKey": "asc", "connectionId": "as-1"}
    header, claims = github.jwts[-1]  # verified with the public key by the provider
    assert header == {"alg": "ES256", "kid": "KEY123", "typ": "JWT"}
    assert (claims["iss"], claims["aud"], claims["scope"]) == ("issuer-1", "appstoreconnect-v1", "GET /v1/apps")
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert github.token_requests[-1]["body"] == {}
    connection = await get_connection(gw, "as-1", "asc")
    credentials = connection["credentials"]
    assert set(credentials) == {"type", "access_token", "private_key", "expires_at", "raw"}
    assert credentials["type"] == "APP_STORE"
    assert credentials["access_token"] == credentials["raw"]["token"]
    assert base64.b64decode(credentials["private_key"]).decode().strip() == pem.strip()
    assert credentials["expires_at"].endswith("Z")
    assert connection["connection_config"] == {
        "privateKeyId": "KEY123",
        "issuerId": "issuer-1",
        "scope": "GET /v1/apps",
    }
    assert (await events.wait_for("connection.created", "as-1"))["auth_mode"] == "APP_STORE"


@pytest.mark.parametrize(
    ("key_kind", "code", "detail"),
    [
        ("garbage", "invalid_private_key", "PEM"),
        ("rsa", "invalid_private_key", "P-256"),
        ("unregistered", "token_request_failed", "NOT_AUTHORIZED"),  # well-formed, but not the key Apple knows
    ],
)
async def test_app_store_bad_private_key(
    gw: Gateway, providers: Providers, events: EventWatch, db: Any, key_kind: str, code: str, detail: str
) -> None:
    _pem, public_key = ec_key_pem()
    providers.github.app_store_keys["KEY123"] = AppStoreKey(issuer_id="issuer-1", public_key=public_key)
    private_key = {
        "garbage": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "rsa": rsa_key_pem()[0],
        "unregistered": ec_key_pem()[0],
    }[key_kind]
    body = {"privateKeyId": "KEY123", "issuerId": "issuer-1", "privateKey": private_key}
    resp = await gw.client.post(f"/app-store-auth/asc?connection_id=as-bad&public_key={gw.public_key}", json=body)
    assert resp.status == 400, await resp.text()
    envelope = await resp.json()
    assert envelope["error"]["code"] == code
    assert detail in envelope["error"]["message"]
    await assert_failed(events, db, "as-bad", code, "APP_STORE")


# --- GitHub App (APP) -------------------------------------------------------------------------


async def test_github_app_install_end_to_end(gw: Gateway, providers: Providers, events: EventWatch) -> None:
    github = providers.github
    result = await run_popup(gw, "ghapp", "connection_id=gh-1")
    assert result.provider_redirect is not None
    assert result.provider_redirect.startswith(f"{github.base}/apps/keyway-plain/installations/new?state=")
    assert result.status == 200, result.html
    assert result.frame == success_frame("ghapp", "gh-1")
    header, claims = github.jwts[-1]  # verified with the app's public key by the provider
    assert header == {"alg": "RS256", "typ": "JWT"}
    assert claims["iss"] == APP_ID
    assert claims["exp"] - claims["iat"] == 10 * 60  # issued a minute back, valid nine ahead
    assert github.token_requests[-1]["accept"] == "application/vnd.github.v3+json"
    connection = await get_connection(gw, "gh-1", "ghapp")
    credentials = connection["credentials"]
    assert set(credentials) == {"type", "access_token", "expires_at", "raw"}
    assert credentials["type"] == "APP"
    assert credentials["access_token"] == credentials["raw"]["token"]
    assert credentials["expires_at"].endswith("Z")
    (installation_id,) = github.installations
    assert connection["connection_config"] == {"installation_id": installation_id, "app_id": APP_ID}
    assert (await events.wait_for("connection.created", "gh-1"))["auth_mode"] == "APP"


@pytest.mark.parametrize(
    ("key", "install_mode", "token_mode", "error_type", "status"),
    [
        ("ghapp", "request", "ok", "wrong_auth_mode", 400),  # an organization owner must approve first
        ("ghapp", "install", "error_500", "token_err", 500),  # GitHub failed
        ("ghapp-badkey", "install", "ok", "provider_config_err", 400),  # caught before the user installs
    ],
)
async def test_github_app_failures(
    gw: Gateway,
    providers: Providers,
    events: EventWatch,
    db: Any,
    key: str,
    install_mode: str,
    token_mode: str,
    error_type: str,
    status: int,
) -> None:
    providers.github.install_mode = install_mode
    providers.github.token_mode = token_mode
    result = await run_popup(gw, key, "connection_id=gh-2")
    assert result.status == status
    assert result.frame["message_type"] == "error"
    assert result.frame["error_type"] == error_type, result.frame
    await assert_failed(events, db, "gh-2", error_type, "APP")


async def test_installation_started_on_github_goes_back(gw: Gateway) -> None:
    query = "installation_id=7&setup_action=install"
    referer = "https://github.com/organizations/acme/settings/installations"
    resp = await gw.client.get(f"/app-auth/connect?{query}", headers={"Referer": referer}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, referer)
    resp = await gw.client.get(f"/app-auth/connect?{query}", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "https://github.com")
    resp = await gw.client.get("/app-auth/connect?installation_id=7", allow_redirects=False)
    assert resp.status == 400  # no state and no setup action: a clear page, not a hang


# --- GitHub App with user authorization (CUSTOM) ----------------------------------------------


async def test_github_app_oauth_end_to_end(gw: Gateway, providers: Providers, events: EventWatch) -> None:
    github = providers.github
    result = await run_popup(gw, "ghapp-oauth", "connection_id=gho-1")
    assert result.status == 200, result.html
    assert result.frame == success_frame("ghapp-oauth", "gho-1")
    code_exchange = next(r for r in github.token_requests if r["path"] == "/login/oauth/access_token")
    assert (code_exchange["grant_type"], code_exchange["client_id"]) == ("authorization_code", "Iv1.gh-client")
    assert github.jwts[-1][1]["iss"] == OAUTH_APP_ID  # the installation token is the app's (custom.app_id)
    connection = await get_connection(gw, "gho-1", "ghapp-oauth")
    assert connection["credentials"]["type"] == "APP"
    assert connection["credentials"]["access_token"].startswith("ghs_")
    (installation_id,) = github.installations
    assert connection["connection_config"] == {"installation_id": installation_id, "app_id": OAUTH_APP_ID}
    assert (await events.wait_for("connection.created", "gho-1"))["auth_mode"] == "CUSTOM"


async def test_github_app_oauth_pending_until_approved(gw: Gateway, providers: Providers, events: EventWatch) -> None:
    providers.github.install_mode = "request"  # the user authorized, the organization has not installed yet
    result = await run_popup(gw, "ghapp-oauth", "connection_id=gho-2")
    assert result.status == 200, result.html
    assert result.frame == success_frame("ghapp-oauth", "gho-2", pending=True)
    assert providers.github.jwts == []  # no installation, so no installation token was asked for
    connection = await get_connection(gw, "gho-2", "ghapp-oauth")
    assert connection["connection_config"] == {"app_id": OAUTH_APP_ID, "pending": True}
    assert connection["credentials"]["type"] == "OAUTH2"
    assert connection["credentials"]["access_token"].startswith("ghu_")
    await events.wait_for("connection.created", "gho-2")


# --- No credentials (NONE) --------------------------------------------------------------------


async def test_unauthenticated_connections(gw: Gateway, events: EventWatch, db: Any) -> None:
    resp = await gw.client.post(f"/unauth/none?connection_id=u-1&public_key={gw.public_key}&params[team]=a")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"providerConfigKey": "none", "connectionId": "u-1"}
    connection = await get_connection(gw, "u-1", "none")
    assert (connection["credentials"], connection["connection_config"]) == ({}, {"team": "a"})

    # 0.42.13's create() may leave the id to the server.
    resp = await gw.client.post(f"/auth/unauthenticated/none?public_key={gw.public_key}")
    assert resp.status == 200, await resp.text()
    generated = (await resp.json())["connectionId"]
    assert uuid.UUID(generated).version == 4
    assert (await get_connection(gw, generated, "none"))["credentials"] == {}
    for connection_id in ("u-1", generated):
        assert (await events.wait_for("connection.created", connection_id))["auth_mode"] == "NONE"

    resp = await gw.client.post(f"/unauth/none?public_key={gw.public_key}")  # the old route needs the id
    assert (resp.status, (await resp.json())["type"]) == (400, "missing_connection")
    resp = await gw.client.post(f"/unauth/cc?connection_id=u-3&public_key={gw.public_key}")
    assert (resp.status, (await resp.json())["type"]) == (400, "invalid_auth_mode")
    assert sorted(await events.failure_types(2)) == ["invalid_auth_mode", "missing_connection"]
    await assert_failed(events, db, "u-3", "invalid_auth_mode", "NONE")
    assert await db["connections"].count_documents({}) == 2
