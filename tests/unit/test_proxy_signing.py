"""The proxy's OAuth 1.0a signatures (OAUTH1, NetSuite TBA), checked against code that did not make them:
a published example, authlib's server-side verifier, and RFC 5849 recomputed here
(tests/support/oauth1_provider.py's base string, which the provider in the connect tests uses)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from authlib.oauth1.rfc5849.signature import verify_hmac_sha1
from authlib.oauth1.rfc5849.wrapper import OAuth1Request
from multidict import CIMultiDict
from yarl import URL

from auth_gateway.http.errors import ApiError
from auth_gateway.proxy.signing import Signer, netsuite_realm, signed_headers, signer_for
from auth_gateway.proxy.target import Target
from keyway_shared.credentials import parse_credentials
from keyway_shared.providers.template import ProviderTemplate
from keyway_shared.store import Connection, Integration

from ..support.oauth1_provider import header_params, signature_base_string

CONSUMER = ("ck-9d2f", "cs-secret-j49sk")
TOKEN = ("tk-kkk9d7", "ts-secret-dh893")
NETSUITE_URL = "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/record/v1/customer"
FORM = "application/x-www-form-urlencoded"


def _enc(value: str) -> str:
    return quote(value, safe="-._~")


def expected_signature(
    header: str, method: str, url: str, *, form: str = "", consumer_secret: str, token_secret: str
) -> str:
    """RFC 5849 §3.4: the base string from what is sent (query decoded, form body decoded, the
    header's oauth_* but signature and realm), then HMAC-SHA1 or HMAC-SHA256 as the header names."""
    oauth = header_params(header)
    params = [(k, v) for k, v in oauth.items() if k not in {"oauth_signature", "realm"}]
    params += parse_qsl(URL(url, encoded=True).raw_query_string, keep_blank_values=True)
    params += parse_qsl(form, keep_blank_values=True)
    base_string = signature_base_string(method, url.split("?", 1)[0], params)
    digest = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}[oauth["oauth_signature_method"]]
    key = f"{_enc(consumer_secret)}&{_enc(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base_string.encode(), digest).digest()).decode()


def connection(credentials: dict[str, Any], config: dict[str, Any] | None = None) -> Connection:
    return Connection(
        environment="dev",
        provider_config_key="key",
        connection_id="c1",
        provider="p",
        auth_mode=str(credentials.get("type")),
        credentials=parse_credentials(credentials),
        connection_config=config or {},
    )


def integration(key: str | None = CONSUMER[0], secret: str | None = CONSUMER[1]) -> Integration:
    return Integration(
        environment="dev", unique_key="key", provider="p", oauth_client_id=key, oauth_client_secret=secret
    )


OAUTH1 = {"type": "OAUTH1", "oauth_token": TOKEN[0], "oauth_token_secret": TOKEN[1]}
TBA = {"type": "TBA", "token_id": TOKEN[0], "token_secret": TOKEN[1], "config_override": {}}
OAUTH1_TEMPLATE = ProviderTemplate.model_validate({"auth_mode": "OAUTH1", "signature_method": "HMAC-SHA1"})


def test_the_published_example_signs_to_its_published_signature() -> None:
    # X's (Twitter's) "Creating a signature" walk-through: HMAC-SHA1 over a query and a form body.
    signer = Signer(
        consumer_key="xvz1evFS4wEEPTGEFPHBog",
        consumer_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        token_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        signature_method="HMAC-SHA1",
    )
    header = signer.authorization(
        "post",
        URL("https://api.twitter.com/1.1/statuses/update.json?include_entities=true", encoded=True),
        body=b"status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21",
        content_type=FORM,
        nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        timestamp=1318622958,
    )
    assert header.startswith("OAuth ")
    assert header_params(header)["oauth_signature"] == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


class _Client:
    def get_client_secret(self) -> str:
        return CONSUMER[1]


class _Credential:
    def get_oauth_token_secret(self) -> str:
        return TOKEN[1]


