"""The popup flows under attack (issue 14: items 7 and 9, and item 14's popup pages), over HTTP against
a real gateway and small real providers on 127.0.0.1.

- Consent phishing: an attacker starts a flow and has a victim consent in the victim's own browser.
  The callback then comes from a browser without the flow's cookie (or with another one): refused,
  and the provider's token endpoint never called (OAuth 2, OAuth 1, GitHub App).
- A browser may not steer the protocol through ``authorization_params[...]`` (where the code goes,
  which client, the state, PKCE), nor swap the OAuth client with the public key alone.
- A replayed callback is answered without a second announcement.
- A popup's client errors answer 4xx, with the SDK's frame and postMessage kept.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from activity_log.app import create_app
from activity_log.settings import ActivityLogSettings

from ..support.github_app_provider import GitHubApp, GitHubLikeProvider, rsa_key_pem
from ..support.inproc import running
from ..support.oauth1_provider import OAuth1Provider
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from .flow_helpers import EventWatch, browser, open_socket, run_popup, watched_events
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

APP_ID = "314159"
RESERVED_OAUTH2 = [
    "redirect_uri",
    "response_type",
    "client_id",
    "state",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
]


@dataclass
class World:
    gw: Gateway
    oauth2: OAuthProvider
    oauth1: OAuth1Provider
    github: GitHubLikeProvider
    events: EventWatch


@pytest.fixture
async def events(amqp: Any, namespace: str) -> AsyncIterator[EventWatch]:
    async with watched_events(amqp, namespace, "security-oauth") as watch:
        yield watch


@pytest.fixture
async def world(
    provider: OAuthProvider, events: EventWatch, tmp_path: Path, start_gateway: StartGateway
) -> AsyncIterator[World]:
    oauth1, github = await OAuth1Provider().start(), await GitHubLikeProvider().start()
    app_pem, app_public = rsa_key_pem()
    github.apps["keyway-plain"] = GitHubApp(app_id=APP_ID, slug="keyway-plain", public_key=app_public)
    catalog = {
        "test-oauth2": provider.template(),
        "test-oauth1": oauth1.template(),
        "test-github-app": {"auth_mode": "APP", "token_url": github.installation_token_url()},
    }
    try:
        async with start_gateway(
            providers_file=providers_yaml(tmp_path, catalog),
            egress_allowlist="127.0.0.0/8",
            provider_timeout_seconds=2.0,
            public_key_connect="allowed",  # the attacks below need only the public key
        ) as gw:
            github.apps["keyway-plain"].setup_url = f"{gw.settings.public_url.rstrip('/')}/app-auth/connect"
            await create_integration(gw, "test-oauth2", "oauth", **provider.integration_fields)
            await create_integration(
                gw,
                "test-oauth1",
                "oauth1",
                oauth_client_id=oauth1.consumer_key,
                oauth_client_secret=oauth1.consumer_secret,
            )
            await create_integration(
                gw,
                "test-github-app",
                "ghapp",
                oauth_client_id=APP_ID,
                oauth_client_secret=base64.b64encode(app_pem.encode()).decode(),
                app_link=f"{github.base}/apps/keyway-plain",
            )
            yield World(gw=gw, oauth2=provider, oauth1=oauth1, github=github, events=events)
    finally:
        await oauth1.stop()
        await github.stop()


async def start_flow(person: aiohttp.ClientSession, gw: Gateway, key: str, query: str) -> str:
    """``/oauth/connect`` in ``person``'s browser, with the public key: where the gateway sends it."""
    url = f"{gw.url}/oauth/connect/{key}?{query}&public_key={gw.public_key}"
    async with person.get(url, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def consent(person: aiohttp.ClientSession, provider_url: str) -> str:
    """``person`` at the provider's page, consenting: the gateway URL the provider sends them back to."""
    async with person.get(provider_url, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def connection_count(gw: Gateway, connection_id: str, key: str) -> int:
    resp = await gw.client.get(f"/connection/{connection_id}?provider_config_key={key}", headers=gw.auth)
    resp.release()
    return 1 if resp.status == 200 else 0


def flow_cookie(jar: aiohttp.abc.AbstractCookieJar) -> tuple[str, str]:
    """The (name, value) of the one flow cookie in ``jar``."""
    (cookie,) = [c for c in jar if c.key.startswith("keyway-flow-")]
    return cookie.key, cookie.value


# --- consent phishing: the callback from another browser ----------------------------------------


async def test_a_victim_cannot_complete_an_attackers_oauth2_flow(world: World) -> None:
    gw, provider = world.gw, world.oauth2
    socket, ws_client_id = await open_socket(gw)  # the attacker's page, waiting for the result
    async with browser() as attacker, browser() as victim:
        consent_url = await start_flow(attacker, gw, "oauth", f"connection_id=mallory&ws_client_id={ws_client_id}")
        callback = await consent(victim, consent_url)  # the phishing link, opened and approved by the victim
        async with victim.get(callback, allow_redirects=False) as resp:
            assert resp.status == 403
            assert "browser that started it" in await resp.text()
    frame = json.loads((await socket.receive(timeout=10)).data)
    await socket.close()
    assert (frame["message_type"], frame["error_type"]) == ("error", "state_cookie_err")
    assert provider.token_requests == []  # the victim's code was never exchanged
    assert await connection_count(gw, "mallory", "oauth") == 0


async def test_a_victims_own_flow_cookie_or_a_planted_one_does_not_complete_the_attackers(world: World) -> None:
    gw, provider = world.gw, world.oauth2
    async with browser() as attacker, browser() as victim:
        attackers = await start_flow(attacker, gw, "oauth", "connection_id=mallory")
        victims = await start_flow(victim, gw, "oauth", "connection_id=victim")  # the victim's own flow, open
        planted_name, _ = flow_cookie(attacker.cookie_jar)
        victim.cookie_jar.update_cookies({planted_name: "a-guess"}, aiohttp.client.URL(gw.url))
        async with victim.get(await consent(victim, attackers), allow_redirects=False) as resp:
            assert resp.status == 403
        assert provider.token_requests == []
        # The victim's own flow, started in the same browser before, still ends well: one cookie per flow.
        async with victim.get(await consent(victim, victims), allow_redirects=False) as resp:
            assert resp.status == 200, await resp.text()
    assert len(provider.token_requests) == 1
    assert await connection_count(gw, "mallory", "oauth") == 0
    assert await connection_count(gw, "victim", "oauth") == 1


async def test_two_flows_in_one_browser_each_keep_their_cookie(world: World) -> None:
    gw = world.gw
    async with browser() as person:
        first = await start_flow(person, gw, "oauth", "connection_id=first")
        second = await start_flow(person, gw, "oauth", "connection_id=second")
        assert len([c for c in person.cookie_jar if c.key.startswith("keyway-flow-")]) == 2
        for started in (second, first):  # in the other order
            async with person.get(await consent(person, started), allow_redirects=False) as resp:
                assert resp.status == 200, await resp.text()
        assert [c for c in person.cookie_jar if c.key.startswith("keyway-flow-")] == []  # each cleared at its end
    assert await connection_count(gw, "first", "oauth") == await connection_count(gw, "second", "oauth") == 1


async def test_the_flow_cookie_is_httponly_lax_and_cleared_at_the_callback(world: World, db: Any) -> None:
    gw = world.gw
    async with browser() as person:
        url = f"{gw.url}/oauth/connect/oauth?connection_id=c-1&public_key={gw.public_key}"
        async with person.get(url, allow_redirects=False) as resp:
            (set_cookie,) = resp.headers.getall("Set-Cookie")
            consent_url = resp.headers["Location"]
        name, nonce = flow_cookie(person.cookie_jar)
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in set_cookie.split(";")[1:]}
        assert attributes["httponly"]
        assert attributes["path"] == "Path=/"
        assert attributes["samesite"] == "SameSite=Lax"  # sent on the provider's top-level redirect back
        assert attributes["max-age"] == "Max-Age=600"  # the flow's lifetime
        assert "secure" not in attributes  # an http gateway (https: see below)
        assert len(nonce) >= 43  # 256 bits
        stored = await db["oauth_sessions"].find({}).to_list()
        assert len(stored) == 1
        assert nonce not in json.dumps(stored, default=str)
        async with person.get(await consent(person, consent_url), allow_redirects=False) as resp:
            assert resp.status == 200
            cleared = [h for h in resp.headers.getall("Set-Cookie") if h.startswith(f"{name}=")]
            assert cleared
            assert "Max-Age=0" in cleared[0]


async def test_an_https_gateway_gives_a_secure_host_only_cookie(
    provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, {"test-oauth2": provider.template()}),
        public_url="https://gateway.example",
        public_key_connect="allowed",
    ) as gw:
        await create_integration(gw, "test-oauth2", "oauth", **provider.integration_fields)
        resp = await gw.client.get(
            f"/oauth/connect/oauth?connection_id=c-1&public_key={gw.public_key}", allow_redirects=False
        )
        assert resp.status == 302
        (set_cookie,) = resp.headers.getall("Set-Cookie")
        assert set_cookie.startswith("__Host-keyway-flow-")  # no sibling subdomain can plant it
        assert "; Secure" in set_cookie
        assert "HttpOnly" in set_cookie


