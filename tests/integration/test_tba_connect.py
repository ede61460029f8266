"""NetSuite token-based auth from the browser: ``POST /auth/tba/{key}``, as @nangohq/frontend 0.71.10
posts it (``auth(key, id, {credentials: {type: 'TBA', token_id, token_secret, …}, params: {accountId}})``
becomes the body ``{token_id, token_secret[, oauth_client_id_override, oauth_client_secret_override]}``
and the query ``params[accountId]=…`` with the public key or the connect session token).

Nango's route is ``packages/server/lib/controllers/auth/postTba.ts``: a strict zod body (``invalid_body``
with zod's issues), ``{connectionId, providerConfigKey}`` on success, credentials stored as
``{type: "TBA", token_id, token_secret, config_override}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webhook_dispatcher.app import create_app as create_dispatcher
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import running
from ..support.polling import eventually
from ..support.receiver import WebhookReceiver, webhook_receiver
from .flow_helpers import EventWatch, get_connection, watched_events
from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

TOKEN = {"token_id": "tba-token-id", "token_secret": "tba-token-secret"}


@pytest.fixture
async def events(amqp: Any, namespace: str) -> AsyncIterator[EventWatch]:
    async with watched_events(amqp, namespace, "tba-connect") as watch:
        yield watch


@pytest.fixture
async def gw(start_gateway: StartGateway, events: EventWatch) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        await create_integration(gateway, "netsuite-tba", "ns", oauth_client_id="ck", oauth_client_secret="cs")
        await create_integration(gateway, "posthog", "ph")
        yield gateway


async def mint_session(gw: Gateway, body: dict[str, Any]) -> str:
    resp = await gw.client.post("/connect/sessions", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["data"]["token"]
    return token


async def test_the_sdks_body_with_a_public_key_stores_the_token_encrypted(
    gw: Gateway, events: EventWatch, db: Any
) -> None:
    resp = await gw.client.post(
        f"/auth/tba/ns?connection_id=ns-1&public_key={gw.public_key}&params[accountId]=1234567-sb1", json=TOKEN
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"connectionId": "ns-1", "providerConfigKey": "ns"}

    connection = await get_connection(gw, "ns-1", "ns")
    assert connection["credentials"] == {**{"type": "TBA"}, **TOKEN, "config_override": {}}
    assert list(connection["credentials"]) == ["type", "token_id", "token_secret", "config_override"]
    assert connection["connection_config"] == {"accountId": "1234567-sb1"}
    stored = await db["connections"].find_one({"connection_id": "ns-1"})
    assert stored["auth_mode"] == "TBA"
    assert "credentials" not in stored
    assert isinstance(stored["credentials_enc"], str)  # one sealed value
    assert TOKEN["token_secret"] not in json.dumps(stored, default=str)
    created = await events.wait_for("connection.created", "ns-1")
    assert (created["auth_mode"], created["provider"]) == ("TBA", "netsuite-tba")

    # The client to sign with instead of the integration's, as Nango keeps it; an empty one is none.
    body = {**TOKEN, "oauth_client_id_override": "other-ck", "oauth_client_secret_override": ""}
    resp = await gw.client.post(
        f"/auth/tba/ns?connection_id=ns-2&public_key={gw.public_key}&params[accountId]=7654321", json=body
    )
    assert resp.status == 200, await resp.text()
    assert (await get_connection(gw, "ns-2", "ns"))["credentials"]["config_override"] == {"client_id": "other-ck"}

    # Nango's current route names the connection when the caller does not.
    resp = await gw.client.post(f"/auth/tba/ns?public_key={gw.public_key}&params[accountId]=7654321", json=TOKEN)
    assert resp.status == 200, await resp.text()
    generated = (await resp.json())["connectionId"]
    assert (await get_connection(gw, generated, "ns"))["credentials"]["token_id"] == TOKEN["token_id"]


async def test_a_connect_session_spends_itself_and_the_auth_webhook_follows(
    start_gateway: StartGateway, service_settings: dict[str, Any], encryption_key: str, db: Any
) -> None:
    dispatcher = DispatcherSettings(**service_settings, encryption_key=encryption_key, egress_allowlist="127.0.0.0/8")
    async with (
        webhook_receiver() as receiver,
        start_gateway() as gw,
        running(create_dispatcher(dispatcher)),
    ):
        await create_integration(gw, "netsuite-tba", "ns", oauth_client_id="ck", oauth_client_secret="cs")
        resp = await gw.client.patch(
            "/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=gw.auth
        )
        assert resp.status == 200, await resp.text()
        token = await mint_session(gw, {"end_user": {"id": "user-9"}, "allowed_integrations": ["ns"]})

        resp = await gw.client.post(f"/auth/tba/ns?connect_session_token={token}&params[accountId]=1234567", json=TOKEN)
        assert resp.status == 200, await resp.text()
        connection_id = (await resp.json())["connectionId"]
        stored = await db["connections"].find_one({"connection_id": connection_id})
        assert (stored["auth_mode"], stored["connection_config"]) == ("TBA", {"accountId": "1234567"})
        assert stored["end_user"]["id"] == "user-9"

        hooks = await eventually(lambda: _received(receiver), what="the TBA connection's auth webhook")
        hook = json.loads(hooks[0].body)
        assert (hook["type"], hook["operation"], hook["success"]) == ("auth", "creation", True)
        assert (hook["connectionId"], hook["authMode"], hook["provider"]) == (connection_id, "TBA", "netsuite-tba")
        assert hook["endUser"]["endUserId"] == "user-9"

        # A connect session names the connection itself.
        other = await mint_session(gw, {"end_user": {"id": "user-9"}})
        resp = await gw.client.post(
            f"/auth/tba/ns?connect_session_token={other}&connection_id=mine&params[accountId]=1", json=TOKEN
        )
        assert resp.status == 400, await resp.text()
        assert await db["connections"].count_documents({}) == 1


@pytest.mark.parametrize(
    ("query", "body", "code", "issues"),
    [
        ("params[accountId]=1", {"token_id": "i"}, "invalid_body", [("invalid_type", ["token_secret"])]),
        (
            "params[accountId]=1",
            {"token_id": "i", "token_secret": ""},
            "invalid_body",
            [("too_small", ["token_secret"])],
        ),
        ("params[accountId]=1", {**TOKEN, "type": "TBA"}, "invalid_body", [("unrecognized_keys", [])]),
        (
            "params[accountId]=1",
            {**TOKEN, "oauth_client_id_override": 1},
            "invalid_body",
            [("invalid_type", ["oauth_client_id_override"])],
        ),
        ("", TOKEN, "missing_account_id", None),
        ("params[accountId]=", TOKEN, "missing_account_id", None),
        # The template's pattern for the host it names (lower case, "_" written as "-").
        ("params[accountId]=evil.example%2Fx", TOKEN, "invalid_connection_config", None),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    gw: Gateway,
    events: EventWatch,
    db: Any,
    query: str,
    body: dict[str, Any],
    code: str,
    issues: list[tuple[str, list[str]]] | None,
) -> None:
    resp = await gw.client.post(f"/auth/tba/ns?connection_id=bad&public_key={gw.public_key}&{query}", json=body)
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    assert_envelope(answer, code)
    if issues is not None:
        assert [(issue["code"], issue["path"]) for issue in answer["error"]["errors"]] == issues
    failed = await events.wait_for("auth.failed", "bad")
    assert (failed["error"]["type"], failed["auth_mode"]) == (code, "TBA")
    assert await db["connections"].count_documents({}) == 0
    assert not events.announced_connection("bad")


async def test_an_integration_of_another_mode_is_refused(gw: Gateway, db: Any) -> None:
    resp = await gw.client.post(
        f"/auth/tba/ph?connection_id=c&public_key={gw.public_key}&params[accountId]=1", json=TOKEN
    )
    assert resp.status == 400, await resp.text()
    assert_envelope(await resp.json(), "invalid_auth_mode")
    resp = await gw.client.post(
        f"/auth/tba/nope?connection_id=c&public_key={gw.public_key}&params[accountId]=1", json=TOKEN
    )
    assert_envelope(await resp.json(), "unknown_provider_config")
    assert await db["connections"].count_documents({}) == 0


async def _received(receiver: WebhookReceiver) -> list[Any] | None:
    return list(receiver.received) or None
