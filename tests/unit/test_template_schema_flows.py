"""What Nango's current template fields do in a flow (issue 18): the authorization URL's flags
(``authorization_url_skip_encode``, ``_skip_empty``, ``_fragment``) and a verification's
``endpoints``, tried in order against a fake provider on 127.0.0.1 as Nango's credentialsTest does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from auth_gateway.connect.protocol.oauth2 import authorization_url
from auth_gateway.connect.verification import verify_credentials
from auth_gateway.http.errors import ApiError
from auth_gateway.operations.flow_errors import FlowError
from keyway_shared.credentials.shapes import ApiKeyCredentials, BasicCredentials
from keyway_shared.providers import ProviderTemplate


def _authorize(template: dict[str, Any], *, scopes: list[str], request_params: dict[str, str] | None = None) -> str:
    return authorization_url(
        template=ProviderTemplate.model_validate({"auth_mode": "OAUTH2", **template}),
        provider="acme",
        client_id="cid",
        redirect_uri="https://keyway.example/oauth/callback",
        scopes=scopes,
        state="st",
        code_verifier=None,
        connection_config={},
        request_params=request_params or {},
        user_scope=None,
    )


def test_scopes_named_in_skip_encode_go_as_written() -> None:
    attio = {"authorization_url": "https://app.attio.com/authorize", "scope_separator": "+"}
    encoded = _authorize(attio, scopes=["record:read", "user:read"])
    assert "scope=record%3Aread%2Buser%3Aread" in encoded
    raw = _authorize({**attio, "authorization_url_skip_encode": ["scopes"]}, scopes=["record:read", "user:read"])
    assert "&scope=record:read+user:read&" in raw
    assert "redirect_uri=https%3A%2F%2Fkeyway.example%2Foauth%2Fcallback" in raw  # the others still encoded


def test_a_skip_encoded_value_cannot_add_parameters_or_a_fragment() -> None:
    url = _authorize(
        {"authorization_url": "https://x.example/authorize", "authorization_url_skip_encode": ["scopes"]},
        scopes=["a&client_id=evil#frag", "b c"],
    )
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["client_id"] == "cid"
    assert query["scope"] == "a&client_id=evil#frag b c"
    assert urlsplit(url).fragment == ""


def test_skip_empty_drops_empty_parameters() -> None:
    pipedrive = {"authorization_url": "https://oauth.pipedrive.com/oauth/authorize", "disable_pkce": True}
    assert "scope=&" in _authorize(pipedrive, scopes=[])
    url = _authorize(
        {**pipedrive, "authorization_url_skip_empty": True}, scopes=[], request_params={"prompt": "", "x": "1"}
    )
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert "scope" not in query
    assert "prompt" not in query
    assert query["x"] == "1"


def test_a_fragment_puts_the_query_after_it() -> None:
    url = _authorize(
        {"authorization_url": "https://app.apollo.io", "authorization_url_fragment": "oauth/authorize"},
        scopes=["read"],
    )
    assert url.startswith("https://app.apollo.io/#oauth/authorize?response_type=code&client_id=cid&")
    assert "state=st" in url


@dataclass
class FakeProvider:
    """Answers each path with the status given for it (404 otherwise) and notes every request."""

    statuses: dict[str, int]
    seen: list[dict[str, Any]] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": json.loads(body) if body else None,
            }
        )
        return web.json_response({}, status=self.statuses.get(request.path, 404))


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider(statuses={})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    fake.server = TestServer(app, host="127.0.0.1")
    await fake.server.start_server()
    yield fake
    await fake.server.close()


async def _verify(
    provider: FakeProvider, verification: dict[str, Any], credentials: Any, config: dict[str, Any] | None = None
) -> None:
    template = ProviderTemplate.model_validate(
        {
            "auth_mode": "API_KEY",
            "proxy": {
                "base_url": provider.base + "/api",
                "headers": {"x-api-key": "${apiKey}"} if isinstance(credentials, ApiKeyCredentials) else {},
                "verification": verification,
            },
        }
    )
    async with aiohttp.ClientSession() as session:
        await verify_credentials(session, template, credentials, config or {}, timeout_seconds=5)


async def test_endpoints_are_tried_in_order_until_one_answers_2xx(provider: FakeProvider) -> None:
    provider.statuses = {"/api/v1/sessions": 403, "/api/v3/self": 200, "/api/never": 200}
    devin = {"method": "GET", "endpoints": ["/v1/sessions", "/v3/self", "/never"]}
    await _verify(provider, devin, ApiKeyCredentials(api_key="k-1"))
    assert [seen["path"] for seen in provider.seen] == ["/api/v1/sessions", "/api/v3/self"]
    assert provider.seen[1]["headers"]["x-api-key"] == "k-1"


async def test_credentials_are_refused_when_no_endpoint_passes(provider: FakeProvider) -> None:
    provider.statuses = {"/api/a": 401, "/api/b": 403}
    with pytest.raises(ApiError) as refused:
        await _verify(provider, {"endpoints": ["/a", "/b"]}, ApiKeyCredentials(api_key="k-1"))
    assert refused.value.code == "connection_test_failed"
    assert refused.value.message == "The provider refused these credentials (HTTP 403)."
    assert [seen["path"] for seen in provider.seen] == ["/api/a", "/api/b"]


async def test_an_unreachable_endpoint_hands_over_to_the_next(provider: FakeProvider) -> None:
    provider.statuses = {"/api/ok": 200}
    verification = {"base_url_override": "http://127.0.0.1:1", "endpoints": ["/down"]}
    with pytest.raises(ApiError, match="could not be reached"):
        await _verify(provider, verification, ApiKeyCredentials(api_key="k-1"))
    await _verify(provider, {"endpoints": ["/ok"]}, ApiKeyCredentials(api_key="k-1"))


async def test_data_is_the_json_body_and_endpoints_take_placeholders(provider: FakeProvider) -> None:
    provider.statuses = {"/api/v1/users": 200, "/api/search": 200}
    jazzhr = {"method": "GET", "endpoints": ["/v1/users?apikey=${credentials.apiKey}"]}
    await _verify(provider, jazzhr, ApiKeyCredentials(api_key="k 1&x"))
    assert provider.seen[-1]["query"] == {"apikey": "k 1&x"}
    swarm = {"method": "POST", "endpoints": ["/search"], "data": {"query": {"match_all": {}}, "limit": 1}}
    await _verify(provider, swarm, ApiKeyCredentials(api_key="k-1"))
    assert provider.seen[-1]["method"] == "POST"
    assert provider.seen[-1]["body"] == {"query": {"match_all": {}}, "limit": 1}


async def test_an_endpoint_placeholder_is_checked_as_any_url_value(provider: FakeProvider) -> None:
    provider.statuses = {"/api/2010-04-01/Accounts/AC1/Messages.json": 200}
    twilio = {"endpoints": ["/2010-04-01/Accounts/${credentials.username}/Messages.json"]}
    await _verify(provider, twilio, BasicCredentials(username="AC1", password="p"))
    assert provider.seen[-1]["headers"]["Authorization"].startswith("Basic ")
    with pytest.raises(ApiError) as refused:
        await _verify(provider, twilio, BasicCredentials(username="../../admin", password="p"))
    assert refused.value.code == "invalid_connection_config"
    assert refused.value.message is not None
    assert "the user name" in refused.value.message
    board = {"endpoints": ["/v1/boards/${connectionConfig.boardToken}"]}
    with pytest.raises(ApiError) as missing:
        await _verify(provider, board, ApiKeyCredentials(api_key="k-1"))
    assert missing.value.message == "The provider's verification call needs params[boardToken]."


def _authorize_with(template: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    url = authorization_url(
        template=ProviderTemplate.model_validate({"auth_mode": "OAUTH2", **template}),
        provider="acme",
        client_id="cid",
        redirect_uri="https://keyway.example/oauth/callback",
        scopes=[],
        state="st",
        code_verifier=None,
        connection_config=config,
        request_params={"browser": "${connectionConfig.storeHash}"},
        user_scope=None,
    )
    return dict(parse_qsl(urlsplit(url).query))


def test_authorization_params_are_filled_from_the_connection_config() -> None:
    bigcommerce = {
        "authorization_url": "https://login.bigcommerce.com/oauth2/authorize",
        "authorization_params": {"context": "stores/${connectionConfig.storeHash}", "nonce": "${random}"},
        "connection_config": {"storeHash": {"type": "string", "pattern": "^[a-z0-9]+$"}},
    }
    query = _authorize_with(bigcommerce, {"storeHash": "abc123"})
    assert query["context"] == "stores/abc123"
    assert len(query["nonce"]) == 36  # a fresh UUID
    assert query["browser"] == "${connectionConfig.storeHash}"  # a browser's value is never filled
    with pytest.raises(FlowError) as missing:
        _authorize_with(bigcommerce, {})
    assert missing.value.message == "The authorization parameters need params[storeHash]."
    with pytest.raises(FlowError, match="pattern"):
        _authorize_with(bigcommerce, {"storeHash": "a&b"})
    pax8 = {"authorization_url": "https://x.example/a", "authorization_params": {"aud": "${connectionConfig.aud} || d"}}
    assert _authorize_with(pax8, {})["aud"] == "d"


def test_credential_placeholders_are_not_fields_a_person_fills() -> None:
    vincere = ProviderTemplate.model_validate(
        {
            "auth_mode": "OAUTH2",
            "proxy": {
                "base_url": "https://${connectionConfig.subdomain}.vincere.io/api",
                "headers": {"id-token": "${credentials.raw.id_token} || ${connectionConfig.id_token}"},
            },
        }
    )
    assert vincere.connection_config_variables() == {"subdomain", "id_token"}