async def test_a_victim_cannot_complete_an_attackers_oauth1_flow(world: World) -> None:
    gw, oauth1 = world.gw, world.oauth1
    async with browser() as attacker, browser() as victim:
        consent_url = await start_flow(attacker, gw, "oauth1", "connection_id=mallory")
        async with victim.get(await consent(victim, consent_url), allow_redirects=False) as resp:
            assert resp.status == 403
    assert [r for r in oauth1.requests if r["path"] == "/oauth/access_token"] == []
    assert await connection_count(gw, "mallory", "oauth1") == 0


async def test_a_victim_cannot_complete_an_attackers_github_app_installation(world: World) -> None:
    gw, github = world.gw, world.github
    async with browser() as attacker, browser() as victim:
        install_url = await start_flow(attacker, gw, "ghapp", "connection_id=mallory")
        async with victim.get(await consent(victim, install_url), allow_redirects=False) as resp:
            assert resp.status == 403
    assert github.token_requests == []  # no installation token minted for the attacker's connection
    assert await connection_count(gw, "mallory", "ghapp") == 0


# --- authorization params and client overrides ---------------------------------------------------


@pytest.mark.parametrize("value", ["https://attacker.example/cb", "undefined"])
async def test_a_browser_cannot_override_a_protocol_parameter(world: World, db: Any, value: str) -> None:
    gw, provider = world.gw, world.oauth2
    for name in RESERVED_OAUTH2:
        async with browser() as person:
            query = f"connection_id=c-1&authorization_params[{name}]={value}&authorization_params[login_hint]=a@b.c"
            sent = parse_qs(urlsplit(await start_flow(person, gw, "oauth", query)).query)
        ours = {
            "redirect_uri": [gw.settings.callback_url],
            "response_type": ["code"],
            "client_id": [provider.client_id],
            "code_challenge_method": ["S256"],
            "login_hint": ["a@b.c"],  # the rest stays the browser's to give
        }
        assert {k: sent.get(k) for k in ours} == ours, name
        assert await db["oauth_sessions"].count_documents({"_id": sent["state"][0]}) == 1, name  # our state
        assert len(sent["code_challenge"][0]) == 43, name  # an S256 challenge of our verifier
        assert not {"response_mode", "request", "request_uri"} & set(sent), name


