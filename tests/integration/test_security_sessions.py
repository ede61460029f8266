"""Issue 14, items 3, 4 and 6, as an attacker would try them over HTTP against a real gateway.

A connect session or link token must not let a browser name (and so replace) another end user's
connection; a token is spent by exactly one connection, however many attempts race, and an OAuth
flow it started cannot finish once it is deleted or spent; an environment refuses the bare public
key unless told otherwise, and HMAC is never on without a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import ClientResponse

from auth_gateway.connect.link_outcome import verify_outcome
from auth_gateway.operations.connect_sessions import SESSION_LIFETIME, ConnectSession
from auth_gateway.resources import STORES
from auth_gateway.settings import GatewaySettings
from keyway_shared.events import utcnow

from ..support.oauth_provider import OAuthProvider
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

RETURN_URL = "https://app.example.com/integrations/done"
ALICE = {"id": "alice", "email": "alice@a.test", "display_name": "Alice"}
ALICE_ORG = {"id": "org-a", "display_name": "A Corp"}
MALLORY = {"id": "mallory"}


@pytest.fixture
async def gw(provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, {"test-oauth2": provider.template()}),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        await create_integration(gateway, "test-oauth2", "oauth", **provider.integration_fields)
        await create_integration(gateway, "posthog", "ph")
        yield gateway


async def mint(gw: Gateway, end_user: dict[str, Any], **body: Any) -> str:
    resp = await gw.client.post("/connect/sessions", json={"end_user": end_user, **body}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["data"]["token"]
    return token


async def connect_api_key(gw: Gateway, query: str, api_key: str) -> ClientResponse:
    return await gw.client.post(f"/api-auth/api-key/ph?{query}", json={"apiKey": api_key})


async def stored_api_key(gw: Gateway, connection_id: str) -> str:
    resp = await gw.client.get(f"/connection/{connection_id}?provider_config_key=ph", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    key: str = (await resp.json())["credentials"]["apiKey"]
    return key


async def alices_connection(gw: Gateway) -> str:
    """Alice connects through her app's session; the gateway names the connection."""
    token = await mint(gw, ALICE, organization=ALICE_ORG)
    resp = await connect_api_key(gw, f"connect_session_token={token}", "alice-key")
    assert resp.status == 200, await resp.text()
    connection_id: str = (await resp.json())["connectionId"]
    return connection_id


# Item 3: a session (or link) token names no connection.


async def test_a_session_cannot_name_another_end_users_connection(gw: Gateway, db: Any) -> None:
    victim = await alices_connection(gw)
    stored = await db["connections"].find_one({"connection_id": victim})
    assert stored["end_user"] == {**ALICE, "organization": ALICE_ORG}  # the connection is Alice's

    token = await mint(gw, MALLORY)
    resp = await connect_api_key(gw, f"connect_session_token={token}&connection_id={victim}", "mallory-key")
    assert resp.status == 400
    body = await resp.json()
    assert_envelope(body, "invalid_query_params")
    assert body["error"]["errors"][0]["path"] == ["connection_id"]
    resp = await gw.client.post(f"/auth/unauthenticated/ph?connect_session_token={token}&connection_id={victim}")
    assert_envelope(await resp.json(), "invalid_query_params")

    assert await stored_api_key(gw, victim) == "alice-key"
    assert (await db["connections"].find_one({"connection_id": victim}))["end_user"]["id"] == "alice"
    # Refused before anything was tried: Mallory's session is still unspent, and names its own connection.
    resp = await connect_api_key(gw, f"connect_session_token={token}", "mallory-key")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["connectionId"] != victim


