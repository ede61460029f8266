"""Provider-specific token handling: the template fields every grant honours, and the hooks' own
rules, without a gateway (a token endpoint on 127.0.0.1 where one is needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keyway_shared.credentials import PermanentTokenError, TransientTokenError
from keyway_shared.credentials.oauth2_client import token_headers
from keyway_shared.credentials.oauth2_grant import exchange_authorization_code, refresh_oauth2, stored_config
from keyway_shared.credentials.shapes import OAuth2Credentials
from keyway_shared.credentials.token_hooks import HOOKS, STANDARD, CodeGrant, TokenCall, hook_for
from keyway_shared.credentials.token_hooks.salesforce import Salesforce
from keyway_shared.credentials.token_hooks.tiktok_ads import unwrap
from keyway_shared.credentials.tokens import read_token_response
from keyway_shared.providers import ProviderTemplate, load_catalog

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def template(**fields: Any) -> ProviderTemplate:
    return ProviderTemplate.model_validate({"auth_mode": "OAUTH2", "token_url": "https://p.example/token", **fields})


def test_every_hook_the_catalog_names_exists_and_every_hook_is_named() -> None:
    catalog = load_catalog()
    named = {t.token_hook for name in catalog.names() if (t := catalog.get(name)) is not None and t.token_hook}
    assert named == set(HOOKS)
    assert hook_for(template()) is STANDARD
    with pytest.raises(PermanentTokenError) as caught:
        hook_for(template(token_hook="nope"))
    assert caught.value.type == "unknown_token_hook"


def test_catalog_entries_say_what_their_providers_need() -> None:
    catalog = load_catalog()
    zendesk, shopify = catalog.get("zendesk"), catalog.get("shopify")
    assert zendesk is not None
    assert shopify is not None
    assert zendesk.token_params["expires_in"] == zendesk.refresh_params["expires_in"] == "1800"
    assert shopify.token_params == {"expiring": "1"}
    for name in ("salesforce", "salesforce-sandbox", "salesforce-experience-cloud"):
        entry = catalog.get(name)
        assert entry is not None
        assert entry.token_hook == "salesforce"
        assert entry.token_expires_in_ms == 3_600_000
    slack = catalog.get("slack")
    assert slack is not None
    assert slack.alternate_access_token_response_path == "authed_user"
    for name in ("instagram", "threads"):
        entry = catalog.get(name)
        assert entry is not None
        assert entry.refresh_url
        assert entry.refresh_url.endswith("/refresh_access_token")


def test_alternate_path_holds_the_token_when_the_top_level_has_none() -> None:
    user = {"id": "U1", "access_token": "xoxp-1", "refresh_token": "r-user", "expires_in": 600}
    reading = read_token_response({"ok": True, "authed_user": user}, now=NOW, alternate_path="authed_user")
    assert (reading.access_token, reading.refresh_token) == ("xoxp-1", "r-user")
    assert reading.expires_at == NOW + timedelta(seconds=600)
    # A path that holds the token itself.
    flat = read_token_response({"data": {"token": "t-1"}}, now=NOW, alternate_path="data.token")
    assert flat.access_token == "t-1"
    # The top-level token wins, and expires with the first of the two.
    both = {"access_token": "xoxb-1", "refresh_token": "r-bot", "expires_in": 900, "authed_user": user}
    reading = read_token_response(both, now=NOW, alternate_path="authed_user")
    assert (reading.access_token, reading.refresh_token) == ("xoxb-1", "r-bot")
    assert reading.expires_at == NOW + timedelta(seconds=600)
    # Without the field, the alternate place is not looked at.
    assert read_token_response({"authed_user": user}, now=NOW).access_token is None


def test_expires_in_in_milliseconds() -> None:
    reading = read_token_response({"access_token": "t", "expires_in": 90_000}, now=NOW, expires_in_ms=True)
    assert reading.expires_at == NOW + timedelta(seconds=90)


def test_token_headers_are_filled_and_never_change_the_body_encoding() -> None:
    quirky = template(token_headers={"X-Tenant": "${connectionConfig.tenant}", "content-type": "application/json"})
    assert token_headers(quirky, {"tenant": "acme"}) == {"X-Tenant": "acme"}
    with pytest.raises(PermanentTokenError) as caught:
        token_headers(quirky, {})
    assert caught.value.type == "missing_connection_config"
    with pytest.raises(PermanentTokenError):
        token_headers(quirky, {"tenant": "acme\r\nX-Evil: 1"})


def test_stored_config_takes_token_response_fields_from_the_provider_only() -> None:
    salesforce = template(token_response_metadata=["instance_url"])
    config = stored_config(
        salesforce,
        {"instance_url": "https://attacker.example", "x": 1},
        {"instance_url": "https://a.my.salesforce.com"},
    )
    assert config == {"x": 1, "instance_url": "https://a.my.salesforce.com"}
    assert stored_config(salesforce, {"instance_url": "https://attacker.example"}, {}) == {}


def test_tiktok_envelope() -> None:
    ok = {"code": 0, "message": "OK", "request_id": "r1", "data": {"access_token": "t", "advertiser_ids": ["1"]}}
    assert unwrap(ok) == {"access_token": "t", "advertiser_ids": ["1"], "request_id": "r1"}
    with pytest.raises(PermanentTokenError) as refused:
        unwrap({"code": 40001, "message": "Invalid secret", "data": {}})
    assert refused.value.description == "40001: Invalid secret"
    assert refused.value.provider_error == "40001"
    for busy in (40100, 50002):
        with pytest.raises(TransientTokenError):
            unwrap({"code": busy, "message": "try later", "data": {}})
    for nonsense in ({"data": {"access_token": "t"}}, {"code": 0, "data": {}}):
        with pytest.raises(PermanentTokenError):
            unwrap(nonsense)


async def test_salesforce_never_sends_the_secret_to_an_origin_that_is_not_a_provider_https_one() -> None:
    salesforce = template(token_response_metadata=["instance_url"])
    credentials = OAuth2Credentials(access_token="00D-token")
    async with aiohttp.ClientSession() as http:
        for config in ({"instance_url": "http://127.0.0.1:9"}, {"instance_url": "https://a.example:8443"}, {}):
            call = TokenCall(
                http=http,
                template=salesforce,
                url="https://login.salesforce.com/services/oauth2/token",
                client_id="id",
                client_secret="secret",
                connection_config=config,
                now=NOW,
                timeout_seconds=1,
            )
            assert await Salesforce().expiry(call, credentials) is None  # refused before any request


# -- one token endpoint on 127.0.0.1 for the fields every grant honours --------------------------


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """(URL, the requests it got, the answers it gives in order)."""
    seen: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []

    async def token(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), **dict(await request.post())})
        return web.json_response(answers.pop(0))

    app = web.Application()
    app.router.add_post("/token", token)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/token")), seen, answers


async def test_fixed_lifetime_headers_and_units_in_exchange_and_refresh(
    endpoint: tuple[str, list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    url, seen, answers = endpoint
    fixed = template(token_expires_in_ms=600_000, token_headers={"X-Account": "${connectionConfig.account}"})
    answers.append({"access_token": "a1", "refresh_token": "r1"})
    async with aiohttp.ClientSession() as http:
        credentials, expires_at, raw = await exchange_authorization_code(
            http,
            template=fixed,
            token_url=url,
            grant=CodeGrant(code="c", redirect_uri="https://cb.example", code_verifier=None),
            client_id="id",
            client_secret="secret",
            connection_config={"account": "acc-9"},
            now=NOW,
            timeout_seconds=5,
        )
        assert expires_at == NOW + timedelta(minutes=10)  # the template's fixed lifetime
        assert credentials.expires_at == credentials.raw["expires_at"] == "2026-01-01T00:10:00.000Z"
        assert raw == {"access_token": "a1", "refresh_token": "r1"}
        assert seen[-1]["headers"]["X-Account"] == "acc-9"
        assert seen[-1]["grant_type"] == "authorization_code"

        in_ms = fixed.model_copy(update={"expires_in_unit": "milliseconds"})
        answers.append({"access_token": "a2", "expires_in": 30_000})
        renewed, expires_at = await refresh_oauth2(
            http,
            template=in_ms,
            refresh_url=url,
            credentials=credentials,
            client_id="id",
            client_secret="secret",
            connection_config={"account": "acc-9"},
            now=NOW,
            timeout_seconds=5,
        )
        assert expires_at == NOW + timedelta(seconds=30)  # the answer's, in milliseconds
        assert renewed.refresh_token == "r1"  # kept: none was sent
        assert seen[-1]["refresh_token"] == "r1"
        assert seen[-1]["headers"]["X-Account"] == "acc-9"

        never = template(token_expires_in_ms=0)
        answers.append({"access_token": "a3"})
        _credentials, expires_at = await refresh_oauth2(
            http,
            template=never,
            refresh_url=url,
            credentials=renewed,
            client_id="id",
            client_secret="secret",
            connection_config={},
            now=NOW,
            timeout_seconds=5,
        )
        assert expires_at is None  # 0: a token that does not expire