async def test_a_browser_still_sets_ordinary_parameters(world: World) -> None:
    async with browser() as person:
        query = "connection_id=c-1&authorization_params[nonce]=n-1&authorization_params[prompt]=consent"
        sent = parse_qs(urlsplit(await start_flow(person, world.gw, "oauth", query)).query)
    assert (sent["nonce"], sent["prompt"]) == (["n-1"], ["consent"])


@pytest.mark.parametrize("name", ["oauth_callback", "oauth_token"])
async def test_a_browser_cannot_override_an_oauth1_protocol_parameter(world: World, name: str) -> None:
    async with browser() as person:
        query = f"connection_id=c-1&authorization_params[{name}]=https://attacker.example/cb"
        sent = parse_qs(urlsplit(await start_flow(person, world.gw, "oauth1", query)).query)
    assert "oauth_callback" not in sent
    assert sent["oauth_token"][0] in world.oauth1.request_tokens  # the request token the gateway obtained


async def mint_session(gw: Gateway, **body: Any) -> str:
    resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u-1"}, **body}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["data"]["token"]
    return token


@pytest.mark.parametrize("key", ["oauth", "oauth1"])
@pytest.mark.parametrize("credentials", ["id", "secret", "both"])
async def test_the_public_key_cannot_swap_the_oauth_client(world: World, key: str, credentials: str) -> None:
    gw = world.gw
    parts = {
        "id": "credentials[oauth_client_id_override]=override-attacker",
        "secret": "credentials[oauth_client_secret_override]=override-attacker",
    }
    overrides = "&".join(parts.values()) if credentials == "both" else parts[credentials]
    socket, ws_client_id = await open_socket(gw)
    resp = await gw.client.get(
        f"/oauth/connect/{key}?connection_id=c-1&public_key={gw.public_key}&ws_client_id={ws_client_id}&{overrides}",
        allow_redirects=False,
    )
    assert resp.status == 403, await resp.text()
    frame = json.loads((await socket.receive(timeout=10)).data)
    await socket.close()
    assert frame["error_type"] == "override_not_allowed"
    assert world.oauth2.authorize_requests == []
    assert world.oauth1.requests == []


