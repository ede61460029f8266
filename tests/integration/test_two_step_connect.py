"""TWO_STEP end to end: ``POST /auth/two-step/{key}`` as @nangohq/frontend 0.71.10 posts it (the body
``{type: 'TWO_STEP', ...fields}``, ``params[...]`` in the query), the token minted at the template's
token request against a fake provider on 127.0.0.1, stored encrypted with the fields that mint the
next one, minted again on refresh, and sent by the proxy as the template says.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyway_client import AsyncClient, TwoStepCredentials

from ..support.two_step_provider import TwoStepProvider, two_step_provider
from .flow_helpers import EventWatch, get_connection, watched_events
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

PARAMS = "params[region]=eu"


def _catalog(base: str) -> dict[str, Any]:
    credentials = {
        "username": {"type": "string", "title": "User", "pattern": "^[a-z-]+$"},
        "password": {"type": "string", "title": "Password", "secret": True},
    }
    return {
        # JSON login, nested answer, refresh request, the token in a header of its own.
        "test-two-step": {
            "auth_mode": "TWO_STEP",
            "token_url": f"{base}/login",
            "refresh_url": f"{base}/refresh",
            "token_params": {"username": "${credentials.username}", "password": "${credentials.password}"},
            "refresh_token_params": {"refresh_token": "${refresh_token}"},
            "token_headers": {"content-type": "application/json", "x-region": "${connectionConfig.region}"},
            "token_response": {
                "token": "data.accessToken",
                "token_expiration": "data.expiresIn",
                "token_expiration_strategy": "expireIn",
                "refresh_token": "refreshToken",
            },
            "proxy": {"base_url": base, "headers": {"x-api-token": "${accessToken}"}},
            "connection_config": {"region": {"type": "string", "title": "Region", "pattern": "^[a-z]{2}$"}},
            "credentials": credentials,
        },
        # Form body, Basic header of two fields, an ISO date; the proxy's default Bearer.
        "test-two-step-basic": {
            "auth_mode": "TWO_STEP",
            "token_url": f"{base}/oauth/token",
            "body_format": "form",
            "token_params": {"grant_type": "client_credentials"},
            "token_headers": {"authorization": "Basic ${base64(${credentials.appId}:${credentials.appKey})}"},
            "token_response": {"token": "access_token", "token_expiration": "expires"},
            "proxy": {"base_url": base},
            "credentials": {"appId": {"type": "string"}, "appKey": {"type": "string"}},
        },
        # The password is the integration's (integration_config, set in its custom fields), not the person's.
        "test-two-step-preset": {
            "auth_mode": "TWO_STEP",
            "token_url": f"{base}/login",
            "token_params": {"username": "${credentials.username}", "password": "${credentials.password}"},
            "token_response": {"token": "data.accessToken"},
            "proxy": {"base_url": base},
            "credentials": {"username": {"type": "string"}},
            "integration_config": {"password": {"type": "string", "title": "Shared password", "secret": True}},
        },
        # An RFC 7523 client assertion signed with a key given only at connect time (NetSuite's shape).
        "test-two-step-assertion": {
            "auth_mode": "TWO_STEP",
            "token_url": f"{base}/assertion/token",
            "body_format": "form",
            "token_params": {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "${credentials.assertion}",
            },
            "assertion": {
                "type": "jwt",
                "key": "${assertionOption.privateKey}",
                "lifetimeInSeconds": 3600,
                "header": {"alg": "RS256", "kid": "${credentials.certificateId}"},
                "payload": {"iss": "${credentials.clientId}", "aud": f"{base}/assertion/token", "jti": "${random}"},
            },
            "token_response": {
                "token": "access_token",
                "token_expiration": "expires_in",
                "token_expiration_strategy": "expireIn",
            },
            "proxy": {"base_url": base},
            "assertion_option": {"privateKey": {"type": "string", "title": "Private key"}},
        },
        # Two requests: the first's answer says where the second goes and what it carries.
        "test-two-step-chain": {
            "auth_mode": "TWO_STEP",
            "token_request_method": "GET",
            "token_url": f"{base}/discovery?user=${{credentials.username}}",
            "additional_steps": [
                {
                    "token_url": "${step1.sessionUrl}",
                    "token_params": {"ticket": "${step1.ticket}", "password": "${credentials.password}"},
                }
            ],
            "token_response": {"token": "sessionId"},
            "token_response_metadata": ["instance"],
            "proxy": {"base_url": "${connectionConfig.instance}", "headers": {"x-api-token": "${accessToken}"}},
            "credentials": credentials,
        },
    }


@pytest.fixture
async def provider() -> AsyncIterator[TwoStepProvider]:
    async with two_step_provider() as fake:
        yield fake


@pytest.fixture
async def events(amqp: Any, namespace: str) -> AsyncIterator[EventWatch]:
    async with watched_events(amqp, namespace, "two-step") as watch:
        yield watch


@pytest.fixture
async def gw(
    start_gateway: StartGateway, provider: TwoStepProvider, events: EventWatch, tmp_path: Path
) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, _catalog(provider.base)),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        await create_integration(gateway, "test-two-step", "ts")
        await create_integration(gateway, "test-two-step-basic", "ts-basic")
        await create_integration(gateway, "test-two-step-chain", "ts-chain")
        await create_integration(gateway, "posthog", "ph")
        await create_integration(gateway, "test-two-step-preset", "ts-preset", custom={"password": provider.password})
        await create_integration(gateway, "test-two-step-assertion", "ts-assertion")
        yield gateway


def _login(provider: TwoStepProvider) -> dict[str, str]:
    return {"type": "TWO_STEP", "username": provider.username, "password": provider.password}


async def _proxy_me(gw: Gateway, connection_id: str, key: str) -> tuple[int, Any]:
    headers = {**gw.auth, "Connection-Id": connection_id, "Provider-Config-Key": key}
    resp = await gw.client.get("/proxy/api/me", headers=headers)
    return resp.status, await resp.json()


async def test_the_sdks_body_mints_a_token_stored_encrypted_and_the_proxy_sends_it(
    gw: Gateway, provider: TwoStepProvider, events: EventWatch, db: Any
) -> None:
    resp = await gw.client.post(
        f"/auth/two-step/ts?connection_id=ts-1&public_key={gw.public_key}&{PARAMS}", json=_login(provider)
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"connectionId": "ts-1", "providerConfigKey": "ts"}
    sent = provider.requests[-1]
    assert sent["body"] == {"username": provider.username, "password": provider.password}
    assert (sent["headers"]["x-region"], sent["headers"]["Content-Type"]) == ("eu", "application/json")

    resp = await gw.client.get("/connection/ts-1?provider_config_key=ts&refresh_token=true", headers=gw.auth)
    credentials = (await resp.json())["credentials"]
    assert list(credentials) == ["type", "token", "expires_at", "refresh_token", "raw", "username", "password"]
    assert (credentials["type"], credentials["token"], credentials["refresh_token"]) == ("TWO_STEP", "tok-1", "rt-1")
    assert credentials["raw"] == {"data": {"accessToken": "tok-1", "expiresIn": 3600}, "refreshToken": "rt-1"}
    assert credentials["expires_at"].endswith("Z")
    stored = await db["connections"].find_one({"connection_id": "ts-1"})
    assert stored["auth_mode"] == "TWO_STEP"
    assert stored["connection_config"] == {"region": "eu"}
    assert provider.password not in json.dumps(stored, default=str)
    assert stored["credentials_expires_at"] is not None
    created = await events.wait_for("connection.created", "ts-1")
    assert (created["auth_mode"], created["provider"]) == ("TWO_STEP", "test-two-step")

    # Unasked, the refresh token is left out, at the top level and where the answer held it.
    hidden = (await get_connection(gw, "ts-1", "ts"))["credentials"]
    assert "refresh_token" not in hidden
    assert hidden["raw"] == {"data": {"accessToken": "tok-1", "expiresIn": 3600}}

    # The template's own header carries the token: no Bearer beside it.
    status, answer = await _proxy_me(gw, "ts-1", "ts")
    assert (status, answer["token"]) == (200, "tok-1")

    # A refresh spends the refresh token at the refresh request; the proxy follows the new token.
    provider.live.clear()
    resp = await gw.client.get(
        "/connection/ts-1?provider_config_key=ts&refresh_token=true&force_refresh=true", headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    renewed = (await resp.json())["credentials"]
    assert (renewed["token"], renewed["refresh_token"]) == ("tok-2", "rt-2")
    assert (renewed["username"], renewed["password"]) == (provider.username, provider.password)
    assert provider.requests[-1]["path"] == "/refresh"
    assert provider.requests[-1]["body"] == {"refresh_token": "rt-1"}
    status, answer = await _proxy_me(gw, "ts-1", "ts")
    assert (status, answer["token"]) == (200, "tok-2")

    # A refresh token the provider no longer takes: the stored fields mint a new token.
    provider.refresh_tokens.clear()
    resp = await gw.client.get(
        "/connection/ts-1?provider_config_key=ts&refresh_token=true&force_refresh=true", headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["credentials"]["token"] == "tok-3"
    assert [r["path"] for r in provider.requests[-2:]] == ["/refresh", "/login"]


async def test_a_basic_header_form_body_and_the_default_bearer(gw: Gateway, provider: TwoStepProvider) -> None:
    body = {"type": "TWO_STEP", "appId": provider.app_id, "appKey": provider.app_key}
    resp = await gw.client.post(f"/auth/two-step/ts-basic?connection_id=b-1&public_key={gw.public_key}", json=body)
    assert resp.status == 200, await resp.text()
    assert provider.requests[-1]["body"] == {"grant_type": "client_credentials"}
    credentials = (await get_connection(gw, "b-1", "ts-basic"))["credentials"]
    assert credentials["token"] == "tok-1"
    assert credentials["expires_at"].endswith("Z")
    assert "refresh_token" not in credentials
    status, answer = await _proxy_me(gw, "b-1", "ts-basic")
    assert (status, answer["token"]) == (200, "tok-1")


async def test_chained_steps_and_token_response_metadata(gw: Gateway, provider: TwoStepProvider) -> None:
    resp = await gw.client.post(
        f"/auth/two-step/ts-chain?connection_id=c-1&public_key={gw.public_key}", json=_login(provider)
    )
    assert resp.status == 200, await resp.text()
    assert [r["path"] for r in provider.requests] == ["/discovery", "/session"]
    assert provider.requests[-1]["body"] == {"ticket": "ticket-9", "password": provider.password}
    connection = await get_connection(gw, "c-1", "ts-chain")
    assert connection["credentials"]["token"] == "tok-1"
    assert connection["connection_config"] == {"instance": provider.base}


async def test_import_through_post_connection(gw: Gateway, provider: TwoStepProvider, db: Any) -> None:
    provider.live.add("imported-token")
    body = {
        "connection_id": "i-1",
        "provider_config_key": "ts",
        "token": "imported-token",
        "expires_in": 600,
        "credentials": {"username": provider.username, "password": provider.password},
        "connection_config": {"region": "eu"},
    }
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    credentials = (await get_connection(gw, "i-1", "ts"))["credentials"]
    assert (credentials["type"], credentials["token"], credentials["username"]) == (
        "TWO_STEP",
        "imported-token",
        provider.username,
    )
    status, answer = await _proxy_me(gw, "i-1", "ts")
    assert (status, answer["token"]) == (200, "imported-token")
    # Without a refresh token, a refresh mints from the imported fields.
    resp = await gw.client.get(
        "/connection/i-1?provider_config_key=ts&refresh_token=true&force_refresh=true", headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["credentials"]["token"] == "tok-1"

    resp = await gw.client.post("/connection", json={**body, "connection_id": "i-2", "token": ""}, headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_token")
    resp = await gw.client.post(
        "/connection", json={**body, "connection_id": "i-3", "credentials": {"username": 1}}, headers=gw.auth
    )
    assert_envelope(await resp.json(), "invalid_body")
    assert await db["connections"].count_documents({"connection_id": {"$in": ["i-2", "i-3"]}}) == 0


@pytest.mark.parametrize(
    ("key", "query", "body", "status", "code"),
    [
        # The provider refuses the pair: its refusal, nothing stored.
        (
            "ts",
            PARAMS,
            {"type": "TWO_STEP", "username": "api-user", "password": "wrong"},
            400,
            "invalid_two_step_credentials",
        ),
        # A field the token request needs is missing: named, nothing sent.
        ("ts", PARAMS, {"type": "TWO_STEP", "username": "api-user"}, 400, "missing_two_step_credentials"),
        # A field that does not match the template's pattern.
        (
            "ts",
            PARAMS,
            {"type": "TWO_STEP", "username": "API USER", "password": "x"},
            400,
            "invalid_two_step_credentials",
        ),
        ("ts", PARAMS, {"type": "TWO_STEP", "username": ["api-user"], "password": "x"}, 400, "invalid_body"),
        ("ts", "", {"type": "TWO_STEP", "username": "api-user", "password": "x"}, 400, "missing_two_step_credentials"),
        (
            "ts",
            "params[region]=e.u",
            {"type": "TWO_STEP", "username": "api-user", "password": "x"},
            400,
            "invalid_connection_config",
        ),
        ("ph", "", {"type": "TWO_STEP", "username": "api-user", "password": "x"}, 400, "invalid_auth_mode"),
    ],
)
async def test_bad_input_is_refused_with_the_modes_code_and_nothing_is_stored(
    gw: Gateway,
    provider: TwoStepProvider,
    events: EventWatch,
    db: Any,
    key: str,
    query: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    resp = await gw.client.post(f"/auth/two-step/{key}?connection_id=bad&public_key={gw.public_key}&{query}", json=body)
    assert resp.status == status, await resp.text()
    answer = await resp.json()
    assert_envelope(answer, code)
    assert "wrong" not in json.dumps(answer)
    assert provider.password not in json.dumps(answer)
    failed = await events.wait_for("auth.failed", "bad")
    assert (failed["error"]["type"], failed["auth_mode"]) == (code, "TWO_STEP")
    assert await db["connections"].count_documents({}) == 0
    assert not events.announced_connection("bad")


async def test_the_python_sdk_types_the_credentials(gw: Gateway, provider: TwoStepProvider) -> None:
    resp = await gw.client.post(
        f"/auth/two-step/ts?connection_id=py-1&public_key={gw.public_key}&{PARAMS}", json=_login(provider)
    )
    assert resp.status == 200, await resp.text()
    async with AsyncClient(host=gw.url, secret_key=gw.secret_key) as keyway:
        credentials = (await keyway.get_connection("ts", "py-1")).credentials
        assert isinstance(credentials, TwoStepCredentials)
        assert credentials.token == "tok-1"
        assert credentials.refresh_token is None  # not asked for
        assert credentials.expires_at is not None
        assert credentials.fields == {"username": provider.username, "password": provider.password}
        assert provider.password not in repr(credentials)
        renewed = await keyway.get_token("ts", "py-1", force_refresh=True)  # the whole credentials, as Nango's
        assert isinstance(renewed, TwoStepCredentials)
        assert renewed.token == "tok-2"


async def test_the_connect_ui_asks_for_the_templates_credentials_and_posts_them(
    gw: Gateway, provider: TwoStepProvider, events: EventWatch
) -> None:
    body = {"end_user": {"id": "user-7"}, "allowed_integrations": ["ts"]}
    resp = await gw.client.post("/connect/sessions", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["data"]["token"]
    resp = await gw.client.get("/connect/session/integrations", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    [entry] = (await resp.json())["data"]
    assert (entry["auth_mode"], entry["flow"], entry["form_path"]) == (
        "TWO_STEP",
        "form",
        "auth/two-step/{providerConfigKey}",
    )
    assert sorted(entry["fields"], key=lambda field: field["name"]) == [
        {"name": "password", "label": "Password", "kind": "password", "required": True},
        {"name": "username", "label": "User", "kind": "text", "required": True},
    ]
    # What the page posts: the fields as typed, no type, the session token in the query.
    typed = {"username": provider.username, "password": provider.password}
    resp = await gw.client.post(f"/auth/two-step/ts?connect_session_token={token}&{PARAMS}", json=typed)
    assert resp.status == 200, await resp.text()
    connection_id = (await resp.json())["connectionId"]
    assert (await get_connection(gw, connection_id, "ts"))["credentials"]["token"] == "tok-1"
    created = await events.wait_for("connection.created", connection_id)
    assert created["auth_mode"] == "TWO_STEP"


async def test_a_field_the_integration_holds_is_used_and_never_stored(gw: Gateway, provider: TwoStepProvider) -> None:
    body = {"type": "TWO_STEP", "username": provider.username, "password": "the person's guess"}
    resp = await gw.client.post(f"/auth/two-step/ts-preset?connection_id=p-1&public_key={gw.public_key}", json=body)
    assert resp.status == 200, await resp.text()
    assert provider.requests[-1]["body"] == {"username": provider.username, "password": provider.password}
    credentials = (await get_connection(gw, "p-1", "ts-preset"))["credentials"]
    assert credentials["username"] == provider.username
    assert "password" not in credentials
    # A refresh uses the integration's value again.
    resp = await gw.client.get("/connection/p-1?provider_config_key=ts-preset&force_refresh=true", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["credentials"]["token"] == "tok-2"


def _private_key() -> tuple[str, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key


async def test_a_client_assertion_signed_with_a_key_that_is_never_stored(
    gw: Gateway, provider: TwoStepProvider, db: Any
) -> None:
    pem, key = _private_key()
    provider.assertion_key = key.public_key()
    body = {
        "type": "TWO_STEP",
        "clientId": "client-1",
        "certificateId": "cert-1",
        "assertionOption": {"privateKey": pem},
    }
    resp = await gw.client.post(f"/auth/two-step/ts-assertion?connection_id=a-1&public_key={gw.public_key}", json=body)
    assert resp.status == 200, await resp.text()
    credentials = (await get_connection(gw, "a-1", "ts-assertion"))["credentials"]
    assert credentials["token"] == "tok-1"
    assert credentials["assertion"] == provider.requests[-1]["body"]["client_assertion"]
    stored = await db["connections"].find_one({"connection_id": "a-1"})
    assert "PRIVATE KEY" not in json.dumps(credentials)
    assert "PRIVATE KEY" not in json.dumps(stored, default=str)
    # A refresh while the assertion lasts sends it again; the provider still takes it.
    resp = await gw.client.get("/connection/a-1?provider_config_key=ts-assertion&force_refresh=true", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["credentials"]["token"] == "tok-2"

    # Another key than the provider knows, a malformed key, a malformed option: the mode's codes, nothing stored.
    other_pem, _ = _private_key()
    cases = [
        ({**body, "assertionOption": {"privateKey": other_pem}}, "invalid_two_step_credentials"),
        (
            {**body, "assertionOption": {"privateKey": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"}},
            "invalid_private_key",
        ),
        ({**body, "assertionOption": 1}, "invalid_body"),
    ]
    for number, (bad, code) in enumerate(cases, start=2):
        resp = await gw.client.post(
            f"/auth/two-step/ts-assertion?connection_id=a-{number}&public_key={gw.public_key}", json=bad
        )
        assert resp.status == 400, await resp.text()
        answer = await resp.json()
        assert_envelope(answer, code)
        assert "nope" not in json.dumps(answer)
    assert await db["connections"].count_documents({"connection_id": {"$in": ["a-2", "a-3", "a-4"]}}) == 0

    # A form (the Connect UI, the dashboard) lists the key as a field of its own and posts it flat.
    resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u-1"}}, headers=gw.auth)
    token = (await resp.json())["data"]["token"]
    resp = await gw.client.get("/connect/session/integrations", headers={"Authorization": f"Bearer {token}"})
    [entry] = [item for item in (await resp.json())["data"] if item["unique_key"] == "ts-assertion"]
    assert entry["fields"] == [
        {"name": "assertionOption.privateKey", "label": "Private key", "kind": "textarea", "required": True}
    ]
    flat = {"clientId": "client-1", "certificateId": "cert-1", "assertionOption.privateKey": pem}
    resp = await gw.client.post(f"/auth/two-step/ts-assertion?connect_session_token={token}", json=flat)
    assert resp.status == 200, await resp.text()
    connection_id = (await resp.json())["connectionId"]
    kept = (await get_connection(gw, connection_id, "ts-assertion"))["credentials"]
    assert "assertionOption.privateKey" not in kept
    assert "PRIVATE KEY" not in json.dumps(kept)


async def test_nangos_current_integrations_take_the_integration_config(gw: Gateway, provider: TwoStepProvider) -> None:
    body = {"provider": "test-two-step-preset", "unique_key": "preset-2", "integration_config": {"password": "x"}}
    resp = await gw.client.post("/integrations", json=body, headers=gw.auth)
    assert resp.status == 200, await resp.text()
    patch = {"integration_config": {"password": provider.password}}
    resp = await gw.client.patch("/integrations/preset-2", json=patch, headers=gw.auth)
    assert resp.status == 200, await resp.text()
    resp = await gw.client.post(
        f"/auth/two-step/preset-2?connection_id=p-2&public_key={gw.public_key}",
        json={"type": "TWO_STEP", "username": provider.username},
    )
    assert resp.status == 200, await resp.text()
    assert provider.requests[-1]["body"] == {"username": provider.username, "password": provider.password}

    refusals = [
        (
            {**body, "unique_key": "p-3", "integration_config": {"passwort": "x"}},
            "Unknown field passwort, Shared password is required",
        ),
        (
            {**body, "unique_key": "p-4", "custom": {"password": "x"}},
            "This provider uses integration_config; set its values there instead of custom",
        ),
    ]
    for refused, message in refusals:
        resp = await gw.client.post("/integrations", json=refused, headers=gw.auth)
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"] == {"code": "invalid_body", "message": message}
