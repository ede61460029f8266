"""The gateway's routes of the first slice, good and bad input, in the protocol's error envelope."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ..support.polling import eventually
from .gateway_app import Gateway, StartGateway, create_integration

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        yield gateway


def assert_envelope(body: dict[str, Any], code: str) -> None:
    """Both SDK generations read it: ``error.code``/``error.message`` and the top-level ``type``."""
    assert body["error"]["code"] == code, body
    assert body["type"] == code
    assert isinstance(body["error"].get("message", ""), str)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_auth_header"),
        ({"Authorization": "Token abc"}, "malformed_auth_header"),
        ({"Authorization": "Bearer not-a-uuid"}, "invalid_secret_key_format"),
        ({"Authorization": f"Bearer {uuid.uuid4()}"}, "unknown_user_account"),
    ],
)
async def test_secret_key_errors(gw: Gateway, headers: dict[str, str], code: str) -> None:
    for method, path in [("GET", "/config"), ("POST", "/config"), ("GET", "/connection/x"), ("GET", "/environment")]:
        resp = await gw.client.request(method, path, headers=headers)
        assert resp.status == 401
        assert_envelope(await resp.json(), code)


async def test_integration_crud_and_errors(gw: Gateway) -> None:
    await create_integration(gw, "posthog", "ph")
    resp = await gw.client.post("/config", json={"provider": "posthog", "provider_config_key": "ph"}, headers=gw.auth)
    assert resp.status == 409
    assert_envelope(await resp.json(), "duplicate_provider_config")
    resp = await gw.client.post("/config", json={"provider": "nope", "provider_config_key": "x"}, headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), "unknown_provider_template")
    resp = await gw.client.post("/config", json={"provider_config_key": "x"}, headers=gw.auth)
    assert_envelope(await resp.json(), "missing_provider_template")
    resp = await gw.client.post("/config", json={"provider": "github", "provider_config_key": "gh"}, headers=gw.auth)
    assert_envelope(await resp.json(), "missing_client_id")
    resp = await gw.client.post(
        "/config",
        json={"provider": "github", "provider_config_key": "gh", "oauth_client_id": "i", "oauth_scopes": ["a"]},
        headers=gw.auth,
    )
    assert_envelope(await resp.json(), "invalid_oauth_scopes")
    resp = await gw.client.post("/config", data=b"{not json", headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_json")
    resp = await gw.client.post("/config", data=b"[1,2]", headers=gw.auth)
    assert_envelope(await resp.json(), "invalid_body")
    await create_integration(
        gw, "github", "gh", oauth_client_id="cid", oauth_client_secret="csecret", oauth_scopes="repo user"
    )
    resp = await gw.client.get("/config", headers=gw.auth)
    assert await resp.json() == {
        "configs": [{"unique_key": "gh", "provider": "github"}, {"unique_key": "ph", "provider": "posthog"}]
    }
    resp = await gw.client.get("/config/gh?include_creds=true", headers=gw.auth)
    config = (await resp.json())["config"]
    assert config["client_id"] == "cid"
    assert config["client_secret"] == "csecret"
    assert config["scopes"] == "repo,user"
    resp = await gw.client.get("/config/gh", headers=gw.auth)
    assert "client_secret" not in (await resp.json())["config"]
    resp = await gw.client.delete("/config/gh", headers=gw.auth)
    assert await resp.json() == {"success": True}
    resp = await gw.client.delete("/config/gh", headers=gw.auth)
    assert resp.status == 404
    assert_envelope(await resp.json(), "not_found")


async def test_api_key_connect_errors(gw: Gateway, db: Any, amqp: Any, namespace: str) -> None:
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", "topic", durable=True)
    watch = await channel.declare_queue(f"{namespace}.test.auth-failed", auto_delete=True)
    await watch.bind(exchange, routing_key="auth.failed")
    await create_integration(gw, "posthog", "ph")
    await create_integration(gw, "freshdesk", "fd")
    base = "/api-auth/api-key/ph"
    cases: list[tuple[str, Any, int, str]] = [
        (f"{base}?connection_id=c1", {"apiKey": "k"}, 401, "missing_public_key"),
        (f"{base}?connection_id=c1&public_key=nope", {"apiKey": "k"}, 401, "invalid_public_key"),
        (f"{base}?connection_id=c1&public_key={uuid.uuid4()}", {"apiKey": "k"}, 401, "unknown_user_account"),
        (f"{base}?public_key={gw.public_key}", {"apiKey": "k"}, 400, "missing_connection"),
        (
            f"/api-auth/api-key/unknown?connection_id=c1&public_key={gw.public_key}",
            {"apiKey": "k"},
            400,
            "unknown_provider_config",
        ),
        (
            f"/api-auth/api-key/fd?connection_id=c1&public_key={gw.public_key}",
            {"apiKey": "k"},
            400,
            "invalid_auth_mode",
        ),
        (f"{base}?connection_id=c1&public_key={gw.public_key}", {"apiKey": ""}, 400, "missing_api_key"),
        (f"{base}?connection_id=c1&public_key={gw.public_key}", {}, 400, "missing_api_key"),
        (f"{base}?connection_id=c1&public_key={gw.public_key}", b"{oops", 400, "invalid_json"),
    ]
    for url, body, status, code in cases:
        if isinstance(body, bytes):
            resp = await gw.client.post(url, data=body)
        else:
            resp = await gw.client.post(url, json=body)
        assert resp.status == status, (url, await resp.text())
        assert_envelope(await resp.json(), code)
    assert await db["connections"].count_documents({}) == 0
    # Every failure after the public key named the environment is announced as auth.failed (6 of
    # the 9); a bad public key names no environment to announce it in.
    codes: list[str] = []

    async def six_announced() -> bool:
        while (message := await watch.get(no_ack=True, fail=False)) is not None:
            codes.append(json.loads(message.body)["data"]["error"]["type"])
        return len(codes) >= 6

    await eventually(six_announced, timeout=15, what="six auth.failed events")
    assert sorted(codes) == sorted(
        [
            "missing_connection",
            "unknown_provider_config",
            "invalid_auth_mode",
            "missing_api_key",
            "missing_api_key",
            "invalid_json",
        ]
    )

    async def outbox_drained() -> bool:
        # The relay deletes a row once the broker confirms it, which can be just after a consumer
        # already holds the message.
        return await db["outbox"].count_documents({}) == 0

    await eventually(outbox_drained, timeout=15, what="every outbox row published and confirmed")


async def test_basic_connect_and_read_back(gw: Gateway) -> None:
    await create_integration(gw, "freshdesk", "fd")
    resp = await gw.client.post(
        f"/api-auth/basic/fd?connection_id=acct-1&public_key={gw.public_key}&params[subdomain]=acme",
        json={"username": "agent@acme.test", "password": "pa55word!"},
    )
    assert resp.status == 200
    assert await resp.json() == {"providerConfigKey": "fd", "connectionId": "acct-1"}
    resp = await gw.client.get("/connection/acct-1?provider_config_key=fd", headers=gw.auth)
    body = await resp.json()
    assert body["credentials"] == {"type": "BASIC", "username": "agent@acme.test", "password": "pa55word!"}
    assert body["connection_config"] == {"subdomain": "acme"}
    assert isinstance(body["id"], int)
    resp = await gw.client.get("/connection/acct-1", headers=gw.auth)
    assert_envelope(await resp.json(), "missing_provider_config")
    resp = await gw.client.get("/connection/nobody?provider_config_key=fd", headers=gw.auth)
    assert resp.status == 404
    body = await resp.json()
    assert_envelope(body, "unknown_connection")
    assert body["error"]["payload"] == {"connectionId": "nobody", "providerConfigKey": "fd", "environmentName": "dev"}


async def test_environment_settings(gw: Gateway) -> None:
    resp = await gw.client.get("/environment", headers=gw.auth)
    env = (await resp.json())["environment"]
    assert env["name"] == "dev"
    assert env["public_key"] == gw.public_key
    assert env["effective_callback_url"] == gw.settings.callback_url
    patch = {
        "callback_url": "https://app.example/oauth/callback",
        "hmac_enabled": True,
        "hmac_key": "hmac-key-1",
        "webhook_settings": {"primary_url": "https://hooks.example/nango", "on_auth_creation": False},
    }
    resp = await gw.client.patch("/environment", json=patch, headers=gw.auth)
    assert resp.status == 200, await resp.text()
    env = (await resp.json())["environment"]
    assert env["callback_url"] == "https://app.example/oauth/callback"
    assert env["hmac_enabled"] is True
    assert env["webhook_settings"]["primary_url"] == "https://hooks.example/nango"
    assert env["webhook_settings"]["on_auth_creation"] is False
    assert env["webhook_settings"]["on_auth_refresh_error"] is True
    resp = await gw.client.patch(
        "/environment", json={"webhook_settings": {"primary_url": "not a url"}}, headers=gw.auth
    )
    assert resp.status == 400
    body = await resp.json()
    assert_envelope(body, "invalid_body")
    assert body["error"]["errors"][0]["path"] == ["webhook_settings", "primary_url"]
    resp = await gw.client.patch("/environment", json={"unknown": 1}, headers=gw.auth)
    assert_envelope(await resp.json(), "invalid_body")
    # HMAC now on: a connect without or with a wrong hmac is refused; the right digest passes
    resp = await gw.client.post("/config", json={"provider": "posthog", "provider_config_key": "ph"}, headers=gw.auth)
    url = f"/api-auth/api-key/ph?connection_id=c1&public_key={gw.public_key}"
    resp = await gw.client.post(url, json={"apiKey": "k"})
    assert_envelope(await resp.json(), "missing_hmac")
    resp = await gw.client.post(url + "&hmac=00ff", json={"apiKey": "k"})
    assert_envelope(await resp.json(), "invalid_hmac")
    import hashlib
    import hmac

    digest = hmac.new(b"hmac-key-1", b"ph:c1", hashlib.sha256).hexdigest()
    resp = await gw.client.post(url + f"&hmac={digest}", json={"apiKey": "k"})
    assert resp.status == 200


async def test_unknown_route_and_cors_preflight(gw: Gateway) -> None:
    resp = await gw.client.get("/no/such/route")
    assert resp.status == 404
    assert_envelope(await resp.json(), "not_found")
    resp = await gw.client.options(
        "/api-auth/api-key/ph",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    resp = await gw.client.get("/health")
    assert await resp.json() == {"result": "ok"}
    resp = await gw.client.get("/healthz")
    assert resp.status == 200


async def test_provider_catalog_routes(gw: Gateway) -> None:
    resp = await gw.client.get("/provider", headers=gw.auth)
    providers = (await resp.json())["providers"]
    assert providers["github"]["auth_mode"] == "OAUTH2"
    assert providers["github-app"]["auth_mode"] == "APP"  # aliases come resolved
    assert providers["github-app"]["proxy"]["base_url"] == "https://api.github.com"
    resp = await gw.client.get("/provider/zendesk", headers=gw.auth)
    assert "${connectionConfig.subdomain}" in (await resp.json())["provider"]["authorization_url"]
    resp = await gw.client.get("/provider/nope", headers=gw.auth)
    assert resp.status == 404
    assert_envelope(await resp.json(), "unknown_provider_template")
    resp = await gw.client.get("/provider")
    assert_envelope(await resp.json(), "missing_auth_header")
