"""The proxy tests' providers, connections and calls: templates pointing at a scripted upstream."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientResponse

from ..support.oauth_provider import OAuthProvider
from ..support.scripted_upstream import ScriptedUpstream
from .gateway_app import Gateway, create_integration

__all__ = ["CONNECTIONS", "call", "seed", "templates"]


def templates(up: ScriptedUpstream, oauth: OAuthProvider) -> dict[str, Any]:
    api_key = {"auth_mode": "API_KEY"}
    return {
        "px-oauth2": {
            "auth_mode": "OAUTH2",
            "authorization_url": f"{up.base}/authorize",
            "token_url": f"{up.base}/token",
            "proxy": {"base_url": up.base},
        },
        "px-key-headers": {**api_key, "proxy": {"base_url": up.base, "headers": {"X-Api-Key": "${apiKey}"}}},
        "px-key-query": {**api_key, "proxy": {"base_url": up.base + "/", "query": {"api_key": "${apiKey}"}}},
        "px-basic": {"auth_mode": "BASIC", "proxy": {"base_url": up.base}},
        "px-tenant": {
            **api_key,
            "proxy": {
                "base_url": up.base + "/t/${connectionConfig.tenant}",
                "headers": {"Authorization": "Bearer ${apiKey}", "X-Tenant": "${connectionConfig.tenant}"},
            },
        },
        "px-wait-after": {**api_key, "proxy": {"base_url": up.base, "retry": {"after": "x-wait-seconds"}}},
        "px-wait-at": {**api_key, "proxy": {"base_url": up.base, "retry": {"at": "x-reset-at"}}},
        "px-decompress": {**api_key, "proxy": {"base_url": up.base, "decompress": True}},
        "px-nobase": api_key,
        "test-oauth2": oauth.template(),
    }


# (integration key, provider, connection id, import body)
CONNECTIONS = [
    ("oauth2", "px-oauth2", "c-oauth", {"access_token": "tok-oauth", "no_expiration": True}),
    ("keyh", "px-key-headers", "c-keyh", {"api_key": "key-headers"}),
    ("keyq", "px-key-query", "c-keyq", {"api_key": "sk-query-9f3a"}),
    ("basic", "px-basic", "c-basic", {"username": "user", "password": "pa:ss"}),
    ("tenant", "px-tenant", "c-tenant", {"api_key": "key-tenant", "connection_config": {"tenant": "acme"}}),
    ("tenant", "px-tenant", "c-no-tenant", {"api_key": "key-tenant"}),
    ("after", "px-wait-after", "c-after", {"api_key": "k"}),
    ("at", "px-wait-at", "c-at", {"api_key": "k"}),
    ("gz", "px-decompress", "c-gz", {"api_key": "k"}),
    ("nobase", "px-nobase", "c-nobase", {"api_key": "k"}),
]


async def seed(gw: Gateway, oauth: OAuthProvider) -> None:
    integrations = {key: provider for key, provider, _id, _body in CONNECTIONS}
    await asyncio.gather(
        *(
            create_integration(gw, provider, key, oauth_client_id="id", oauth_client_secret="secret")
            for key, provider in integrations.items()
        ),
        create_integration(gw, "test-oauth2", "oauth", **oauth.integration_fields),
    )

    async def imported(key: str, connection_id: str, body: dict[str, Any]) -> None:
        resp = await gw.client.post(
            "/connection", json={"connection_id": connection_id, "provider_config_key": key, **body}, headers=gw.auth
        )
        assert resp.status == 201, await resp.text()

    # The first alone: concurrent first writes race on the connection-id counter (reported, not ours).
    first, *rest = [(key, connection_id, body) for key, _p, connection_id, body in CONNECTIONS]
    await imported(*first)
    await asyncio.gather(*(imported(*each) for each in rest))


async def call(
    gw: Gateway, method: str, path: str, connection: str, key: str, *, headers: dict[str, str] | None = None, **kw: Any
) -> ClientResponse:
    sent = {**gw.auth, "Connection-Id": connection, "Provider-Config-Key": key, **(headers or {})}
    return await gw.client.request(method, "/proxy" + path, headers=sent, **kw)
