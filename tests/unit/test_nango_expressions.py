"""Nango's template expressions, evaluated as Nango's interpolateString family evaluates them.

Expected values are computed here from the providers' documented algorithms (Duo's request
signing, AWS Signature Version 4's published test vector, RFC 8032 Ed25519) with the standard
library, never with the evaluator under test. The templates are the pinned Nango catalog's own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from multidict import CIMultiDict, CIMultiDictProxy

from auth_gateway.http.errors import ApiError
from auth_gateway.proxy.target import build_target, headers_need_body, headers_need_client
from keyway_shared.credentials import parse_credentials
from keyway_shared.providers.catalog import TOKEN_HOOK_NAMES, check_entries
from keyway_shared.providers.expressions import (
    ExpressionSyntaxError,
    RequestFacts,
    Scope,
    canonical_params,
    check_syntax,
    expand,
    format_now,
)
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError
from keyway_shared.providers.template import ProviderTemplate, interpolation_variables
from keyway_shared.store import Connection

PINNED = Path(__file__).parents[1] / "sdk/node_modules/nango-providers-07110/providers.yaml"
DUO_DATE = datetime(2012, 8, 21, 17, 29, 18, tzinfo=UTC)  # the date of Duo's documented example
DUO_IKEY, DUO_SKEY = "DIWJ8X6AEYOR5OMC6TQ1", "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"


@cache
def pinned() -> dict[str, ProviderTemplate]:
    raw = yaml.safe_load(PINNED.read_text(encoding="utf-8"))
    check = check_entries(raw, dict.fromkeys(raw, "pinned"))
    assert not check.problems
    return check.templates


def header_template(provider: str, name: str) -> str:
    proxy = pinned()[provider].proxy
    assert proxy is not None
    return proxy.headers[name]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def connection(credentials: dict[str, Any], config: dict[str, Any] | None = None, provider: str = "p") -> Connection:
    return Connection(
        environment="dev",
        provider_config_key="k",
        connection_id="c",
        provider=provider,
        auth_mode=str(credentials["type"]),
        credentials=parse_credentials(credentials),
        connection_config=config or {},
    )


def client_headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


# --- functions ------------------------------------------------------------------------------------


def test_base64_of_credentials_and_configuration() -> None:
    scope = Scope(values={"credentials": {"username": "ann@acme.io", "password": "p:w"}})
    zendesk = header_template("zendesk-api-key", "authorization")
    assert expand(zendesk, scope, header=True) == "Basic " + b64("ann@acme.io/token:p:w")
    pleo = header_template("pleo-api-key", "authorization")
    assert expand(pleo, Scope(values={"apiKey": "pls_ab_cd"}), header=True) == "Basic " + b64("pls_ab_cd:")
    secure = header_template("connectsecure", "client-auth-token")
    values = {"credentials": {"username": "id", "password": "secret"}}
    assert expand(secure, Scope(values=values, config={"tenant": "acme"})) == b64("acme+id:secret")


def test_hashes_and_hmac() -> None:
    scope = Scope(values={"a": "x,y", "k": "key"})
    assert expand("${sha256Hex(${a})}", scope) == hashlib.sha256(b"x,y").hexdigest()
    assert expand("${sha256Base64(${a})}", scope) == b64_digest(hashlib.sha256(b"x,y").digest())
    # One-argument functions keep commas; hmacSha1Hex splits at the last one.
    assert expand("${base64(${a}, z)}", scope) == b64("x,y, z")
    expected = hmac.new(b"key", b"x,y\nmore", hashlib.sha1).hexdigest()
    assert expand("${hmacSha1Hex(${a}\nmore, ${k})}", scope) == expected


def b64_digest(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("ddd, DD MMM YYYY HH:mm:ss ZZ", "Tue, 21 Aug 2012 17:29:18 +0000"),  # Duo's Date header
        ("YYYYMMDDTHHmmss[Z]", "20120821T172918Z"),  # AWS's x-amz-date
        ("YYYY-MM-DDTHH:mm:ss", "2012-08-21T17:29:18"),
        ("X", "1345570158"),
        ("x", "1345570158000"),
        ("dddd D MMMM YY h:m:s A a SSS Z", "Tuesday 21 August 12 5:29:18 PM pm 000 +00:00"),
    ],
)
def test_now_formats_as_dayjs(pattern: str, expected: str) -> None:
    assert format_now(DUO_DATE, pattern) == expected


def test_now_expressions_share_one_reading() -> None:
    scope = Scope(values={}, now=DUO_DATE)
    assert expand("${now}", scope) == "2012-08-21T17:29:18.000Z"
    assert expand("${now:X}/${now+1:minutes:X}", scope) == "1345570158/1345570218"
    assert expand("${now+7:days:YYYY-MM-DD}", scope) == "2012-08-28"
    assert expand("${now-1:months:YYYY-MM-DD}", Scope(values={}, now=datetime(2024, 3, 31, tzinfo=UTC))) == (
        "2024-02-29"  # dayjs clamps to the month's end
    )
    assert expand("${random}-${random}", scope) == f"{scope.random}-{scope.random}"


def test_duo_signature_as_duo_documents_it() -> None:
    """Duo Admin API request signing: HMAC-SHA1 over date, method, host, path and sorted params,
    sent as Basic ikey:signature (duo.com/docs/adminapi#authentication)."""
    template = header_template("cisco-duo-admin", "authorization")
    facts = RequestFacts(
        method="get",
        url="https://api-xxxxxxxx.duosecurity.com/admin/v1/users?username=root&realname=First%20Last",
        endpoint="/admin/v1/users",
    )
    scope = Scope(
        values={"credentials": {"username": DUO_IKEY, "password": DUO_SKEY}},
        config={"hostname": "api-xxxxxxxx.duosecurity.com"},
        request=facts.variables(),
        now=DUO_DATE,
    )
    canonical = "\n".join(
        [
            "Tue, 21 Aug 2012 17:29:18 +0000",
            "GET",
            "api-xxxxxxxx.duosecurity.com",
            "/admin/v1/users",
            "realname=First%20Last&username=root",
        ]
    )
    signature = hmac.new(DUO_SKEY.encode(), canonical.encode(), hashlib.sha1).hexdigest()
    assert expand(template, scope, header=True) == "Basic " + b64(f"{DUO_IKEY}:{signature}")


def test_canonical_params() -> None:
    assert canonical_params("GET", None, "b=2&a=1+1&c=%2A") == "a=1%201&b=2&c=%2A"
    assert canonical_params("POST", b"z=1&y=it's", "ignored=1") == "y=it%27s&z=1"
    assert canonical_params("POST", b'{"b": 2, "a": "x y", "t": true}', "", "application/json") == (
        "a=x%20y&b=2&t=true"
    )
    assert canonical_params("POST", None, "a=1") == ""
    assert canonical_params("DELETE", b"a=1", "q=1") == "q=1"


def test_aws_sigv4_matches_the_published_test_vector() -> None:
    """AWS's Signature Version 4 test suite, ``get-vanilla``: GET / on example.amazonaws.com."""
    scope = Scope(
        values={"credentials": {"username": "AKIDEXAMPLE", "password": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}},
        request=RequestFacts(method="GET", url="https://example.amazonaws.com/").variables(),
        now=datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
    )
    text = "${awsSigV4(${credentials.username}, ${credentials.password}, us-east-1, service, example.amazonaws.com)}"
    assert expand(text, scope, header=True) == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def ed25519_pem() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return key, pem


def test_streamline_signature_verifies_with_the_public_key() -> None:
    key, pem = ed25519_pem()
    body = b'{"name":"x"}'
    facts = RequestFacts(method="POST", url="https://acme.streamline.ai/api/v0/requests", body=body)
    scope = Scope(
        values={"credentials": {"username": "slak_1", "password": pem.replace("\n", "\\n")}},  # pasted on one line
        request=facts.variables(),
        now=DUO_DATE,
    )
    rendered = {
        name: expand(header_template("streamline-ai", name), scope, header=True)
        for name in ("content-digest", "signature-input", "signature")
    }
    digest = b64_digest(hashlib.sha256(body).digest())
    assert rendered["content-digest"] == f"sha-256=:{digest}:"
    params = (
        '("@method" "@target-uri" "content-digest" "content-type");alg="ed25519";'
        'created=1345570158;expires=1345570218;keyid="slak_1"'
    )
    assert rendered["signature-input"] == f"sig={params}"
    message = (
        '"@method": POST\n"@target-uri": https://acme.streamline.ai/api/v0/requests\n'
        f'"content-digest": sha-256=:{digest}:\n"content-type": application/json\n"@signature-params": {params}'
    )
    signature = base64.b64decode(rendered["signature"].removeprefix("sig=:").removesuffix(":"))
    key.public_key().verify(signature, message.encode())  # raises when it does not verify


def test_a_bad_private_key_is_named_never_quoted() -> None:
    scope = Scope(values={"credentials": {"password": "not-a-key-SECRET"}})
    with pytest.raises(UnsafeParamError) as caught:
        expand("${ed25519Sign(m, ${credentials.password})}", scope)
    assert caught.value.name == "credentials.password"
    assert "SECRET" not in str(caught.value)


# --- variables, fallbacks, checks -----------------------------------------------------------------


def test_fallbacks_and_missing_names() -> None:
    vincere = header_template("vincere", "id-token")
    with_token = Scope(values={"credentials": {"raw": {"id_token": "from-token"}}}, config={"id_token": "cfg"})
    assert expand(vincere, with_token, header=True) == "from-token"
    assert expand(vincere, Scope(values={"credentials": {"raw": {}}}, config={"id_token": "cfg"})) == "cfg"
    with pytest.raises(MissingParamError) as caught:
        expand(vincere, Scope(values={"credentials": {}}, config={}))
    assert caught.value.names == ["id_token"]
    with pytest.raises(MissingParamError) as missing:
        expand("${base64(${credentials.username}:${credentials.password})}", Scope(values={}))
    assert missing.value.names == ["credentials.username", "credentials.password"]


def test_configuration_and_credentials_do_not_stand_in_for_each_other() -> None:
    """nyne-ai sends a configuration field named apiKey beside the credential's key."""
    scope = Scope(values={"apiKey": "credential-key"}, config={"apiKey": "config-key"})
    assert expand(header_template("nyne-ai", "x-api-key"), scope) == "config-key"
    assert expand(header_template("nyne-ai", "x-api-secret"), scope) == "credential-key"


def test_control_characters_only_refused_where_they_would_split_a_header() -> None:
    scope = Scope(values={"credentials": {"username": "a\r\nX-Evil: 1", "password": "p"}}, config={})
    with pytest.raises(UnsafeParamError) as caught:
        expand("${credentials.username}", scope, header=True)
    assert "Evil" not in str(caught.value)
    assert expand("Basic ${base64(${credentials.username}:${credentials.password})}", scope, header=True).isascii()


def test_patterns_hold_for_configuration_values_in_expressions() -> None:
    scope = Scope(
        values={"credentials": {"username": "u", "password": "p"}},
        config={"tenant": "bad tenant!"},
        patterns={"tenant": "^[A-Za-z0-9_-]+$"},
    )
    with pytest.raises(UnsafeParamError) as caught:
        expand(header_template("connectsecure", "client-auth-token"), scope)
    assert caught.value.name == "tenant"


@pytest.mark.parametrize("text", ["${nope(x)}", "${base64(x", "${base64(x)", "${a{b}", "${}", "${hmacSha1Hex(no-key)}"])
def test_syntax_errors(text: str) -> None:
    with pytest.raises(ExpressionSyntaxError):
        check_syntax(text)


def test_interpolation_variables_see_inside_functions_and_skip_request_names() -> None:
    cisco = header_template("cisco-duo-admin", "authorization")
    assert interpolation_variables(cisco) == {"credentials.username", "credentials.password"}
    assert interpolation_variables(header_template("connectsecure", "client-auth-token")) == {
        "tenant",
        "credentials.username",
        "credentials.password",
    }
    assert interpolation_variables("${clientId}:${clientSecret} ${random} ${now:X}") == set()


# --- the catalog ------------------------------------------------------------------------------------


def test_catalog_refuses_an_unknown_function_and_an_unknown_token_hook_at_load() -> None:
    raw = {
        "good": {"auth_mode": "API_KEY", "proxy": {"headers": {"a": "${base64(${apiKey}:)}"}}},
        "bad-function": {"auth_mode": "API_KEY", "proxy": {"headers": {"a": "${md5(${apiKey})}"}}},
        "bad-hook": {"auth_mode": "OAUTH2", "token_url": "https://x.io/t", "token_hook": "salesforse"},
        "bad-param": {"auth_mode": "OAUTH2_CC", "token_params": {"audience": "${connectionConfig.a"}},
    }
    check = check_entries(raw, dict.fromkeys(raw, "ops.yaml"))
    assert set(check.templates) == {"good"}
    problems = {problem.provider: str(problem) for problem in check.problems}
    assert "proxy.headers.a" in problems["bad-function"]
    assert "unknown function md5()" in problems["bad-function"]
    assert problems["bad-hook"].startswith("ops.yaml: provider 'bad-hook' field token_hook: ")
    assert "salesforse" in problems["bad-hook"]
    assert "token_params.audience" in problems["bad-param"]


def test_token_hook_registry_and_catalog_names_agree() -> None:
    from keyway_shared.credentials.token_hooks import HOOKS

    assert set(HOOKS) == TOKEN_HOOK_NAMES


# --- the proxy's headers ----------------------------------------------------------------------------


def test_proxy_duo_headers_agree_with_each_other() -> None:
    """The Date header and the signature over it come from one clock reading."""
    template = pinned()["cisco-duo-admin"]
    target = build_target(
        connection=connection(
            {"type": "BASIC", "username": DUO_IKEY, "password": DUO_SKEY},
            {"hostname": "api-abc123.duosecurity.com"},
        ),
        template=template,
        client_headers=client_headers(),
        raw_endpoint="/admin/v1/users",
        raw_query="username=root&realname=First%20Last",
        method="GET",
    )
    date = target.headers["date"]
    canonical = f"{date}\nGET\napi-abc123.duosecurity.com\n/admin/v1/users\nrealname=First%20Last&username=root"
    signature = hmac.new(DUO_SKEY.encode(), canonical.encode(), hashlib.sha1).hexdigest()
    assert target.headers["Authorization"] == "Basic " + b64(f"{DUO_IKEY}:{signature}")
    assert not headers_need_body(pinned()["zendesk-api-key"])
    assert headers_need_body(template)  # params: a POST's body is signed


def test_proxy_signs_a_post_body() -> None:
    template = pinned()["cisco-duo-admin"]
    target = build_target(
        connection=connection(
            {"type": "BASIC", "username": DUO_IKEY, "password": DUO_SKEY},
            {"hostname": "api-abc123.duosecurity.com"},
        ),
        template=template,
        client_headers=client_headers(Content_Type="application/x-www-form-urlencoded"),
        raw_endpoint="/admin/v1/users",
        raw_query="",
        method="POST",
        body=b"username=root&realname=First+Last",
    )
    canonical = (
        f"{target.headers['date']}\nPOST\napi-abc123.duosecurity.com\n/admin/v1/users\n"
        "realname=First%20Last&username=root"
    )
    signature = hmac.new(DUO_SKEY.encode(), canonical.encode(), hashlib.sha1).hexdigest()
    assert target.headers["Authorization"] == "Basic " + b64(f"{DUO_IKEY}:{signature}")


def test_proxy_base64_headers_and_the_oauth_client() -> None:
    zendesk = build_target(
        connection=connection({"type": "BASIC", "username": "ann@acme.io", "password": "tok"}, {"subdomain": "acme"}),
        template=pinned()["zendesk-api-key"],
        client_headers=client_headers(),
        raw_endpoint="/api/v2/users.json",
        raw_query="",
    )
    assert zendesk.headers["Authorization"] == "Basic " + b64("ann@acme.io/token:tok")
    etsy = pinned()["etsy"]
    assert headers_need_client(etsy)
    target = build_target(
        connection=connection({"type": "OAUTH2", "access_token": "at"}),
        template=etsy,
        client_headers=client_headers(),
        raw_endpoint="/v3/application/users/me",
        raw_query="",
        oauth_client=("keystring", "shared-secret"),
    )
    assert target.headers["x-api-key"] == "keystring:shared-secret"
    assert target.headers["Authorization"] == "Bearer at"
    with pytest.raises(ApiError) as caught:
        build_target(
            connection=connection({"type": "OAUTH2", "access_token": "at"}),
            template=etsy,
            client_headers=client_headers(),
            raw_endpoint="/",
            raw_query="",
        )
    assert caught.value.code == "missing_connection_config"
    assert "the integration's OAuth client (clientId)" in str(caught.value.message)


def test_proxy_errors_name_credentials_without_their_values() -> None:
    with pytest.raises(ApiError) as caught:
        build_target(
            connection=connection({"type": "BASIC", "username": "u\nX-Injected: 1", "password": "pw"}),
            template=ProviderTemplate.model_validate(
                {
                    "auth_mode": "BASIC",
                    "proxy": {"base_url": "https://x.io", "headers": {"x-user": "${credentials.username}"}},
                }
            ),
            client_headers=client_headers(),
            raw_endpoint="/",
            raw_query="",
        )
    assert caught.value.code == "invalid_connection_config"
    assert "the connection's credentials (username)" in str(caught.value.message)
    assert "Injected" not in json.dumps(caught.value.message)