def test_oauth1_hmac_sha1_passes_authlibs_server_side_check() -> None:
    signer = signer_for(connection(OAUTH1), OAUTH1_TEMPLATE, integration())
    url = "https://api.example.com/v1/items/a%2Fb?b=2&a=1%202&a=0&empty="
    body = "x=1&y=a+b&z=%26"
    header = signer.authorization("POST", URL(url, encoded=True), body=body.encode(), content_type=FORM)
    request = OAuth1Request("POST", url, body=body, headers={"Authorization": header, "Content-Type": FORM})
    request.client, request.credential = _Client(), _Credential()
    assert request.client_id == CONSUMER[0]
    assert request.token == TOKEN[0]
    assert verify_hmac_sha1(request)
    # The same header on another query, or another body, does not verify: both are signed.
    other = OAuth1Request("POST", url.replace("b=2", "b=3"), body=body, headers={"Authorization": header})
    other.client, other.credential = _Client(), _Credential()
    assert not verify_hmac_sha1(other)
    changed = OAuth1Request("POST", url, body="x=2&y=a+b&z=%26", headers={"Authorization": header})
    changed.client, changed.credential = _Client(), _Credential()
    assert not verify_hmac_sha1(changed)


def test_oauth1_defaults_to_hmac_sha1_and_follows_the_templates_method() -> None:
    no_method = ProviderTemplate.model_validate({"auth_mode": "OAUTH1"})
    assert signer_for(connection(OAUTH1), no_method, integration()).signature_method == "HMAC-SHA1"
    assert signer_for(connection(OAUTH1), None, integration()).signature_method == "HMAC-SHA1"
    plaintext = ProviderTemplate.model_validate({"auth_mode": "OAUTH1", "signature_method": "PLAINTEXT"})
    signer = signer_for(connection(OAUTH1), plaintext, integration())
    header = signer.authorization("GET", URL("https://api.example.com/x"))
    assert header_params(header)["oauth_signature"] == f"{CONSUMER[1]}&{TOKEN[1]}"


def test_tba_signs_hmac_sha256_with_the_netsuite_account_as_realm() -> None:
    signer = signer_for(connection(TBA, {"accountId": "1234567-sb1"}), None, integration())
    url = NETSUITE_URL + "?limit=5&q=name%20IS%20%22A%2BB%22"
    header = signer.authorization("GET", URL(url, encoded=True))
    params = header_params(header)
    assert header.startswith('OAuth realm="1234567_SB1", ')
    assert params["oauth_signature_method"] == "HMAC-SHA256"
    assert (params["oauth_consumer_key"], params["oauth_token"], params["oauth_version"]) == (
        CONSUMER[0],
        TOKEN[0],
        "1.0",
    )
    assert params["oauth_signature"] == expected_signature(
        header, "GET", url, consumer_secret=CONSUMER[1], token_secret=TOKEN[1]
    )
    # The realm is not signed (§3.4.1.3.1); the method and the query are.
    assert params["oauth_signature"] != expected_signature(
        header, "POST", url, consumer_secret=CONSUMER[1], token_secret=TOKEN[1]
    )
    assert params["oauth_signature"] != expected_signature(
        header, "GET", NETSUITE_URL + "?limit=6", consumer_secret=CONSUMER[1], token_secret=TOKEN[1]
    )


@pytest.mark.parametrize(
    ("account", "realm"),
    [("tstdrv231585", "TSTDRV231585"), ("1234567-sb1", "1234567_SB1"), ("1234567_SB2", "1234567_SB2")],
)
def test_netsuite_realm(account: str, realm: str) -> None:
    assert netsuite_realm(account) == realm


def test_a_form_body_is_signed_and_any_other_body_is_not() -> None:
    signer = signer_for(connection(TBA, {"accountId": "tstdrv231585"}), None, integration())
    url = URL(NETSUITE_URL, encoded=True)
    form = "name=A%20B&tags=x&tags=y"
    header = signer.authorization("POST", url, body=form.encode(), content_type=FORM + "; charset=UTF-8")
    assert header_params(header)["oauth_signature"] == expected_signature(
        header, "POST", NETSUITE_URL, form=form, consumer_secret=CONSUMER[1], token_secret=TOKEN[1]
    )
    nonce, timestamp = "n0nce-1", 1_800_000_000
    as_json = signer.authorization(
        "POST", url, body=b'{"a": "b=c"}', content_type="application/json", nonce=nonce, timestamp=timestamp
    )
    no_body = signer.authorization("POST", url, nonce=nonce, timestamp=timestamp)
    assert as_json == no_body


