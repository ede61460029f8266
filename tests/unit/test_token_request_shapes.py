"""Token requests shaped as Nango's catalog asks: ``body_format: query``, ``token_request_auth_method``
``custom`` and ``private_key_jwt``, and ``token_params``/``refresh_params`` holding expressions.

A token endpoint on 127.0.0.1 records what it got; the templates are the pinned Nango catalog's.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from authlib.deprecate import AuthlibDeprecationWarning
from cryptography.hazmat.primitives.asymmetric import rsa

from keyway_shared.credentials import parse_credentials
from keyway_shared.credentials.client_credentials import client_credentials_token
from keyway_shared.credentials.errors import PermanentTokenError
from keyway_shared.credentials.oauth2_client import template_params
from keyway_shared.credentials.oauth2_grant import exchange_authorization_code, refresh_oauth2
from keyway_shared.credentials.shapes import OAuth2Credentials
from keyway_shared.credentials.token_hooks import CodeGrant
from keyway_shared.providers.catalog import check_entries
from keyway_shared.providers.template import ProviderTemplate
from keyway_shared.refresh.renew import renew
from keyway_shared.store import Connection
from keyway_shared.store.integrations import Integration

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebToken

PINNED = Path(__file__).parents[1] / "sdk/node_modules/nango-providers-07110/providers.yaml"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
Seen = list[dict[str, Any]]


@cache
def pinned() -> dict[str, ProviderTemplate]:
    raw = yaml.safe_load(PINNED.read_text(encoding="utf-8"))
    return check_entries(raw, dict.fromkeys(raw, "pinned")).templates


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, Seen]]:
    """(URL of a token endpoint that answers every POST with a token, what it got)."""
    seen: Seen = []

    async def token(request: web.Request) -> web.Response:
        seen.append(
            {
                "query": dict(request.query),
                "body": (await request.read()).decode(),
                "content_type": request.headers.get("Content-Type"),
                "authorization": request.headers.get("Authorization"),
            }
        )
        return web.json_response({"access_token": f"t{len(seen)}", "refresh_token": "r", "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/oauth2/token")), seen


async def cc(template: ProviderTemplate, url: str, **kwargs: Any) -> str:
    arguments: dict[str, Any] = {"client_id": "cid", "client_secret": "csecret", "scopes": []} | kwargs
    async with aiohttp.ClientSession() as http:
        credentials, _expires = await client_credentials_token(
            http, template=template, token_url=url, now=NOW, timeout_seconds=5, **arguments
        )
    return str(credentials.token)


async def test_body_format_query_sends_parameters_in_the_url(endpoint: tuple[str, Seen]) -> None:
    url, seen = endpoint
    for name in ("kno-commerce", "transporeon-oauth2-cc", "transporeon-carrier-oauth2-cc"):
        assert await cc(pinned()[name], url, scopes=["read", "write"]) == f"t{len(seen)}"
        got = seen[-1]
        assert got["query"] == {"grant_type": "client_credentials", "scope": "read write"}
        assert got["body"] == ""
        assert got["content_type"] is None  # Nango sets none for a query request
        # token_request_auth_method: basic: the client in a Basic header only.
        assert got["authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()


async def test_custom_client_authentication_is_a_user_name_and_password(endpoint: tuple[str, Seen]) -> None:
    url, seen = endpoint
    await cc(pinned()["zoominfo"], url)
    got = seen[-1]
    assert got["content_type"] == "application/json"
    assert json.loads(got["body"]) == {"username": "cid", "password": "csecret", "grant_type": "client_credentials"}
    assert got["authorization"] is None


def rsa_jwk() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = JsonWebKey.import_key(key, {"kty": "RSA", "kid": "key-1"}).as_dict(is_private=True)
    jwk["kid"] = "key-1"
    return json.dumps(jwk), key.public_key()


async def test_private_key_jwt_signs_an_assertion_for_the_token_url(endpoint: tuple[str, Seen]) -> None:
    url, seen = endpoint
    jwk, public = rsa_jwk()
    okta = pinned()["okta-cc"]
    async with aiohttp.ClientSession() as http:
        credentials, _ = await client_credentials_token(
            http,
            template=okta,
            token_url=url,
            client_id="0oa1",
            client_secret="",
            scopes=["okta.users.read"],
            now=datetime.now(UTC),
            timeout_seconds=5,
            client_private_key=jwk,
        )
    form = dict(pair.split("=", 1) for pair in seen[-1]["body"].split("&"))
    assert form["client_id"] == "0oa1"
    assert form["client_assertion_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    assert form["grant_type"] == "client_credentials"
    assert "client_secret" not in form
    assert seen[-1]["authorization"] is None
    claims = JsonWebToken(["RS256"]).decode(form["client_assertion"], public)
    claims.validate()
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("0oa1", "0oa1", url)
    assert claims["exp"] - claims["iat"] == 300
    assert claims.header["kid"] == "key-1"
    assert credentials.dump()["client_private_key"] == jwk  # kept: the refresher signs the next one


async def test_private_key_jwt_refusals_never_quote_the_key(endpoint: tuple[str, Seen]) -> None:
    url, seen = endpoint
    with pytest.raises(PermanentTokenError) as missing:
        await cc(pinned()["okta-cc"], url, client_secret="")
    assert missing.value.type == "missing_client_private_key"
    with pytest.raises(PermanentTokenError) as bad:
        await cc(pinned()["okta-cc"], url, client_private_key='{"kty": "RSA", "d": "SECRET-PART"}')
    assert bad.value.type == "invalid_client_private_key_format"
    assert "SECRET" not in str(bad.value)
    assert not seen  # nothing was sent


async def test_token_params_are_evaluated_from_the_connection_configuration(endpoint: tuple[str, Seen]) -> None:
    url, seen = endpoint
    await cc(pinned()["zoom-cc"], url, connection_config={"accountId": "acct-7"})
    assert dict(pair.split("=", 1) for pair in seen[-1]["body"].split("&"))["account_id"] == "acct-7"
    auth0 = pinned()["auth0-cc"]
    await cc(auth0, url, connection_config={"hostname": "t.auth0.com", "audience": "https://api.example.com/"})
    # organization is optional and absent: left out, not sent as "${connectionConfig.organization}".
    assert json.loads(seen[-1]["body"]) == {
        "client_id": "cid",
        "client_secret": "csecret",
        "grant_type": "client_credentials",
        "audience": "https://api.example.com/",
    }
    with pytest.raises(PermanentTokenError) as caught:
        await cc(auth0, url, connection_config={"hostname": "t.auth0.com"})
    assert caught.value.type == "missing_connection_config"
    assert "audience parameter needs connectionConfig.audience" in caught.value.description


def test_token_param_fallbacks_and_functions() -> None:
    pax8 = pinned()["pax8"]
    assert template_params(pax8, pax8.token_params, {})["audience"] == "https://api.pax8.com"
    assert (
        template_params(pax8, pax8.token_params, {"audience": "https://x.example"})["audience"] == "https://x.example"
    )
    quirky = ProviderTemplate.model_validate(
        {"auth_mode": "OAUTH2_CC", "token_params": {"k": "${base64(${connectionConfig.a}:${connectionConfig.b})}"}}
    )
    assert template_params(quirky, quirky.token_params, {"a": "x", "b": "y"}) == {
        "k": base64.b64encode(b"x:y").decode()
    }


async def test_exchange_and_refresh_fill_their_params(endpoint: tuple[str, Seen]) -> None:
    """Dataverse: ``resource`` is the environment's URL, at the exchange and at each refresh."""
    url, seen = endpoint
    dataverse = pinned()["microsoft-dataverse"]
    config = {"tenantId": "00000000-0000-0000-0000-000000000000", "environmentUrl": "contoso.crm.dynamics.com"}
    async with aiohttp.ClientSession() as http:
        credentials, _expires, _raw = await exchange_authorization_code(
            http,
            template=dataverse,
            token_url=url,
            grant=CodeGrant(code="the-code", redirect_uri="https://cb.example", code_verifier=None),
            client_id="cid",
            client_secret="csecret",
            connection_config=config,
            now=NOW,
            timeout_seconds=5,
        )
        exchanged = dict(pair.split("=", 1) for pair in seen[-1]["body"].split("&"))
        assert exchanged["resource"] == "https%3A%2F%2Fcontoso.crm.dynamics.com"
        assert exchanged["code"] == "the-code"
        await refresh_oauth2(
            http,
            template=dataverse,
            refresh_url=url,
            credentials=OAuth2Credentials(access_token="a", refresh_token="r"),
            client_id="cid",
            client_secret="csecret",
            connection_config=config,
            now=NOW,
            timeout_seconds=5,
        )
        refreshed = dict(pair.split("=", 1) for pair in seen[-1]["body"].split("&"))
        assert refreshed["resource"] == "https%3A%2F%2Fcontoso.crm.dynamics.com"
        assert refreshed["grant_type"] == "refresh_token"
        assert credentials.access_token == "t1"


