"""The signing pieces of the non-OAuth 2 connect flows, without a broker or database: provider keys
as PEM or base64, JWTs (checked by an independent verifier), OAuth 1 RSA-SHA1 and PLAINTEXT signatures
(the HMAC-SHA1 path is proven end to end in tests/integration/test_connect_flows.py).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from auth_gateway.connect.protocol.oauth1 import OAuth1Client, authorization_url
from keyway_shared.credentials.app_store import app_store_jwt
from keyway_shared.credentials.github_app import app_jwt
from keyway_shared.credentials.jwt_signing import InvalidPrivateKeyError, load_pem, sign_jwt
from keyway_shared.providers import ProviderTemplate

from ..support.github_app_provider import ec_key_pem, rsa_key_pem, verify_jwt
from ..support.oauth1_provider import header_params, signature_base_string

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_keys_arrive_as_pem_or_base64_of_pem() -> None:
    pem, _public = rsa_key_pem()
    assert load_pem(pem) == pem.strip() + "\n"
    assert load_pem(base64.b64encode(pem.encode()).decode()) == pem.strip() + "\n"
    assert load_pem(pem.replace("\n", "\\n")).startswith("-----BEGIN RSA PRIVATE KEY-----\n")  # pasted into JSON
    for bad in ("", "not a key", base64.b64encode(b"hello").decode()):
        with pytest.raises(InvalidPrivateKeyError):
            load_pem(bad)


def test_each_algorithm_takes_only_its_kind_of_key() -> None:
    rsa_pem, _ = rsa_key_pem()
    ec_pem, _ = ec_key_pem()
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for key, algorithm in [(ec_pem, "RS256"), (rsa_pem, "ES256"), (p384.decode(), "ES256")]:
        with pytest.raises(InvalidPrivateKeyError) as caught:
            sign_jwt(private_key=key, algorithm=algorithm, claims={})  # type: ignore[arg-type]
        assert caught.value.type == "invalid_private_key"


def test_the_pss_family_signs_with_rsa_keys() -> None:
    from authlib.jose import JsonWebToken

    rsa_pem, public = rsa_key_pem()
    for algorithm in ("PS256", "PS384", "PS512"):
        token = sign_jwt(private_key=rsa_pem, algorithm=algorithm, claims={"sub": "x"}, header={"x5t": "t"})  # type: ignore[arg-type]
        decoded = JsonWebToken([algorithm]).decode(token, public)
        assert decoded == {"sub": "x"}
        assert decoded.header == {"alg": algorithm, "typ": "JWT", "x5t": "t"}
    ec_pem, _ = ec_key_pem()
    with pytest.raises(InvalidPrivateKeyError):
        sign_jwt(private_key=ec_pem, algorithm="PS256", claims={})


def test_github_app_jwt() -> None:
    pem, public_key = rsa_key_pem()
    header, claims = verify_jwt(app_jwt(app_id="42", private_key=pem, now=NOW), public_key)
    assert header == {"alg": "RS256", "typ": "JWT"}
    now = int(NOW.timestamp())
    assert claims == {"iat": now - 60, "exp": now + 540, "iss": "42"}


def test_app_store_jwt() -> None:
    pem, public_key = ec_key_pem()
    token = app_store_jwt(
        private_key=base64.b64encode(pem.encode()).decode(),
        private_key_id="K1",
        issuer_id="iss-1",
        audience="appstoreconnect-v1",
        scope=None,
        now=NOW,
    )
    header, claims = verify_jwt(token, public_key)
    assert header == {"alg": "ES256", "kid": "K1", "typ": "JWT"}
    now = int(NOW.timestamp())
    assert claims == {"iat": now, "exp": now + 900, "iss": "iss-1", "aud": "appstoreconnect-v1"}  # no scope: no claim


def test_oauth1_authorization_url_order_and_undefined() -> None:
    template = ProviderTemplate(
        auth_mode="OAUTH1", scope_separator=",", authorization_params={"expiration": "never", "name": "App"}
    )
    url = authorization_url(
        url="https://trello.example/authorize?x=1",
        request_token="rt",
        template=template,
        scopes=["read", "write"],
        request_params={"name": "undefined", "lang": "fr"},
    )
    assert url == "https://trello.example/authorize?x=1&oauth_token=rt&scope=read%2Cwrite&expiration=never&lang=fr"


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[TestServer, list[dict[str, Any]]]]:
    """A token endpoint that records each request and answers like an OAuth 1 provider."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "url": str(request.url), "headers": dict(request.headers)})
        return web.Response(text="oauth_token=t&oauth_token_secret=s", content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


async def test_oauth1_rsa_sha1_and_plaintext(recorder: tuple[TestServer, list[dict[str, Any]]]) -> None:
    server, seen = recorder
    rsa_pem, public_key = rsa_key_pem()
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        rsa_template = ProviderTemplate(auth_mode="OAUTH1", signature_method="RSA-SHA1", request_http_method="GET")
        client = OAuth1Client(
            session=session, template=rsa_template, consumer_key="ck", consumer_secret=rsa_pem, timeout_seconds=5
        )
        assert await client.request_token(request_url=f"{base}/request", callback="https://cb.example/?state=s") == (
            "t",
            "s",
        )
        plain = ProviderTemplate(auth_mode="OAUTH1", signature_method="PLAINTEXT")
        client = OAuth1Client(
            session=session, template=plain, consumer_key="ck", consumer_secret="c&s", timeout_seconds=5
        )
        await client.access_token(
            token_url=f"{base}/access", request_token="rt", request_token_secret="rs", verifier="v"
        )

    rsa_call, plain_call = seen
    oauth = header_params(rsa_call["headers"]["Authorization"])
    assert (rsa_call["method"], oauth["oauth_signature_method"]) == ("GET", "RSA-SHA1")
    params = [(k, v) for k, v in oauth.items() if k != "oauth_signature"]
    signed = signature_base_string("GET", rsa_call["url"], params).encode()
    public_key.verify(base64.b64decode(oauth["oauth_signature"]), signed, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - RFC 5849 mandates SHA-1
    oauth = header_params(plain_call["headers"]["Authorization"])
    assert oauth["oauth_signature"] == "c%26s&rs"  # RFC 5849 §3.4.4: encoded secrets joined by '&'
    assert (oauth["oauth_token"], oauth["oauth_verifier"]) == ("rt", "v")
