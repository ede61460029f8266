"""The unmodified Nango node SDK (@nangohq/node 0.40.8, 0.42.11 and 0.71.10, from npm) against Keyway.

``tests/sdk/node_sdk_check.mjs`` calls every backend method the issue names through the real SDK
and prints each answer; this test prepares the world (a gateway and a webhook dispatcher in this
process on the real broker and database, an OAuth 2 server, a third-party API stand-in and a webhook
receiver on 127.0.0.1), runs the script with Node, and checks every answer against spec §3.

0.71.10 is Nango's current SDK: most of its methods call the current API generation (``/integrations``,
``/connections``, ``/connect/sessions/reconnect``…), which issue 17 adds slice by slice. It runs here
for what Keyway serves in that generation today: the providers, the proxy and the webhook checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keyway_shared.jsjson import js_stringify
from keyway_shared.webhook_signing import nango_signature
from webhook_dispatcher.app import create_app as create_dispatcher
from webhook_dispatcher.settings import DispatcherSettings

from ..integration.gateway_app import Gateway, StartGateway, providers_yaml
from ..integration.test_oauth2_flow import run_flow
from ..support.inproc import running
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from ..support.receiver import Received, WebhookReceiver
from ..support.upstream import EchoUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
SCRIPT = SDK_DIR / "node_sdk_check.mjs"
VERSIONS = {"0.40.8": "nango-node-0408", "0.42.11": "nango-node-04211", "0.71.10": "nango-node-07110"}
LEGACY = ["0.40.8", "0.42.11"]  # the 2024 generation: /config, /connection, … (spec §3)
CURRENT = ["0.71.10"]
NODE = shutil.which("node")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

if NODE is None or not all((SDK_DIR / "node_modules" / alias).exists() for alias in VERSIONS.values()):
    pytest.skip("needs node and `npm ci` in tests/sdk (make test-deps)", allow_module_level=True)


@dataclass
class World:
    gw: Gateway
    provider: OAuthProvider
    upstream: EchoUpstream
    receiver: WebhookReceiver
    config: dict[str, Any]
    webhooks: list[Received]


@pytest.fixture
async def world(
    tmp_path: Path,
    start_gateway: StartGateway,
    service_settings: dict[str, Any],
    encryption_key: str,
) -> AsyncIterator[World]:
    provider = await OAuthProvider().start()
    upstream = await EchoUpstream().start()
    receiver = await WebhookReceiver().start()
    catalog = {"test-oauth2": provider.template(proxy={"base_url": f"{upstream.base}/v1"})}
    dispatcher = DispatcherSettings(**service_settings, encryption_key=encryption_key, egress_allowlist="127.0.0.0/8")
    try:
        async with (
            start_gateway(
                providers_file=providers_yaml(tmp_path, catalog),
                egress_allowlist="127.0.0.0/8",
                provider_timeout_seconds=2.0,
                public_key_connect="allowed",  # the popup flow below connects with the public key, as in 2024
            ) as gw,
            running(create_dispatcher(dispatcher)),
        ):
            signing_key = await prepare(gw, provider, receiver)
            webhooks = await eventually(lambda: _hooks(receiver, 5), timeout=30, what="five auth webhooks")
            yield World(gw, provider, upstream, receiver, _config(upstream, webhooks, signing_key), webhooks)
    finally:
        await receiver.stop()
        await upstream.stop()
        await provider.stop()


async def _hooks(receiver: WebhookReceiver, count: int) -> list[Received] | None:
    return list(receiver.received) if len(receiver.received) >= count else None


async def prepare(gw: Gateway, provider: OAuthProvider, receiver: WebhookReceiver) -> str:
    """Integrations of four auth modes, an OAuth 2 connection made through the popup flow, three imports;
    the environment's webhook signing key."""
    resp = await gw.client.patch(
        "/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    signing_key: str = (await resp.json())["environment"]["webhook_signing_key"]
    for body in (
        {
            "provider": "test-oauth2",
            "provider_config_key": "oauth",
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
            "oauth_scopes": "read",
        },
        {"provider": "posthog", "provider_config_key": "ph"},
        {"provider": "freshdesk", "provider_config_key": "fd"},
        {"provider": "trello", "provider_config_key": "tr", "oauth_client_id": "k", "oauth_client_secret": "s"},
    ):
        resp = await gw.client.post("/config", json=body, headers=gw.auth)
        assert resp.status == 200, await resp.text()
    _resp, html, frame = await run_flow(gw, provider, "oauth", "connection_id=node-oauth")
    assert frame["message_type"] == "success", html
    for body in (
        {"connection_id": "node-ph", "provider_config_key": "ph", "api_key": "phx_node_key"},
        {"connection_id": "node-fd", "provider_config_key": "fd", "username": "ann", "password": "pw"},
        {"connection_id": "node-fd-2", "provider_config_key": "fd", "username": "bob", "password": "pw2"},
        {"connection_id": "node-tr", "provider_config_key": "tr", "oauth_token": "ot", "oauth_token_secret": "ots"},
    ):
        resp = await gw.client.post("/connection", json=body, headers=gw.auth)
        assert resp.status == 201, await resp.text()
    return signing_key


def _config(upstream: EchoUpstream, webhooks: list[Received], signing_key: str) -> dict[str, Any]:
    return {
        "oauth": {"key": "oauth", "connectionId": "node-oauth"},
        "apiKey": {"key": "ph", "connectionId": "node-ph"},
        "basic": {"key": "fd", "connectionId": "node-fd", "otherConnectionId": "node-fd-2"},
        "oauth1": {"key": "tr", "connectionId": "node-tr"},
        "integration": {"provider": "github", "key": "gh-node"},
        "webhooks": [
            {
                "body": h.body.decode(),
                "signature": h.headers["X-Nango-Signature"],
                "hmac": h.headers["X-Nango-Hmac-Sha256"],
            }
            for h in webhooks
        ],
        "webhookSigningKey": signing_key,
        "proxy": {"base": upstream.base},
    }


async def run_script(world: World, sdk: str, *sections: str) -> dict[str, dict[str, Any]]:
    """Run the Node script (without blocking the loop the gateway runs on); answers by call name."""
    env = {
        **os.environ,
        "KEYWAY_SECRET_KEY": world.gw.secret_key,
        "KEYWAY_CHECK_CONFIG": json.dumps({**world.config, "sections": list(sections)}),
    }
    proc = await asyncio.create_subprocess_exec(
        str(NODE),
        str(SCRIPT),
        VERSIONS[sdk],
        world.gw.url,
        cwd=SDK_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    answers: dict[str, dict[str, Any]] = {}
    for line in stdout.decode().splitlines():
        answer = json.loads(line)
        answers[answer["name"]] = answer
    return answers


def ok(answers: dict[str, dict[str, Any]], name: str) -> Any:
    answer = answers[name]
    assert answer["ok"], answer
    return answer["value"]


def failed(answers: dict[str, dict[str, Any]], name: str, status: int, code: str | None = None) -> dict[str, Any]:
    """An axios error carrying the status and (for Keyway's own errors) the envelope of spec §1.2."""
    answer = answers[name]
    assert not answer["ok"], answer
    error = answer["error"]
    assert error["isAxiosError"] is True
    assert error["status"] == status, error
    if code is not None:
        data = error["data"]
        assert data["error"]["code"] == code
        assert data["type"] == code  # what frontend SDKs up to 0.42.8 read
        assert isinstance(data["error"]["message"], str)
        assert data["error"]["message"]
    return error


def connection_shape(conn: dict[str, Any]) -> None:
    assert set(conn) == {
        "id", "created_at", "updated_at", "provider_config_key", "provider", "connection_id", "environment",
        "connection_config", "metadata", "credentials", "credentials_iv", "credentials_tag", "last_fetched_at",
        "deleted", "deleted_at",
    }  # fmt: skip
    assert isinstance(conn["id"], int)
    for field in ("created_at", "updated_at", "last_fetched_at"):
        assert ISO.match(conn[field]), conn[field]
    assert (conn["deleted"], conn["deleted_at"], conn["environment"]) == (False, None, "dev")


@pytest.mark.parametrize("sdk", LEGACY)
async def test_backend_api_through_node_sdk(world: World, sdk: str) -> None:
    answers = await run_script(world, sdk, "integrations", "connections", "metadata", "webhooks", "auth", "delete")
    secret = world.gw.secret_key

    # integrations
    before = ok(answers, "listIntegrations")["configs"]
    assert sorted(before, key=lambda c: c["unique_key"]) == [
        {"unique_key": "fd", "provider": "freshdesk"},
        {"unique_key": "oauth", "provider": "test-oauth2"},
        {"unique_key": "ph", "provider": "posthog"},
        {"unique_key": "tr", "provider": "trello"},
    ]
    assert ok(answers, "createIntegration") == {"config": {"unique_key": "gh-node", "provider": "github"}}
    failed(answers, "createIntegration.duplicate", 409, "duplicate_provider_config")
    failed(answers, "createIntegration.arrayScopes", 400, "invalid_oauth_scopes")
    plain = {"unique_key": "gh-node", "provider": "github", "syncs": [], "actions": []}
    assert ok(answers, "getIntegration") == {"config": plain}
    with_creds = ok(answers, "getIntegration.withCredentials")["config"]
    assert with_creds | plain == with_creds
    assert with_creds["client_id"] == "client-1"
    assert with_creds["client_secret"] == "secret-1"
    assert with_creds["scopes"] == "repo,user"  # "repo, user" normalised
    assert with_creds["auth_mode"] == "OAUTH2"
    assert ISO.match(with_creds["created_at"])
    assert ok(answers, "updateIntegration") == {"config": {"unique_key": "gh-node", "provider": "github"}}
    updated = ok(answers, "getIntegration.afterUpdate")["config"]
    assert (updated["client_id"], updated["client_secret"], updated["scopes"]) == ("client-2", "secret-2", "repo")
    failed(answers, "updateIntegration.apiKey", 400, "provider_config_edit_not_allowed")
    failed(answers, "updateIntegration.unknown", 400, "unknown_provider_config")
    after = ok(answers, "listIntegrations.afterCreate")["configs"]
    assert sorted(c["unique_key"] for c in after) == ["fd", "gh-node", "oauth", "ph", "tr"]
    deleted = ok(answers, "deleteIntegration")
    assert (deleted["status"], deleted["data"]) == (200, {"success": True})
    assert deleted["headers"]["x-ratelimit-limit"] == "2400"
    failed(answers, "deleteIntegration.again", 404, "not_found")
    failed(answers, "getIntegration.unknown", 400, "unknown_provider_config")

    # getConnection: refresh token only when asked, a real refresh when forced
    first = ok(answers, "getConnection")
    connection_shape(first)
    assert (first["connection_id"], first["provider_config_key"], first["provider"]) == (
        "node-oauth",
        "oauth",
        "test-oauth2",
    )
    creds = first["credentials"]
    assert creds["type"] == "OAUTH2"
    assert "refresh_token" not in creds
    assert "refresh_token" not in creds["raw"]
    assert creds["raw"]["access_token"] == creds["access_token"]
    assert ISO.match(creds["expires_at"])
    with_refresh = ok(answers, "getConnection.refreshToken")["credentials"]
    assert with_refresh["access_token"] == creds["access_token"]  # not forced: the same token
    assert with_refresh["refresh_token"] == with_refresh["raw"]["refresh_token"]
    assert with_refresh["refresh_token"] in world.provider.refresh_index  # issued by the provider
    forced = ok(answers, "getConnection.forceRefresh")
    connection_shape(forced)
    assert forced["credentials"]["access_token"] != creds["access_token"]
    assert "refresh_token" not in forced["credentials"]
    assert "refresh_token" not in forced["credentials"]["raw"]
    forced_again = ok(answers, "getConnection.forceRefresh.refreshToken")["credentials"]
    assert forced_again["access_token"] != forced["credentials"]["access_token"]
    assert forced_again["refresh_token"] not in (None, with_refresh["refresh_token"])  # the provider rotates
    assert world.provider.reuse_detected == 0  # no refresh token was ever spent twice

    # getToken / getRawTokenResponse, per auth mode
    assert ok(answers, "getToken") == forced_again["access_token"]  # OAUTH2: the access token string
    renewed = ok(answers, "getToken.forceRefresh")
    assert isinstance(renewed, str)
    assert renewed != forced_again["access_token"]
    assert ok(answers, "getToken.afterForce") == renewed
    assert renewed in world.provider.access_tokens  # a token the provider will accept
    assert ok(answers, "getToken.apiKey") == {"type": "API_KEY", "apiKey": "phx_node_key"}
    assert ok(answers, "getToken.basic") == {"type": "BASIC", "username": "ann", "password": "pw"}
    assert ok(answers, "getToken.oauth1") == {"oAuthToken": "ot", "oAuthTokenSecret": "ots"}
    raw = ok(answers, "getRawTokenResponse")
    assert raw["access_token"] == renewed
    assert raw["token_type"] == "bearer"
    assert "refresh_token" not in raw

    # listConnections
    listed = ok(answers, "listConnections")
    assert set(listed) == {"connections"}
    ids = ["node-tr", "node-fd-2", "node-fd", "node-ph", "node-oauth"]  # newest first
    assert [c["connection_id"] for c in listed["connections"]] == ids
    for item in listed["connections"]:
        assert set(item) == {"id", "connection_id", "provider_config_key", "provider", "created", "metadata"}
        assert isinstance(item["id"], int)
        assert ISO.match(item["created"])
        assert item["metadata"] is None
    assert [c["created"] for c in listed["connections"]] == sorted(
        (c["created"] for c in listed["connections"]), reverse=True
    )
    assert ok(answers, "listConnections.one") == {
        "connections": [next(c for c in listed["connections"] if c["connection_id"] == "node-ph")]
    }
    assert ok(answers, "listConnections.none") == {"connections": []}
    missing = failed(answers, "getConnection.unknown", 404, "unknown_connection")
    assert missing["data"]["error"]["payload"] == {
        "connectionId": "nobody-has-this-id",
        "providerConfigKey": "oauth",
        "environmentName": "dev",
    }
    failed(answers, "getConnection.unknownIntegration", 404, "unknown_connection")

    # metadata: POST replaces (201), PATCH merges (200), both echo the body
    set_ = ok(answers, "setMetadata")
    assert (set_["status"], set_["data"]) == (
        201,
        {"metadata": {"plan": "pro", "seats": 3}, "connection_id": "node-ph", "provider_config_key": "ph"},
    )
    assert ok(answers, "getMetadata.afterSet") == {"plan": "pro", "seats": 3}
    update = ok(answers, "updateMetadata")
    assert (update["status"], update["data"]) == (
        200,
        {"metadata": {"seats": 5, "region": "eu"}, "connection_id": "node-ph", "provider_config_key": "ph"},
    )
    assert ok(answers, "getMetadata.afterUpdate") == {"plan": "pro", "seats": 5, "region": "eu"}
    assert ok(answers, "setMetadata.replace")["status"] == 201
    assert ok(answers, "getMetadata.afterReplace") == {"only": True}
    many = ok(answers, "setMetadata.many")
    assert (many["status"], many["data"]["connection_id"]) == (201, ["node-fd", "node-fd-2"])
    [other] = ok(answers, "listConnections.afterMetadata")["connections"]
    assert other["metadata"] == {"team": "a"}
    failed(answers, "setMetadata.unknown", 404, "unknown_connection")
    assert ok(answers, "getMetadata.none") is None

    # verifyWebhookSignature on the webhooks the dispatcher really sent
    bodies = [json.loads(h.body) for h in world.webhooks]
    assert sorted(b["connectionId"] for b in bodies) == sorted(ids)
    assert {(b["type"], b["operation"], b["success"]) for b in bodies} == {("auth", "creation", True)}
    for i, hook in enumerate(world.webhooks):
        assert ok(answers, f"verifyWebhookSignature.{i}") is True
        assert ok(answers, f"verifyWebhookSignature.{i}.tampered") is False
        # what the SDK recomputes (JSON.stringify of the parsed body) is the bytes that were signed
        assert js_stringify(json.loads(hook.body)).encode() == hook.body
        assert hook.headers["X-Nango-Signature"] == nango_signature(secret, hook.body)

    # authentication errors
    failed(answers, "auth.unknownKey", 401, "unknown_user_account")
    failed(answers, "auth.malformedKey", 401, "invalid_secret_key_format")

    # deleteConnection
    removed = ok(answers, "deleteConnection")
    assert (removed["status"], removed["data"]) == (200, {"success": True})
    failed(answers, "deleteConnection.again", 404, "unknown_connection")
    assert ok(answers, "listConnections.afterDelete") == {"connections": []}
    resp = await world.gw.client.get("/connection/node-ph?provider_config_key=ph", headers=world.gw.auth)
    assert resp.status == 404


@pytest.mark.parametrize("sdk", CURRENT)
async def test_current_sdk_providers_and_webhooks(world: World, sdk: str) -> None:
    answers = await run_script(world, sdk, "providers", "webhooks", "webhooks.hmac")

    # listProviders / getProvider hand back Nango's current answer: {"data": …}, each provider with its name
    listed = ok(answers, "listProviders")["data"]
    names = [p["name"] for p in listed]
    assert "test-oauth2" in names  # the operator's file is in the catalog too
    assert names == sorted(names)
    github = ok(answers, "getProvider")["data"]
    assert github == next(p for p in listed if p["name"] == "github")
    assert (github["auth_mode"], github["display_name"]) == ("OAUTH2", "GitHub")
    alias = ok(answers, "getProvider.alias")["data"]
    assert (alias["name"], alias["auth_mode"], alias["proxy"]["base_url"]) == (
        "github-app",
        "APP",
        "https://api.github.com",
    )
    assert "alias" not in alias
    found = [p["name"] for p in ok(answers, "listProviders.search")["data"]]
    assert found == [name for name in names if "git" in name]
    assert "github" in found
    assert ok(answers, "listProviders.searchNothing") == {"data": []}
    bad = failed(answers, "listProviders.badSearch", 400)["data"]["error"]
    assert bad["code"] == "invalid_query_params"
    assert [(e["code"], e["path"]) for e in bad["errors"]] == [("invalid_format", ["search"])]
    unknown = failed(answers, "getProvider.unknown", 404)["data"]["error"]
    assert unknown == {"code": "not_found", "message": "Unknown provider no-such-provider"}
    failed(answers, "listProviders.unknownKey", 401, "unknown_user_account")
    # getProviderTemplates: Nango's shape ({"data": [function, …]}), empty as Keyway runs no scripts
    assert ok(answers, "getProviderTemplates") == {"data": []}
    bad_name = failed(answers, "getProviderTemplates.badName", 400)["data"]["error"]
    assert bad_name["code"] == "invalid_uri_params"
    assert [(e["code"], e["path"]) for e in bad_name["errors"]] == [("invalid_format", ["provider"])]

    # both signature checks, on the webhooks the dispatcher really sent: X-Nango-Signature with the
    # secret key, X-Nango-Hmac-Sha256 with the webhook signing key (a key of its own, as in Nango)
    assert world.webhooks
    assert world.config["webhookSigningKey"] != world.gw.secret_key
    for i in range(len(world.webhooks)):
        assert ok(answers, f"verifyWebhookSignature.{i}") is True
        assert ok(answers, f"verifyWebhookSignature.{i}.tampered") is False
        assert ok(answers, f"verifyIncomingWebhookRequest.{i}") is True
        assert ok(answers, f"verifyIncomingWebhookRequest.{i}.tampered") is False
        assert ok(answers, f"verifyIncomingWebhookRequest.{i}.secretKey") is False


@pytest.mark.parametrize("sdk", list(VERSIONS))
async def test_proxy_through_node_sdk(world: World, sdk: str) -> None:
    answers = await run_script(world, sdk, "proxy")
    resp = await world.gw.client.get("/connection/node-oauth?provider_config_key=oauth", headers=world.gw.auth)
    bearer = "Bearer " + (await resp.json())["credentials"]["access_token"]

    def upstream_saw(name: str, method: str, path: str) -> dict[str, Any]:
        value = ok(answers, name)
        assert value["status"] == 200
        assert value["headers"]["x-upstream"] in {"echo", "flaky"}
        seen = value["data"]
        assert (seen["method"], seen["path"]) == (method, path)
        assert seen["headers"]["authorization"] == bearer
        return seen

    got = upstream_saw("proxy.get", "GET", "/v1/echo/items")
    assert got["query"] == {"page": ["2"], "q": ["a b"]}
    assert got["headers"]["x-custom"] == "v1"  # Nango-Proxy-X-Custom arrives as X-Custom
    posted = upstream_saw("proxy.post", "POST", "/v1/echo/items")  # endpoint without a leading slash
    assert (posted["body"], posted["headers"]["content-type"]) == ('{"name":"n","n":1}', "application/json")
    patched = upstream_saw("proxy.patch", "PATCH", "/v1/echo/items/7")
    assert patched["body"] == '{"name":"m"}'
    assert upstream_saw("proxy.delete", "DELETE", "/v1/echo/items/7")["body"] == ""
    assert upstream_saw("proxy.put", "PUT", "/v1/echo/items/8")["body"] == '{"v":true}'

    assert upstream_saw("proxy.retries", "GET", "/v1/flaky/a")["attempt"] == 3  # two 503s retried
    assert upstream_saw("proxy.retryOn", "GET", "/v1/flaky/b")["attempt"] == 2  # a 409 named in Retry-On
    assert failed(answers, "proxy.noRetries", 503)["data"] == {"attempt": 1}
    assert world.upstream.attempts == {"/v1/flaky/a": 3, "/v1/flaky/b": 2, "/v1/flaky/c": 1}
    upstream_404 = failed(answers, "proxy.upstream404", 404)
    assert (upstream_404["data"], upstream_404["headers"]["x-upstream"]) == ({"upstream": 404}, "status")

    api_key = ok(answers, "proxy.apiKey.baseUrlOverride")["data"]
    assert (api_key["path"], api_key["headers"]["authorization"]) == ("/echo/me", "Bearer phx_node_key")
    basic = ok(answers, "proxy.basic.baseUrlOverride")["data"]
    assert (basic["path"], basic["headers"]["authorization"]) == (
        "/echo/me",
        "Basic " + base64.b64encode(b"ann:pw").decode(),
    )
    failed(answers, "proxy.unknownConnection", 404, "unknown_connection")

    for request in world.upstream.requests:  # the Keyway secret key and routing headers stay home
        assert world.gw.secret_key not in json.dumps(request)
        assert not {"connection-id", "provider-config-key", "base-url-override"} & set(request["headers"])
        assert not any(name.startswith("nango-") for name in request["headers"])


@pytest.mark.parametrize("sdk", CURRENT)
async def test_current_sdk_connect_sessions(world: World, sdk: str) -> None:
    answers = await run_script(world, sdk, "connectSessions")
    gw = world.gw

    async def session_of(token: str) -> dict[str, Any]:
        resp = await gw.client.get("/connect/session", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = (await resp.json())["data"]
        return data

    def minted(name: str) -> dict[str, Any]:
        data: dict[str, Any] = ok(answers, name)["data"]
        assert set(data) == {"token", "connect_link", "expires_at"}
        assert data["token"].startswith("nango_connect_session_")
        assert data["connect_link"] == f"{gw.settings.public_url}/connect-ui/?session_token={data['token']}"
        assert ISO.match(data["expires_at"])
        return data

    created = minted("createConnectSession")
    session = await session_of(created["token"])
    assert session["endUser"] == {
        "id": "node-user",
        "display_name": "Node",
        "email": "node@example.com",
        "tags": {"plan": "pro"},
        "organization": {"id": "node-org", "display_name": "Node Org"},
    }
    assert session["allowed_integrations"] == ["ph"]
    assert session["integrations_config_defaults"] == {
        "oauth": {"connection_config": {"oauth_scopes_override": "read"}, "authorization_params": {"prompt": "consent"}}
    }
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={created['token']}", json={"apiKey": "k"})
    assert resp.status == 200, await resp.text()
    resp = await gw.client.get(
        "/connection/" + (await resp.json())["connectionId"] + "?provider_config_key=ph", headers=gw.auth
    )
    assert resp.status == 200

    assert (await session_of(minted("createConnectSession.tagsOnly")["token"]))["endUser"] is None
    invalid = failed(answers, "createConnectSession.invalid", 400)["data"]["error"]
    assert invalid["code"] == "invalid_body"
    assert ["end_user", "email"] in [e["path"] for e in invalid["errors"]]

    # a reconnect session authorizes the named connection again, under its id
    again = minted("createReconnectSession")
    assert (await session_of(again["token"]))["isReconnecting"] is True
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={again['token']}", json={"apiKey": "new"})
    assert (await resp.json())["connectionId"] == "node-ph"
    resp = await gw.client.get("/connection/node-ph?provider_config_key=ph", headers=gw.auth)
    assert (await resp.json())["credentials"]["apiKey"] == "new"
    unknown = failed(answers, "createReconnectSession.unknown", 400)["data"]["error"]
    assert unknown == {"code": "invalid_body", "message": "ConnectionID or IntegrationId does not exists"}


@pytest.mark.parametrize("sdk", CURRENT)
async def test_current_sdk_integrations(world: World, sdk: str) -> None:
    answers = await run_script(world, sdk, "integrations.current")
    shape = {"unique_key", "provider", "display_name", "forward_webhooks", "created_at", "updated_at"}

    # listIntegrations keeps its 2024 return ({configs}) over the current answer's data
    before = ok(answers, "current.listIntegrations")["configs"]
    assert [(c["unique_key"], c["provider"], c["display_name"]) for c in before] == [
        ("fd", "freshdesk", "Freshdesk"),
        ("oauth", "test-oauth2", "test-oauth2"),  # no display name in its template: its name
        ("ph", "posthog", "PostHog"),
        ("tr", "trello", "Trello"),
    ]
    assert all(set(c) == shape for c in before)

    created = ok(answers, "current.createIntegration")["data"]
    assert set(created) == shape
    assert (created["unique_key"], created["provider"], created["display_name"]) == ("gh-node", "github", "Node GitHub")
    assert created["forward_webhooks"] is True
    assert ISO.match(created["created_at"])
    duplicate = failed(answers, "current.createIntegration.duplicate", 400)["data"]["error"]
    assert duplicate["code"] == "invalid_body"
    assert duplicate["errors"] == [
        {"code": "invalid_string", "message": "Unique key already exists", "path": ["uniqueKey"]}
    ]
    legacy_body = failed(answers, "current.createIntegration.legacyBody", 400)["data"]["error"]
    assert [(e["code"], e["path"]) for e in legacy_body["errors"]] == [("unrecognized_keys", [])]

    assert ok(answers, "current.getIntegration") == {"data": created}
    with_creds = ok(answers, "current.getIntegration.credentials")["data"]
    assert with_creds == {
        **created,
        "credentials": {
            "type": "OAUTH2",
            "client_id": "client-1",
            "client_secret": "secret-1",
            "scopes": "repo,user",
            "webhook_secret": None,
        },
    }
    assert ok(answers, "current.getIntegration.webhook") == {"data": {**created, "webhook_url": None}}

    updated = ok(answers, "current.updateIntegration")["data"]
    assert (updated["display_name"], updated["forward_webhooks"]) == ("Node GitHub 2", False)
    after = ok(answers, "current.getIntegration.afterUpdate")["data"]["credentials"]
    assert (after["client_id"], after["client_secret"], after["scopes"]) == ("client-2", "secret-2", "repo,user")
    unknown = failed(answers, "current.updateIntegration.unknown", 404)["data"]["error"]
    assert unknown == {"code": "not_found", "message": 'Integration "no-such-integration" does not exist'}
    listed = ok(answers, "current.listIntegrations.afterCreate")["configs"]
    assert [c["unique_key"] for c in listed] == ["fd", "gh-node", "oauth", "ph", "tr"]

    deleted = ok(answers, "current.deleteIntegration")
    assert (deleted["status"], deleted["data"]) == (200, {"success": True})
    again = failed(answers, "current.deleteIntegration.again", 404)["data"]["error"]
    assert again == {"code": "not_found", "message": "Integration does not exist"}
    failed(answers, "current.getIntegration.unknown", 404, "not_found")
    # createQuickstartIntegration: Nango's refusal for a provider without a shared developer app (Keyway has
    # none for any), and for a provider whose auth mode takes no app at all
    no_shared_app = failed(answers, "current.createQuickstartIntegration", 400)["data"]["error"]
    assert no_shared_app == {
        "code": "invalid_body",
        "message": "No Nango-provided developer app is configured for this provider",
    }
    no_app = failed(answers, "current.createQuickstartIntegration.noApp", 400)["data"]["error"]
    assert no_app == {
        "code": "invalid_body",
        "message": "Quickstart is only available for providers that require a developer app",
    }
    # the 2024 view saw the same integration come and go
    resp = await world.gw.client.get("/config", headers=world.gw.auth)
    assert [c["unique_key"] for c in (await resp.json())["configs"]] == ["fd", "oauth", "ph", "tr"]


OFFSET_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


@pytest.mark.parametrize("sdk", CURRENT)
async def test_current_sdk_connections(world: World, sdk: str) -> None:
    answers = await run_script(world, sdk, "connections.current")

    # getConnection: Nango's curated connection; the refresh token only when asked, a real refresh when forced
    first = ok(answers, "cur.getConnection")
    assert set(first) == {
        "id", "connection_id", "provider_config_key", "provider", "errors", "end_user", "tags", "metadata",
        "connection_config", "webhook_url_override", "created_at", "updated_at", "last_fetched_at", "credentials",
    }  # fmt: skip
    assert (first["connection_id"], first["provider_config_key"], first["provider"]) == (
        "node-oauth",
        "oauth",
        "test-oauth2",
    )
    assert (first["errors"], first["end_user"], first["tags"], first["webhook_url_override"]) == ([], None, {}, None)
    for field in ("created_at", "updated_at", "last_fetched_at"):
        assert OFFSET_TIME.match(first[field]), first[field]
    creds = first["credentials"]
    assert creds["type"] == "OAUTH2"
    assert "refresh_token" not in creds
    assert "refresh_token" not in creds["raw"]
    with_refresh = ok(answers, "cur.getConnection.refreshToken")["credentials"]
    assert with_refresh["access_token"] == creds["access_token"]
    assert with_refresh["refresh_token"] in world.provider.refresh_index
    forced = ok(answers, "cur.getConnection.forceRefresh")["credentials"]
    assert forced["access_token"] != creds["access_token"]
    assert forced["access_token"] in world.provider.access_tokens
    assert world.provider.reuse_detected == 0

    # getToken / getRawTokenResponse read the credentials of that answer, per auth mode
    assert ok(answers, "cur.getToken") == forced["access_token"]
    assert ok(answers, "cur.getToken.apiKey") == {"type": "API_KEY", "apiKey": "phx_node_key"}
    assert ok(answers, "cur.getToken.basic") == {"type": "BASIC", "username": "ann", "password": "pw"}
    assert ok(answers, "cur.getToken.oauth1") == {"oAuthToken": "ot", "oAuthTokenSecret": "ots"}
    raw = ok(answers, "cur.getRawTokenResponse")
    assert raw["access_token"] == forced["access_token"]
    assert "refresh_token" not in raw
    missing = failed(answers, "cur.getConnection.unknown", 404, "not_found")
    assert missing["data"]["error"]["message"] == "Failed to find connection"
    failed(answers, "cur.getConnection.unknownIntegration", 400, "unknown_provider_config")

    # patchConnection: the end user, tags and webhook URL override, read back
    assert ok(answers, "cur.patchConnection") == {"success": True}
    invalid = failed(answers, "cur.patchConnection.invalid", 400, "invalid_body")["data"]["error"]
    assert [e["path"][:1] for e in invalid["errors"]] == [["tags"]]
    patched = ok(answers, "cur.getConnection.afterPatch")
    assert patched["end_user"] == {
        "id": "node-user",
        "display_name": "Node User",
        "email": "node@example.com",
        "tags": None,
        "organization": None,
    }
    assert patched["tags"] == {
        "end_user_id": "node-user",
        "end_user_email": "node@example.com",
        "end_user_display_name": "Node User",
        "team": "sdk",
    }
    assert patched["webhook_url_override"] == "https://hooks.example.com/node"
    assert patched["credentials"] == {"type": "API_KEY", "apiKey": "phx_node_key"}

    # listConnections: both call forms, every filter the SDK sends, pages
    listed = ok(answers, "cur.listConnections")["connections"]
    ids = ["node-tr", "node-fd-2", "node-fd", "node-ph", "node-oauth"]  # newest first
    assert [c["connection_id"] for c in listed] == ids
    for item in listed:
        assert set(item) == {
            "id", "connection_id", "provider_config_key", "provider", "errors", "end_user", "tags", "metadata", "created",
        }  # fmt: skip
        assert OFFSET_TIME.match(item["created"])
    ph = next(c for c in listed if c["connection_id"] == "node-ph")
    assert (ph["end_user"], ph["tags"]) == (patched["end_user"], patched["tags"])

    def ids_of(name: str) -> list[str]:
        return [c["connection_id"] for c in ok(answers, name)["connections"]]

    assert ids_of("cur.listConnections.one") == ["node-ph"]
    assert ids_of("cur.listConnections.search") == ["node-fd-2", "node-fd"]
    assert ids_of("cur.listConnections.endUser") == ["node-ph"]
    assert ids_of("cur.listConnections.params") == ["node-ph"]
    assert ids_of("cur.listConnections.page") == ids[2:4]
    assert ids_of("cur.listConnections.beyond") == []
    bad = failed(answers, "cur.listConnections.badLimit", 400)["data"]["error"]
    assert (bad["code"], [e["path"] for e in bad["errors"]]) == ("invalid_query_params", [["limit"]])

    # metadata: POST replaces (201), PATCH merges (200), both echo the body; getMetadata reads it
    set_ = ok(answers, "cur.setMetadata")
    assert (set_["status"], set_["data"]) == (
        201,
        {"metadata": {"plan": "pro", "seats": 3}, "connection_id": "node-ph", "provider_config_key": "ph"},
    )
    assert ok(answers, "cur.updateMetadata")["status"] == 200
    assert ok(answers, "cur.getMetadata") == {"plan": "pro", "seats": 5}
    many = ok(answers, "cur.setMetadata.many")
    assert (many["status"], many["data"]["connection_id"]) == (201, ["node-fd", "node-fd-2"])
    failed(answers, "cur.setMetadata.unknown", 404, "unknown_connection")
    assert ok(answers, "cur.getMetadata.none") is None

    # deleteConnection: deleted (nothing revoked: the test provider has no revocation endpoint anyway)
    removed = ok(answers, "cur.deleteConnection")
    assert (removed["status"], removed["data"]) == (200, {"success": True})
    again = failed(answers, "cur.deleteConnection.again", 400)
    assert again["data"]["error"] == {"code": "unknown_connection"}
    assert ok(answers, "cur.listConnections.afterDelete") == {"connections": []}
    resp = await world.gw.client.get("/connection/node-ph?provider_config_key=ph", headers=world.gw.auth)
    assert resp.status == 404