def test_a_code_is_never_evaluated() -> None:
    """Only the template's own parameters are expressions; what a grant adds is sent as it is."""
    template = ProviderTemplate.model_validate({"auth_mode": "OAUTH2", "token_params": {"a": "plain"}})
    assert template_params(template, {"a": "plain"}, {}) == {"a": "plain"}


async def test_the_refresher_renews_a_private_key_jwt_connection(endpoint: tuple[str, Seen]) -> None:
    """The stored private JWK signs the next assertion; the token URL is the connection's own."""
    url, seen = endpoint
    jwk, public = rsa_jwk()
    okta = pinned()["okta-cc"].model_copy(update={"token_url": url})
    stored = parse_credentials(
        {"type": "OAUTH2_CC", "token": "old", "client_id": "0oa1", "client_secret": "", "client_private_key": jwk}
    )
    connection = Connection(
        environment="dev",
        provider_config_key="okta",
        connection_id="c",
        provider="okta-cc",
        auth_mode="OAUTH2_CC",
        credentials=stored,
        connection_config={"hostname": "dev-1.okta.com"},
    )
    integration = Integration(environment="dev", unique_key="okta", provider="okta-cc")
    async with aiohttp.ClientSession() as http:
        renewed, _expires = await renew(
            http, connection=connection, template=okta, integration=integration, now=datetime.now(UTC)
        )
    form = dict(pair.split("=", 1) for pair in seen[-1]["body"].split("&"))
    claims = JsonWebToken(["RS256"]).decode(form["client_assertion"], public)
    assert claims["aud"] == url
    assert renewed.dump()["token"] == "t1"
    assert renewed.dump()["client_private_key"] == jwk


@pytest.mark.parametrize(
    "stored",
    [
        {"type": "API_KEY", "apiKey": "k"},
        {"type": "BASIC", "username": "u", "password": "p"},
    ],
)
async def test_credentials_with_nothing_to_renew_are_refused_without_a_request(stored: dict[str, Any]) -> None:
    credentials = parse_credentials(stored)
    connection = Connection(
        environment="dev",
        provider_config_key="p",
        connection_id="c",
        provider="posthog",
        auth_mode=stored["type"],
        credentials=credentials,
    )
    template = ProviderTemplate.model_validate({"auth_mode": stored["type"]})
    integration = Integration(environment="dev", unique_key="p", provider="posthog")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(PermanentTokenError) as refused:
            await renew(http, connection=connection, template=template, integration=integration, now=datetime.now(UTC))
    assert refused.value.type == "not_refreshable"
    assert stored["type"] in refused.value.description