async def test_a_reconnect_session_never_writes_over_another_end_users_connection(gw: Gateway, db: Any) -> None:
    victim = await alices_connection(gw)
    sessions = gw.client.server.app[STORES].connect_sessions

    async def reconnect_session(end_user: dict[str, Any]) -> str:
        """What ``POST /connect/sessions/reconnect`` (issue 17) will mint: the backend fixes the connection."""
        session = ConnectSession(
            id="",
            environment="dev",
            end_user=end_user,
            allowed_integrations=["ph"],
            connection_id=victim,
            expires_at=utcnow() + SESSION_LIFETIME,
        )
        return await sessions.create(session)

    token = await reconnect_session(MALLORY)
    resp = await connect_api_key(gw, f"connect_session_token={token}", "mallory-key")
    assert resp.status == 403, await resp.text()
    assert_envelope(await resp.json(), "connection_owned_elsewhere")
    assert await stored_api_key(gw, victim) == "alice-key"
    assert await sessions.find(token) is not None  # the write failed: its claim was given back

    token = await reconnect_session(ALICE)
    resp = await connect_api_key(gw, f"connect_session_token={token}", "alice-new-key")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["connectionId"] == victim
    assert await stored_api_key(gw, victim) == "alice-new-key"


async def test_a_link_cannot_end_in_a_signed_success_for_an_id_the_app_never_issued(
    gw: Gateway, provider: OAuthProvider, db: Any
) -> None:
    victim = "alice"  # an app that named connections after its users, before sessions
    resp = await gw.client.post(
        "/connection",
        json={
            "connection_id": victim,
            "provider_config_key": "oauth",
            "access_token": "alice-token",
            "no_expiration": True,
        },
        headers=gw.auth,
    )
    assert resp.status == 201, await resp.text()
    resp = await gw.client.patch("/environment", json={"allowed_return_urls": [RETURN_URL]}, headers=gw.auth)
    assert resp.status == 200, await resp.text()
    resp = await gw.client.post("/connect/links", json={"return_url": RETURN_URL, "end_user": MALLORY}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["data"]["token"]

    attack = await link_oauth_flow(gw, f"connect_session_token={token}&redirect=1&connection_id={victim}")
    assert attack is None  # refused at the start: no flow, so no outcome at all
    assert provider.authorize_requests == []
    resp = await gw.client.get(f"/connection/{victim}?provider_config_key=oauth", headers=gw.auth)
    assert (await resp.json())["credentials"]["access_token"] == "alice-token"

    outcome = await link_oauth_flow(gw, f"connect_session_token={token}&redirect=1")
    assert outcome is not None
    assert outcome["status"] == "success"
    assert outcome["connection_id"] != victim
    assert await db["connections"].count_documents({"connection_id": outcome["connection_id"]}) == 1


async def link_oauth_flow(gw: Gateway, query: str) -> dict[str, str] | None:
    """A link's redirect flow followed as far as it goes; the signed outcome the app receives, if any."""
    resp = await gw.client.get(f"/oauth/connect/oauth?{query}", allow_redirects=False)
    if resp.status != 302:
        return None
    callback = await authorize_at_provider(gw, resp.headers["Location"])
    resp = await gw.client.get(callback, allow_redirects=False)
    location = resp.headers.get("Location", "")
    if resp.status != 303 or not location.startswith(RETURN_URL):
        return None
    return verify_outcome(urlsplit(location).query, gw.secret_key)


async def authorize_at_provider(gw: Gateway, authorization_url: str) -> str:
    """The user consents at the provider, which sends the browser back: the callback's path and query."""
    async with gw.client.session.get(authorization_url, allow_redirects=False) as consent:
        assert consent.status == 302, await consent.text()
        back = urlsplit(consent.headers["Location"])
    return f"{back.path}?{back.query}"


# Item 4: a session is spent once, and checked again when its OAuth flow comes back.


async def test_parallel_uses_of_one_token_make_exactly_one_connection(gw: Gateway, db: Any) -> None:
    token = await mint(gw, MALLORY)
    answers = await asyncio.gather(
        *(connect_api_key(gw, f"connect_session_token={token}", f"key-{i}") for i in range(10))
    )
    statuses = sorted(resp.status for resp in answers)
    assert statuses == [200] + [401] * 9, statuses
    for resp in answers:
        if resp.status == 401:
            assert_envelope(await resp.json(), "unknown_connect_session_token")
    assert await db["connections"].count_documents({}) == 1


async def start_popup(gw: Gateway, token: str) -> tuple[Any, str]:
    """The SDK's popup with a session token: its WebSocket, and where the gateway sent the browser."""
    socket = await gw.client.ws_connect("/")
    ack = json.loads((await socket.receive()).data)
    resp = await gw.client.get(
        f"/oauth/connect/oauth?connect_session_token={token}&ws_client_id={ack['ws_client_id']}",
        allow_redirects=False,
    )
    assert resp.status == 302, await resp.text()
    return socket, resp.headers["Location"]


async def finish_popup(gw: Gateway, socket: Any, callback: str) -> dict[str, Any]:
    resp = await gw.client.get(callback, allow_redirects=False)
    resp.release()
    frame: dict[str, Any] = json.loads((await socket.receive(timeout=10)).data)
    await socket.close()
    return frame


async def test_an_oauth_flow_cannot_finish_after_its_session_was_deleted(
    gw: Gateway, provider: OAuthProvider, db: Any
) -> None:
    token = await mint(gw, MALLORY)
    socket, authorization_url = await start_popup(gw, token)
    callback = await authorize_at_provider(gw, authorization_url)
    resp = await gw.client.delete("/connect/session", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 204
    frame = await finish_popup(gw, socket, callback)
    assert (frame["message_type"], frame["error_type"]) == ("error", "unknown_connect_session_token")
    assert provider.token_requests == []  # the code was never exchanged
    assert await db["connections"].count_documents({}) == 0


async def test_two_oauth_flows_of_one_session_make_one_connection(
    gw: Gateway, provider: OAuthProvider, db: Any
) -> None:
    token = await mint(gw, MALLORY)
    first_socket, first_url = await start_popup(gw, token)
    second_socket, second_url = await start_popup(gw, token)
    first_callback = await authorize_at_provider(gw, first_url)
    second_callback = await authorize_at_provider(gw, second_url)
    assert (await finish_popup(gw, first_socket, first_callback))["message_type"] == "success"
    frame = await finish_popup(gw, second_socket, second_callback)
    assert (frame["message_type"], frame["error_type"]) == ("error", "unknown_connect_session_token")
    assert await db["connections"].count_documents({}) == 1
    assert len(provider.token_requests) == 1


# Item 6: the public key is refused by default, HMAC mode needs a valid HMAC, and never an empty key.


async def test_the_default_environment_refuses_the_public_key(start_gateway: StartGateway) -> None:
    default = GatewaySettings.model_fields["public_key_connect"].default
    async with start_gateway(public_key_connect=default) as gw:
        await create_integration(gw, "posthog", "ph")
        resp = await gw.client.get("/environment", headers=gw.auth)
        environment = (await resp.json())["environment"]
        assert (environment["public_key_connect"], environment["hmac_enabled"]) == ("refused", False)

        resp = await connect_api_key(gw, f"public_key={gw.public_key}&connection_id=c1", "k")
        assert resp.status == 401
        body = await resp.json()
        assert body["error"] == {
            "code": "deprecated_authentication",
            "message": "Public key authentication is deprecated. Please use connect session authentication instead.",
        }
        socket = await gw.client.ws_connect("/")
        ack = json.loads((await socket.receive()).data)
        resp = await gw.client.get(
            f"/oauth/connect/ph?public_key={gw.public_key}&connection_id=c1&ws_client_id={ack['ws_client_id']}"
        )
        frame = json.loads((await socket.receive(timeout=10)).data)
        await socket.close()
        assert frame["error_type"] == "deprecated_authentication"

        token = await mint(gw, MALLORY)  # connect sessions always work
        resp = await connect_api_key(gw, f"connect_session_token={token}", "k")
        assert resp.status == 200, await resp.text()


def signed(key: str, connection_id: str) -> str:
    return hmac.new(key.encode(), f"ph:{connection_id}".encode(), hashlib.sha256).hexdigest()


async def test_hmac_mode_needs_a_valid_hmac(start_gateway: StartGateway) -> None:
    async with start_gateway(public_key_connect="hmac") as gw:
        await create_integration(gw, "posthog", "ph")
        resp = await gw.client.get("/environment", headers=gw.auth)
        environment = (await resp.json())["environment"]
        assert (environment["public_key_connect"], environment["hmac_enabled"]) == ("hmac", True)
        key = environment["hmac_key"]
        assert len(key) == 64  # made at first start: hmac mode never runs without a key

        public = f"public_key={gw.public_key}&connection_id=c1"
        assert_envelope(await (await connect_api_key(gw, public, "k")).json(), "missing_hmac")
        resp = await connect_api_key(gw, f"{public}&hmac={signed('guess', 'c1')}", "k")
        assert_envelope(await resp.json(), "invalid_hmac")
        resp = await connect_api_key(gw, f"{public}&hmac={signed(key, 'c2')}", "k")  # signed for another id
        assert_envelope(await resp.json(), "invalid_hmac")
        resp = await connect_api_key(gw, f"{public}&hmac=M%C2%B1E%C3%92v", "k")  # non-ASCII: once a 500
        assert resp.status == 400
        assert_envelope(await resp.json(), "invalid_hmac")
        resp = await connect_api_key(gw, f"{public}&hmac={signed(key, 'c1')}", "k")
        assert resp.status == 200, await resp.text()


async def test_hmac_is_never_on_without_a_key(gw: Gateway) -> None:
    for body in (
        {"hmac_enabled": True},
        {"hmac_enabled": True, "hmac_key": ""},
        {"public_key_connect": "hmac", "hmac_key": "  "},
    ):
        resp = await gw.client.patch("/environment", json=body, headers=gw.auth)
        assert resp.status == 400, (body, await resp.text())
        answer = await resp.json()
        assert_envelope(answer, "invalid_body")
        assert answer["error"]["errors"][0]["path"] == ["hmac_key"]
    resp = await gw.client.get("/environment", headers=gw.auth)
    assert (await resp.json())["environment"]["public_key_connect"] == "allowed"  # unchanged
    resp = await connect_api_key(gw, f"public_key={gw.public_key}&connection_id=c1", "k")
    assert resp.status == 200, await resp.text()

    resp = await gw.client.patch("/environment", json={"hmac_enabled": True, "hmac_key": "k1"}, headers=gw.auth)
    assert resp.status == 200, await resp.text()
    resp = await gw.client.patch("/environment", json={"hmac_key": ""}, headers=gw.auth)  # clearing it under hmac
    assert resp.status == 400
    assert (await resp.json())["error"]["errors"][0]["path"] == ["hmac_key"]


async def test_hmac_enabled_still_works_for_old_clients(gw: Gateway) -> None:
    async def patch(body: dict[str, Any]) -> dict[str, Any]:
        resp = await gw.client.patch("/environment", json=body, headers=gw.auth)
        assert resp.status == 200, await resp.text()
        environment: dict[str, Any] = (await resp.json())["environment"]
        return environment

    env = await patch({"hmac_enabled": True, "hmac_key": "k1"})
    assert (env["public_key_connect"], env["hmac_enabled"]) == ("hmac", True)
    env = await patch({"hmac_enabled": False})  # what turning HMAC off meant: the public key alone
    assert (env["public_key_connect"], env["hmac_enabled"]) == ("allowed", False)
    env = await patch({"public_key_connect": "refused"})
    env = await patch({"hmac_enabled": False})  # never opens an environment that was closed
    assert (env["public_key_connect"], env["hmac_enabled"]) == ("refused", False)
    resp = await gw.client.patch(
        "/environment", json={"public_key_connect": "allowed", "hmac_enabled": True}, headers=gw.auth
    )
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_body")
    resp = await gw.client.patch("/environment", json={"public_key_connect": "open"}, headers=gw.auth)
    assert_envelope(await resp.json(), "invalid_body")
