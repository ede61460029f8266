"""The JWT a template's ``token`` declaration describes, checked claim by claim against the catalog's
entries (Heymarket's UTF-8 ``id||key`` secret, Apple's ES256 with an optional scope, Ghost's split
key), and the WSSE digest against a value computed by hand from its definition."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keyway_shared.credentials.declared_jwt import JwtFieldsError, jwt_fields, sign_declared_jwt
from keyway_shared.credentials.errors import PermanentTokenError
from keyway_shared.credentials.shapes import JwtCredentials
from keyway_shared.credentials.wsse import password_digest, wsse_token
from keyway_shared.providers import load_catalog

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CATALOG = load_catalog()


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    head, body, signature = token.split(".")
    return json.loads(_b64url(head)), json.loads(_b64url(body)), f"{head}.{body}".encode(), _b64url(signature)


def test_heymarket_signs_with_id_bars_key_as_text() -> None:
    template = CATALOG.get("heymarket")
    assert template is not None
    fields = {"apiSecretId": "74f80a77-9b3f-44ac-b3ad-ab68cfb548fa", "apiSecretKey": "cPQku7lnSLbnK88"}
    token, expires_at = sign_declared_jwt(template, fields, {}, now=NOW)
    header, claims, signed, signature = parts(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims == {"iss": fields["apiSecretId"], "iat": 1772366400, "exp": 1772366700}
    secret = f"{fields['apiSecretId']}||{fields['apiSecretKey']}".encode()  # "||" is text here, no fallback
    assert signature == hmac.new(secret, signed, hashlib.sha256).digest()
    assert expires_at == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)


def test_an_es256_declaration_leaves_out_a_claim_it_has_no_value_for() -> None:
    template = _apple_like()  # Apple's JWT entry in Nango's catalog (Keyway keeps Apple in APP_STORE)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    one_line = pem.decode().replace("\n", " ")  # pasted on one line: still the same key
    fields = {"issuerId": "iss-1", "privateKeyId": "KEY123", "privateKey": one_line}
    token, _ = sign_declared_jwt(template, fields, {}, now=NOW)
    header, claims, signed, signature = parts(token)
    assert header == {"alg": "ES256", "typ": "JWT", "kid": "KEY123"}
    assert claims == {"iss": "iss-1", "aud": "appstoreconnect-v1", "iat": 1772366400, "exp": 1772367300}
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    key.public_key().verify(der, signed, ec.ECDSA(hashes.SHA256()))
    token, _ = sign_declared_jwt(template, fields, {"scope": "GET /v1/apps, GET /v1/users"}, now=NOW)
    assert parts(token)[1]["scope"] == ["GET /v1/apps", "GET /v1/users"]  # split on commas, as Nango


def _apple_like() -> Any:
    from keyway_shared.providers import ProviderTemplate

    return ProviderTemplate.model_validate(
        {
            "auth_mode": "JWT",
            "signature": {"protocol": "EC"},
            "token": {
                "signing_key": "${credentials.privateKey}",
                "expires_in_ms": 900000,
                "header": {"alg": "ES256", "kid": "${credentials.privateKeyId}", "typ": "JWT"},
                "payload": {
                    "iss": "${credentials.issuerId}",
                    "aud": "appstoreconnect-v1",
                    "scope": ["${connectionConfig.scope}"],
                },
            },
            "credentials": {"issuerId": {}, "privateKeyId": {}, "privateKey": {}},
        }
    )


def test_ghosts_key_is_checked_split_and_kept_split() -> None:
    template = CATALOG.get("ghost-admin")
    assert template is not None
    key = "0123456789abcdef01234567:" + "ab" * 32
    fields = jwt_fields(template, {"type": "JWT", "privateKey": key, "unrelated": "dropped"})
    assert fields == {"privateKey": {"id": "0123456789abcdef01234567", "secret": "ab" * 32}}
    credentials, _ = JwtCredentials.signed(template, fields, {"adminDomain": "x.ghost.io", "version": "v5.0"}, now=NOW)
    document = credentials.dump()
    assert list(document) == ["type", "privateKey", "token", "expires_at"]
    assert credentials.signing_fields() == fields
    _, _, signed, signature = parts(document["token"])
    assert signature == hmac.new(bytes.fromhex("ab" * 32), signed, hashlib.sha256).digest()
    assert credentials.authorization() == f"Bearer {document['token']}"  # the template's header overrides it

    with pytest.raises(JwtFieldsError) as caught:
        jwt_fields(template, {"privateKey": "abc:def"})
    assert caught.value.type == "invalid_credentials"
    with pytest.raises(JwtFieldsError) as caught:
        jwt_fields(template, {})
    assert caught.value.type == "missing_credentials"


@pytest.mark.parametrize(
    ("provider", "fields"),
    [
        (
            "snowflake-jwt",
            {
                "accountIdentifier": "A",
                "userName": "U",
                "privateKey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            },
        ),
        ("snowflake-jwt", {"accountIdentifier": "A", "userName": "U", "privateKey": "not pem"}),
        ("ghost-admin", {"privateKey": {"id": "i", "secret": "not hex"}}),
    ],
)
def test_a_key_that_cannot_sign_is_invalid_private_key(provider: str, fields: dict[str, Any]) -> None:
    template = CATALOG.get(provider)
    assert template is not None
    with pytest.raises(PermanentTokenError) as caught:
        sign_declared_jwt(template, fields, {}, now=NOW)
    assert caught.value.type == "invalid_private_key"
    assert "AAAA" not in caught.value.description


def test_the_wsse_digest_is_base64_of_the_hex_sha1() -> None:
    # sha1("abc" + "2026-03-01T12:00:00.000Z" + "secret") in hex, then that text in base64.
    hex_digest = hashlib.sha1(b"abc2026-03-01T12:00:00.000Zsecret").hexdigest()  # noqa: S324 # WSSE's digest
    assert (
        password_digest("abc", "2026-03-01T12:00:00.000Z", "secret") == base64.b64encode(hex_digest.encode()).decode()
    )
    token = wsse_token("user_1", "secret", now=NOW, nonce="abc")
    assert token == (
        f'UsernameToken Username="user_1", PasswordDigest="{base64.b64encode(hex_digest.encode()).decode()}", '
        'Nonce="abc", Created="2026-03-01T12:00:00.000Z"'
    )
    assert wsse_token("u", "p", now=NOW) != wsse_token("u", "p", now=NOW)  # a new nonce each time