async def test_a_connect_session_allows_only_the_overrides_it_names(world: World) -> None:
    gw = world.gw
    only_id = {"oauth": {"connection_config": {"oauth_client_id_override": ""}}}
    cases = [
        ({}, "credentials[oauth_client_id_override]=override-x", 403),  # a session that allows nothing
        ({"integrations_config_defaults": only_id}, "credentials[oauth_client_secret_override]=override-x", 403),
        ({"integrations_config_defaults": only_id}, "credentials[oauth_client_id_override]=override-x", 302),
    ]
    for body, overrides, status in cases:
        token = await mint_session(gw, **body)
        resp = await gw.client.get(
            f"/oauth/connect/oauth?connect_session_token={token}&{overrides}", allow_redirects=False
        )
        assert resp.status == status, (body, overrides, await resp.text())
        if status == 302:
            assert parse_qs(urlsplit(resp.headers["Location"]).query)["client_id"] == ["override-x"]
        resp.release()


async def test_a_connect_sessions_authorization_params_win_but_not_over_the_protocol(world: World) -> None:
    gw = world.gw
    fixed = {"prompt": "select_account", "redirect_uri": "https://attacker.example/cb"}
    token = await mint_session(gw, integrations_config_defaults={"oauth": {"authorization_params": fixed}})
    resp = await gw.client.get(
        f"/oauth/connect/oauth?connect_session_token={token}&authorization_params[prompt]=none",
        allow_redirects=False,
    )
    assert resp.status == 302, await resp.text()
    sent = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert sent["prompt"] == ["select_account"]
    assert sent["redirect_uri"] == [gw.settings.callback_url]


# --- a replayed callback -------------------------------------------------------------------------


@pytest.fixture
async def activity_log(world: World, service_settings: dict[str, Any]) -> AsyncIterator[None]:
    settings = ActivityLogSettings(**service_settings, batch_delay_ms=20)
    async with running(create_app(settings)):
        yield


async def operation(gw: Gateway, connection_id: str, state: str, messages: int = 0) -> dict[str, Any]:
    """The connect attempt for ``connection_id``, once it is in ``state`` with ``messages`` messages."""

    async def probe() -> dict[str, Any] | None:
        resp = await gw.client.get(f"/logs/operations?connection={connection_id}", headers=gw.auth)
        listed = (await resp.json())["data"]
        if not listed or listed[0]["state"] != state:
            return None
        resp = await gw.client.get(f"/logs/operations/{listed[0]['id']}", headers=gw.auth)
        one: dict[str, Any] = (await resp.json())["data"]
        return one if len(one["messages"]) >= messages else None

    return await eventually(probe, timeout=30, what=f"the attempt for {connection_id} to be {state}")


async def test_a_replayed_callback_is_answered_not_announced(world: World, activity_log: None) -> None:
    gw, events = world.gw, world.events
    result = await run_popup(gw, "oauth", "connection_id=once")
    assert result.frame["message_type"] == "success"
    assert result.callback is not None
    await events.wait_for("connection.created", "once")
    before = await operation(gw, "once", "success", messages=4)

    async with browser() as someone_else:
        for replay in (gw.client.get(result.callback), someone_else.get(f"{gw.url}{result.callback}")):
            async with replay as resp:
                assert resp.status == 400
                assert "already completed" in await resp.text()

    # A later failure, announced: once it is seen, anything the replays announced would have been too.
    socket, ws_client_id = await open_socket(gw)
    resp = await gw.client.get(
        f"/oauth/connect/nope?connection_id=marker&public_key={gw.public_key}&ws_client_id={ws_client_id}"
    )
    resp.release()
    await socket.close()
    await events.wait_for("auth.failed", "marker")
    await operation(gw, "marker", "failed")
    failed = [e["data"]["connection_id"] for e in events.seen if e["type"] == "auth.failed"]
    assert failed == ["marker"]
    after = await operation(gw, "once", "success")
    assert len(after["messages"]) == len(before["messages"])


# --- popup pages for client errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "error_type"),
    [
        ("/oauth/connect/oauth?connection_id=c-1", 401, "missing_public_key"),
        ("/oauth/connect/nope?connection_id=c-1&public_key={public_key}", 400, "provider_config_err"),
        ("/oauth/connect/oauth?public_key={public_key}", 400, "missing_connection_id"),
    ],
)
async def test_popup_client_errors_answer_4xx_and_still_reach_the_sdk(
    world: World, path: str, status: int, error_type: str
) -> None:
    gw = world.gw
    url = path.format(public_key=gw.public_key)
    legacy = await gw.client.get(url, allow_redirects=False)  # no ws_client_id: the postMessage page
    assert legacy.status == status
    html = await legacy.text()
    assert "AUTHORIZATION_FAILED" in html
    assert f'"type": "{error_type}"' in html
    socket, ws_client_id = await open_socket(gw)
    resp = await gw.client.get(f"{url}&ws_client_id={ws_client_id}", allow_redirects=False)
    assert resp.status == status
    frame = json.loads((await socket.receive(timeout=10)).data)
    await socket.close()
    assert (frame["message_type"], frame["error_type"]) == ("error", error_type)
