"""The TWO_STEP exchange with the pinned Nango catalog's own templates, their token URL pointed at a
token endpoint on 127.0.0.1 that records what it got and answers what the provider answers: signed
JWT grants and client assertions checked with the public key, XML bodies, bare tokens, cookies,
expiry shapes, and the refusals.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from authlib.deprecate import AuthlibDeprecationWarning
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyway_shared.credentials.errors import PermanentTokenError
from keyway_shared.credentials.shapes import TwoStepCredentials
from keyway_shared.credentials.two_step import TwoStepToken, mint_two_step_token
from keyway_shared.providers.catalog import check_entries
from keyway_shared.providers.template import ProviderTemplate

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    from authlib.jose import JsonWebToken

PINNED = Path(__file__).parents[1] / "sdk/node_modules/nango-providers-07110/providers.yaml"


@cache
def pinned() -> dict[str, ProviderTemplate]:
    raw = yaml.safe_load(PINNED.read_text(encoding="utf-8"))
    return check_entries(raw, dict.fromkeys(raw, "pinned")).templates


@dataclass
class Endpoint:
    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    answer: Any = field(default_factory=lambda: {"access_token": "t1", "expires_in": 3600})
    content_type: str = "application/json"
    status: int = 200
    cookies: list[str] = field(default_factory=list)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.seen[-1]["body"]))


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    state = Endpoint()

    async def token(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        state.seen.append(
            {"method": request.method, "query": dict(request.query), "body": body, "headers": request.headers}
        )
        text = state.answer if isinstance(state.answer, str) else json.dumps(state.answer)
        response = web.Response(text=text, status=state.status, content_type=state.content_type)
        for cookie in state.cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    app = web.Application()
    app.router.add_route("*", "/token", token)
    async with TestServer(app, host="127.0.0.1") as server:
        state.url = str(server.make_url("/token"))
        yield state


def _at(name: str, url: str, **update: Any) -> ProviderTemplate:
    return pinned()[name].model_copy(update={"token_url": url, **update})


async def _mint(template: ProviderTemplate, fields: dict[str, Any], **kwargs: Any) -> TwoStepToken:
    arguments: dict[str, Any] = {"connection_config": {}, "now": datetime.now(UTC)} | kwargs
    async with aiohttp.ClientSession() as http:
        return await mint_two_step_token(http, template=template, fields=fields, timeout_seconds=5, **arguments)


def _rsa() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


def _ec() -> tuple[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


async def test_a_signed_jwt_grant_is_checked_with_the_public_key(endpoint: Endpoint) -> None:
    pem, public = _rsa()
    fields = {"serviceAccountEmailAddress": "sa@p.iam", "scopes": "https://x/auth", "privateKey": pem}
    minted = await _mint(_at("google-service-account", endpoint.url), fields)
    form = endpoint.form()
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = JsonWebToken(["RS256"]).decode(form["assertion"], public)
    claims.validate()
    assert (claims["iss"], claims["scope"], claims["aud"]) == (
        "sa@p.iam",
        "https://x/auth",
        "https://oauth2.googleapis.com/token",
    )
    assert "sub" not in claims  # the optional delegated address was not given: the claim is left out
    assert claims["exp"] - claims["iat"] == 3600
    assert minted.credentials.token == "t1"
    assert "token" not in minted.credentials.person_fields()  # the JWT is the request's, not stored


async def test_a_client_assertion_is_kept_and_used_again_while_it_lasts(endpoint: Endpoint) -> None:
    pem, public = _rsa()
    template = _at("microsoft-oauth2-cc-cert", endpoint.url)
    fields = {"clientId": "app-1", "privateKey": pem, "certificateThumbprint": "thumb"}
    config = {"tenantId": "t-1", "oauth_scopes": "https://graph.microsoft.com/.default"}
    minted = await _mint(template, fields, connection_config=config)
    form = endpoint.form()
    assert (form["client_id"], form["scope"]) == ("app-1", config["oauth_scopes"])
    claims = JsonWebToken(["PS256"]).decode(form["client_assertion"], public)
    assert claims.header["x5t#S256"] == "thumb"
    assert (claims["iss"], claims["sub"]) == ("app-1", "app-1")
    assert claims["aud"] == "https://login.microsoftonline.com/t-1/oauth2/v2.0/token"
    kept = minted.credentials.person_fields()
    assert kept["assertion"] == form["client_assertion"]

    again = await _mint(template, kept, connection_config=config, stored=True)
    assert endpoint.form()["client_assertion"] == kept["assertion"]
    assert again.credentials.person_fields()["assertion"] == kept["assertion"]


async def test_an_assertion_key_given_only_at_connect_time_is_never_stored(endpoint: Endpoint) -> None:
    pem, public = _rsa()
    template = _at("netsuite-client-credentials", endpoint.url)
    fields = {"clientId": "c-1", "certificateId": "cert-1"}
    now = datetime.now(UTC)
    minted = await _mint(
        template, fields, connection_config={"accountId": "123"}, assertion_option={"privateKey": pem}, now=now
    )
    claims = JsonWebToken(["RS256"]).decode(endpoint.form()["client_assertion"], public)
    assert (claims.header["kid"], claims["iss"]) == ("cert-1", "c-1")
    document = json.dumps(minted.credentials.dump())
    assert "PRIVATE KEY" not in document
    # An hour later the assertion has expired and nothing can sign another: connect again.
    with pytest.raises(PermanentTokenError) as refused:
        await _mint(
            template,
            minted.credentials.person_fields(),
            now=now + timedelta(hours=2),
            connection_config={"accountId": "123"},
        )
    assert refused.value.type == "two_step_assertion_expired"


async def test_an_es256_assertion_and_a_key_of_the_wrong_kind(endpoint: Endpoint) -> None:
    pem, public = _ec()
    template = _at("apple-business-manager", endpoint.url)
    await _mint(template, {"clientId": "BUSINESSAPI.1", "keyId": "k1"}, assertion_option={"privateKey": pem})
    claims = JsonWebToken(["ES256"]).decode(endpoint.form()["client_assertion"], public)
    assert (claims.header["kid"], claims["sub"]) == ("k1", "BUSINESSAPI.1")
    rsa_pem, _ = _rsa()
    with pytest.raises(PermanentTokenError) as refused:
        await _mint(template, {"clientId": "x", "keyId": "k"}, assertion_option={"privateKey": rsa_pem})
    assert refused.value.type == "invalid_private_key"
    with pytest.raises(PermanentTokenError) as refused:
        await _mint(template, {"clientId": "x", "keyId": "k"}, assertion_option={"privateKey": "not a key"})
    assert refused.value.type == "invalid_private_key"
    assert "not a key" not in refused.value.description


async def test_saml_assertions_are_refused_before_anything_is_sent(endpoint: Endpoint) -> None:
    with pytest.raises(PermanentTokenError) as refused:
        await _mint(
            _at("sap-success-factors", endpoint.url),
            {"apiKey": "k"},
            connection_config={"apiServer": "a", "companyId": "c"},
        )
    assert refused.value.type == "two_step_unsupported"
    assert endpoint.seen == []


async def test_an_xml_body_and_answer(endpoint: Endpoint) -> None:
    endpoint.content_type = "application/xml"
    endpoint.answer = (
        '<?xml version="1.0"?><response><operation><authentication><sessiontimeout>2030-01-01T00:00:00Z'
        "</sessiontimeout></authentication><result><data><api><sessionid>sess-1</sessionid></api></data></result>"
        "</operation></response>"
    )
    fields = {"senderId": "s", "senderPassword": "sp", "userId": "u", "companyId": "c", "userPassword": "p&<"}
    minted = await _mint(_at("sage-intacct", endpoint.url), fields)
    body = endpoint.seen[-1]["body"]
    assert body.startswith("<request><control><senderid>s</senderid>")
    assert "<password>p&amp;&lt;</password>" in body
    assert '<function controlid="{{$guid}}"><getAPISession></getAPISession></function>' in body
    assert "<uniqueid>false</uniqueid>" in body
    assert minted.credentials.token == "sess-1"
    assert minted.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


async def test_a_bare_token_by_get_and_a_fixed_lifetime(endpoint: Endpoint) -> None:
    endpoint.content_type, endpoint.answer = "text/plain", "bare-token-1"
    now = datetime.now(UTC)
    minted = await _mint(
        _at("avanan", endpoint.url), {"appId": "a", "secretKey": "s"}, connection_config={"subdomain": "x"}, now=now
    )
    seen = endpoint.seen[-1]
    assert (seen["method"], seen["body"]) == ("GET", "")
    assert seen["headers"]["x-av-app-id"] == "a"
    assert len(seen["headers"]["x-av-sig"]) == 64
    assert (minted.credentials.token, minted.credentials.raw) == ("bare-token-1", "bare-token-1")
    assert minted.expires_at == now + timedelta(hours=1)


async def test_session_cookies_are_kept_and_the_cookie_header_carries_them(endpoint: Endpoint) -> None:
    endpoint.answer = {"SessionId": "s-1"}
    endpoint.cookies = ["B1SESSION=s-1; path=/b1s; HttpOnly", "ROUTEID=.node1; path=/"]
    template = _at("sap-business-one", endpoint.url)
    config = {"domain": "b1.example.com", "companyDb": "DB", "dbInstance": "i"}
    minted = await _mint(template, {"userName": "u", "password": "p"}, connection_config=config)
    assert minted.credentials.person_fields()["_cookies"] == "B1SESSION=s-1; ROUTEID=.node1"
    assert json.loads(endpoint.seen[-1]["body"]) == {
        "CompanyDB": "DB",
        "UserName": "u",
        "DBInstance": "i",
        "Password": "p",
    }
    assert template.proxy is not None
    assert minted.credentials.proxy_authorization(template.proxy.headers) is None  # the cookie authenticates


@pytest.mark.parametrize(
    ("name", "answer", "expected"),
    [
        (
            "tableau",
            {"credentials": {"token": "x", "estimatedTimeToExpiration": "2:03:04"}},
            timedelta(days=2, hours=3, minutes=4),
        ),
        ("jamf-basic", {"token": "x", "expires": "2030-01-01T00:00:00.000Z"}, datetime(2030, 1, 1, tzinfo=UTC)),
        (
            "perimeter81",
            {"data": {"accessToken": "x", "accessTokenExpire": 1893456000000}},
            datetime(2030, 1, 1, tzinfo=UTC),
        ),
        ("leapsome", {"token": "x", "expiresIn": "2h"}, timedelta(hours=2)),
        ("agencyzoom", {"jwt": "x"}, None),
    ],
)
async def test_expiry_shapes(endpoint: Endpoint, name: str, answer: dict[str, Any], expected: Any) -> None:
    endpoint.answer = answer
    now = datetime(2026, 1, 1, tzinfo=UTC)
    config = {"hostname": "h.example.com", "version": "3.21", "instance": "acme", "domain": "acme"}
    fields = {"pat": "p", "secret": "s", "username": "u", "password": "p", "apiKey": "k"}
    minted = await _mint(_at(name, endpoint.url), fields, connection_config=config, now=now)
    assert minted.expires_at == (now + expected if isinstance(expected, timedelta) else expected)
    assert (minted.credentials.expires_at is None) == (expected is None)


async def test_a_jwt_tokens_own_expiry_when_the_answer_gives_none(endpoint: Endpoint) -> None:
    pem, _ = _rsa()
    exp = int(datetime(2031, 5, 1, tzinfo=UTC).timestamp())
    endpoint.answer = {"jwt": JsonWebToken(["RS256"]).encode({"alg": "RS256"}, {"exp": exp}, pem).decode()}
    minted = await _mint(_at("agencyzoom", endpoint.url), {"username": "u", "password": "p"})
    assert minted.expires_at == datetime(2031, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [(401, {"error": "nope"}, "invalid_two_step_credentials"), (200, {"other": "x"}, "incomplete_raw_credentials")],
)
async def test_refusals_name_no_secret(endpoint: Endpoint, status: int, answer: dict[str, Any], code: str) -> None:
    endpoint.status, endpoint.answer = status, answer
    with pytest.raises(PermanentTokenError) as refused:
        await _mint(_at("agencyzoom", endpoint.url), {"username": "u", "password": "hunter2"})
    assert refused.value.type == code
    assert "hunter2" not in refused.value.description


def test_the_stored_document_keeps_nangos_order() -> None:
    credentials = TwoStepCredentials(token="t", expires_at="2030-01-01T00:00:00.000Z", raw={"a": 1}).with_fields(
        apiKey="k"
    )
    assert list(credentials.dump()) == ["type", "token", "expires_at", "raw", "apiKey"]
    assert credentials.proxy_authorization({}) == "Bearer t"
    assert credentials.proxy_authorization({"x-token": "${accessToken}"}) is None
    assert credentials.template_variables() == {"accessToken": "t"}


async def test_an_html_page_is_not_a_bare_token(endpoint: Endpoint) -> None:
    endpoint.content_type, endpoint.answer = "text/html", "<html><body>Sign in</body></html>"
    with pytest.raises(PermanentTokenError) as refused:
        await _mint(_at("avanan", endpoint.url), {"appId": "a", "secretKey": "s"}, connection_config={"subdomain": "x"})
    assert refused.value.type == "incomplete_raw_credentials"