def test_each_attempt_gets_a_fresh_nonce_and_caller_authorization_wins() -> None:
    signer = signer_for(connection(OAUTH1), OAUTH1_TEMPLATE, integration())
    target = Target(url=URL("https://api.example.com/x?y=1", encoded=True), headers=CIMultiDict(), decompress=False)
    first = signed_headers(signer, "GET", target, None)["Authorization"]
    second = signed_headers(signer, "GET", target, None)["Authorization"]
    assert header_params(first)["oauth_nonce"] != header_params(second)["oauth_nonce"]
    for header in (first, second):
        assert header_params(header)["oauth_signature"] == expected_signature(
            header, "GET", str(target.url), consumer_secret=CONSUMER[1], token_secret=TOKEN[1]
        )
    assert "Authorization" not in target.headers  # the target is left as built, for the next attempt
    own = Target(url=target.url, headers=CIMultiDict({"Authorization": "Bearer mine"}), decompress=False)
    assert signed_headers(signer, "GET", own, None)["Authorization"] == "Bearer mine"
    assert signed_headers(None, "GET", target, None) is target.headers


def test_the_consumer_comes_from_the_connection_before_the_integration() -> None:
    overridden = {**TBA, "config_override": {"client_id": "own-key", "client_secret": "own-secret"}}
    signer = signer_for(connection(overridden, {"accountId": "a1"}), None, integration())
    assert (signer.consumer_key, signer.consumer_secret) == ("own-key", "own-secret")
    # An imported TBA connection may carry the client in its configuration, as Nango copies it there.
    configured = {"accountId": "a1", "oauth_client_id": "cfg-key", "oauth_client_secret": "cfg-secret"}
    signer = signer_for(connection(TBA, configured), None, integration())
    assert (signer.consumer_key, signer.consumer_secret) == ("cfg-key", "cfg-secret")
    signer = signer_for(connection(TBA, {"accountId": "a1"}), None, integration())
    assert (signer.consumer_key, signer.consumer_secret) == CONSUMER
    o1_override = {**OAUTH1, "config_override": {"client_id": "o1-key", "client_secret": "o1-secret"}}
    signer = signer_for(connection(o1_override), OAUTH1_TEMPLATE, integration())
    assert (signer.consumer_key, signer.consumer_secret) == ("o1-key", "o1-secret")
    assert (signer.token, signer.token_secret) == TOKEN


def _refusal(credentials: dict[str, Any], config: dict[str, Any], *, template: Any = None, **client: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        signer_for(connection(credentials, config), template, integration(**client))
    assert caught.value.status == 400
    for secret in (CONSUMER[1], TOKEN[1]):
        assert secret not in str(caught.value.message)
    return caught.value


def test_what_cannot_be_signed_is_refused_before_anything_is_sent() -> None:
    assert _refusal(OAUTH1, {}, key=None, secret=None).code == "unsupported_auth"
    assert _refusal(TBA, {"accountId": "a1"}, secret=None).code == "unsupported_auth"
    assert _refusal(TBA, {}).code == "missing_connection_config"
    assert _refusal(TBA, {"accountId": 'a1", x="y'}).code == "invalid_connection_config"
    md5 = ProviderTemplate.model_validate({"auth_mode": "OAUTH1", "signature_method": "HMAC-MD5"})
    assert _refusal(OAUTH1, {}, template=md5).code == "unsupported_auth"
    rsa = ProviderTemplate.model_validate({"auth_mode": "OAUTH1", "signature_method": "RSA-SHA1"})
    signer = signer_for(connection(OAUTH1), rsa, integration())  # the secret is no RSA key
    target = Target(url=URL("https://api.example.com/x"), headers=CIMultiDict(), decompress=False)
    with pytest.raises(ApiError) as caught:
        signed_headers(signer, "GET", target, None)
    assert caught.value.code == "unsupported_auth"
    assert CONSUMER[1] not in str(caught.value.message)


def test_no_secret_in_the_signers_repr() -> None:
    signer = signer_for(connection(TBA, {"accountId": "a1"}), None, integration())
    shown = repr(signer)
    assert "HMAC-SHA256" in shown
    for secret in (*CONSUMER, *TOKEN):
        assert secret not in shown
