"""keyway_client.verify_webhook: Standard Webhooks signed by the ``standardwebhooks`` library itself,
and Nango's two headers (``X-Nango-Hmac-Sha256`` keyed by the webhook signing key, ``X-Nango-Signature``
by the secret key), each accepted when right and refused when anything is off."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from keyway_client import WebhookVerificationError, verify_webhook

SECRET_KEY = "0b1c7f3e-5d3a-4c55-9f0e-2a4b6c8d0e1f"
SIGNING_KEY = "7d2e9a41-0c6b-4f1d-8e3a-5b9c2d4f6a80"  # the environment's webhook signing key
BODY = (
    b'{"from":"nango","type":"auth","connectionId":"c-1","providerConfigKey":"ph","authMode":"API_KEY",'
    b'"provider":"posthog","environment":"dev","operation":"creation","success":true}'
)


def new_key() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def standard_headers(key: str, *, body: bytes = BODY, at: float | None = None, msg_id: str = "msg_1") -> dict[str, str]:
    """Headers as the standardwebhooks library signs them."""
    sent = datetime.fromtimestamp(int(time.time() if at is None else at), UTC)
    signature = Webhook(key).sign(msg_id, sent, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(sent.timestamp())), "webhook-signature": signature}


def nango_headers(body: bytes = BODY, secret: str = SECRET_KEY, signing_key: str = SIGNING_KEY) -> dict[str, str]:
    return {
        "X-Nango-Signature": hashlib.sha256(secret.encode() + body).hexdigest(),
        "X-Nango-Hmac-Sha256": hmac.new(signing_key.encode(), body, hashlib.sha256).hexdigest(),
    }


def test_standard_webhooks_signature_from_the_reference_library() -> None:
    key = new_key()
    payload = verify_webhook(BODY, standard_headers(key), signing_keys=[key])
    assert payload["connectionId"] == "c-1"
    # any header case, as web frameworks hand them over
    upper = {k.upper(): v for k, v in standard_headers(key).items()}
    assert verify_webhook(BODY, upper, signing_keys=[key]) == payload
    # a key without its prefix is the same key
    assert verify_webhook(BODY, standard_headers(key), signing_keys=[key.removeprefix("whsec_")]) == payload


def test_standard_webhooks_during_a_key_rotation() -> None:
    old, new = new_key(), new_key()
    both = standard_headers(old)
    both["webhook-signature"] += " " + standard_headers(new)["webhook-signature"]  # the sender signs with both
    assert verify_webhook(BODY, both, signing_keys=[new])["success"] is True
    assert verify_webhook(BODY, standard_headers(old), signing_keys=[new, old])["success"] is True
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_webhook(BODY, standard_headers(old), signing_keys=[new])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: h | {"webhook-timestamp": str(int(time.time()) - 301)}, "tolerance"),  # signed 301 s ago
        (lambda h: h | {"webhook-timestamp": str(int(time.time()) + 301)}, "tolerance"),  # from the future
        (lambda h: h | {"webhook-timestamp": "yesterday"}, "not a number"),
        (lambda h: h | {"webhook-id": "msg_2"}, "no webhook-signature matches"),  # replayed under another id
        (lambda h: {k: v for k, v in h.items() if k != "webhook-id"}, "incomplete"),
        (lambda h: h | {"webhook-signature": "v2," + h["webhook-signature"][3:]}, "no webhook-signature matches"),
        (lambda h: h | {"webhook-signature": "v1,not*base64"}, "no webhook-signature matches"),
    ],
)
def test_standard_webhooks_refusals(change: Callable[[dict[str, str]], dict[str, str]], reason: str) -> None:
    key = new_key()
    headers = change(standard_headers(key))
    with pytest.raises(WebhookVerificationError, match=reason):
        verify_webhook(BODY, headers, signing_keys=[key])


def test_standard_webhooks_timestamp_tolerance_is_adjustable() -> None:
    key = new_key()
    stale = standard_headers(key, at=time.time() - 3600)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, stale, signing_keys=[key])
    assert verify_webhook(BODY, stale, signing_keys=[key], tolerance=7200)["type"] == "auth"


def test_standard_webhooks_tampered_body() -> None:
    key = new_key()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY.replace(b"c-1", b"c-2"), standard_headers(key), signing_keys=[key])


def test_nango_hmac_header() -> None:
    headers = nango_headers()
    assert verify_webhook(BODY, headers, webhook_signing_key=SIGNING_KEY)["provider"] == "posthog"
    with pytest.raises(WebhookVerificationError, match="X-Nango-Hmac-Sha256"):
        verify_webhook(BODY, headers, webhook_signing_key="another-key")
    with pytest.raises(WebhookVerificationError, match="X-Nango-Hmac-Sha256"):
        verify_webhook(BODY, headers, webhook_signing_key=SECRET_KEY)  # not keyed by the secret key
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY + b" ", headers, webhook_signing_key=SIGNING_KEY)
    upper_hex = {"x-nango-hmac-sha256": headers["X-Nango-Hmac-Sha256"].upper()}
    assert verify_webhook(BODY, upper_hex, webhook_signing_key=SIGNING_KEY)["success"] is True


def test_the_secret_key_alone_checks_the_legacy_header() -> None:
    """A 2024 receiver holds the secret key only: the HMAC header is not its to check, the legacy one is."""
    headers = nango_headers()
    assert verify_webhook(BODY, headers, secret_key=SECRET_KEY)["provider"] == "posthog"
    with pytest.raises(WebhookVerificationError, match="X-Nango-Signature"):
        verify_webhook(BODY, headers, secret_key=SIGNING_KEY)
    with pytest.raises(WebhookVerificationError, match="no signature header"):
        verify_webhook(BODY, headers, secret_key=SECRET_KEY, allow_legacy=False)


def test_nango_legacy_header_and_its_opt_out() -> None:
    legacy = {"X-Nango-Signature": nango_headers()["X-Nango-Signature"]}
    assert verify_webhook(BODY, legacy, secret_key=SECRET_KEY)["operation"] == "creation"
    with pytest.raises(WebhookVerificationError, match="X-Nango-Signature"):
        verify_webhook(BODY, legacy, secret_key="another-secret")
    with pytest.raises(WebhookVerificationError, match="no signature header"):
        verify_webhook(BODY, legacy, secret_key=SECRET_KEY, allow_legacy=False)


def test_the_strongest_header_present_decides() -> None:
    key = new_key()
    # a wrong HMAC is not rescued by a right legacy signature
    mixed = nango_headers() | {"X-Nango-Hmac-Sha256": "0" * 64}
    with pytest.raises(WebhookVerificationError, match="X-Nango-Hmac-Sha256"):
        verify_webhook(BODY, mixed, secret_key=SECRET_KEY, webhook_signing_key=SIGNING_KEY)
    # a wrong Standard Webhooks signature is not rescued by right Nango headers
    everything = nango_headers() | standard_headers(new_key())
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_webhook(BODY, everything, secret_key=SECRET_KEY, webhook_signing_key=SIGNING_KEY, signing_keys=[key])
    # without whsec_ keys, the Nango headers are what can be checked
    assert verify_webhook(BODY, everything, webhook_signing_key=SIGNING_KEY)["connectionId"] == "c-1"
    assert verify_webhook(BODY, everything, secret_key=SECRET_KEY)["connectionId"] == "c-1"


def test_nothing_to_check_and_misuse() -> None:
    with pytest.raises(WebhookVerificationError, match="no signature header"):
        verify_webhook(BODY, {"Content-Type": "application/json"}, secret_key=SECRET_KEY)
    with pytest.raises(WebhookVerificationError, match="no signature header"):
        verify_webhook(BODY, nango_headers(), signing_keys=[new_key()])  # Nango headers need the secret key
    with pytest.raises(ValueError, match="signing_keys, webhook_signing_key, secret_key"):
        verify_webhook(BODY, nango_headers())
    with pytest.raises(ValueError, match="whsec_"):
        verify_webhook(BODY, standard_headers(new_key()), signing_keys=["whsec_***"])


def test_signed_but_not_a_json_object() -> None:
    for body in (b"not json", b"[1,2]"):
        with pytest.raises(WebhookVerificationError, match="JSON"):
            verify_webhook(body, nango_headers(body), secret_key=SECRET_KEY)
