"""Checking that a webhook came from Keyway, with any of the three signatures it sends.

Strongest first, and the strongest one present is the one that decides (a request whose
Standard Webhooks signature fails is refused even if a Nango header matches):

1. Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` (``v1,<base64>``
   HMAC-SHA256 of ``id.timestamp.body``, one per ``whsec_`` key during a rotation), within
   ``tolerance`` seconds of now. Needs ``signing_keys``.
2. ``X-Nango-Hmac-Sha256``: hex HMAC-SHA256 of the body keyed by the environment's webhook signing key
   (``GET /environment``'s ``webhook_signing_key``; Nango's ``webhookSigningKey``). Needs
   ``webhook_signing_key``. An environment created before it existed signs with a copy of its secret
   key until the signing key is rotated.
3. ``X-Nango-Signature``: hex SHA-256 of ``secret_key + body``, Nango's 2024 scheme, still keyed by the
   secret key. A plain hash of a secret prefix is open to length extension, so ``allow_legacy=False``
   refuses it.

Every comparison is constant-time. The signed bytes are the body as received: pass the raw body,
not a re-serialised one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import WebhookVerificationError

__all__ = ["verify_webhook"]


def _standard_key(key: str) -> bytes:
    text = key.removeprefix("whsec_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing key is 'whsec_' followed by base64") from None


def _check_standard(body: bytes, headers: Mapping[str, str], keys: Sequence[str], tolerance: float) -> None:
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError("incomplete Standard Webhooks headers")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number of seconds") from None
    if abs(time.time() - sent_at) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    signed = f"{msg_id}.{sent_at}.".encode() + body
    expected = [hmac.new(_standard_key(key), signed, hashlib.sha256).digest() for key in keys]
    matched = False
    for item in signatures.split():
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for digest in expected:  # no early exit: the time taken does not say which key matched
            matched |= hmac.compare_digest(digest, given)
    if not matched:
        raise WebhookVerificationError("no webhook-signature matches the signing keys")


def _check_hex(expected: str, given: str, header: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise WebhookVerificationError(f"{header} does not match")


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secret_key: str | None = None,
    signing_keys: Sequence[str] | None = None,
    webhook_signing_key: str | None = None,
    tolerance: float = 300,
    allow_legacy: bool = True,
) -> dict[str, Any]:
    """Return the webhook's JSON payload if its signature is Keyway's; raise WebhookVerificationError if not.

    ``headers`` may use any case (a dict from any web framework). Give any of ``signing_keys`` (the
    environment's ``whsec_`` keys), ``webhook_signing_key`` (its Nango webhook signing key) and
    ``secret_key`` (its secret key); each checks its own header.
    """
    if not secret_key and not signing_keys and not webhook_signing_key:
        raise ValueError("give signing_keys, webhook_signing_key, secret_key, or several")
    lowered = {k.lower(): v for k, v in headers.items()}
    if signing_keys and "webhook-signature" in lowered:
        _check_standard(body, lowered, signing_keys, tolerance)
    elif webhook_signing_key and "x-nango-hmac-sha256" in lowered:
        expected = hmac.new(webhook_signing_key.encode(), body, hashlib.sha256).hexdigest()
        _check_hex(expected, lowered["x-nango-hmac-sha256"], "X-Nango-Hmac-Sha256")
    elif secret_key and allow_legacy and "x-nango-signature" in lowered:
        _check_hex(
            hashlib.sha256(secret_key.encode() + body).hexdigest(), lowered["x-nango-signature"], "X-Nango-Signature"
        )
    else:
        raise WebhookVerificationError("no signature header this verifier can check")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the signed body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the signed body is not a JSON object")
    return payload
