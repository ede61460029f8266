"""Webhook signatures: Nango's two headers and the Standard Webhooks scheme.

- ``X-Nango-Signature``: hex SHA-256 of ``secret_key + body`` (Nango's 2024 scheme, for compatibility).
- ``X-Nango-Hmac-Sha256``: hex HMAC-SHA256 of the body keyed by the environment's webhook signing key
  (the secret key before Nango gave environments their own signing key).
- ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``: Standard Webhooks, ``v1,<base64>``
  HMAC-SHA256 over ``id.timestamp.body`` with a ``whsec_`` key; several keys sign during a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from functools import lru_cache

from .compare import secrets_equal

__all__ = [
    "generate_signing_key",
    "nango_hmac_signature",
    "nango_signature",
    "standard_signature",
    "verify_nango_hmac",
    "verify_nango_signature",
]


def nango_signature(secret_key: str, body: bytes) -> str:
    return hashlib.sha256(secret_key.encode() + body).hexdigest()


def nango_hmac_signature(secret_key: str, body: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, the same value as hmac.new(...) without the Python object
    return hmac.digest(secret_key.encode(), body, "sha256").hex()


def verify_nango_signature(secret_key: str, body: bytes, signature: str) -> bool:
    return secrets_equal(nango_signature(secret_key, body), signature.strip().lower())


def verify_nango_hmac(secret_key: str, body: bytes, signature: str) -> bool:
    return secrets_equal(nango_hmac_signature(secret_key, body), signature.strip().lower())


def generate_signing_key() -> str:
    """A Standard Webhooks key: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@lru_cache(maxsize=1024)  # an environment's one or two live keys, decoded once rather than per webhook
def _key_bytes(key: str) -> bytes:
    return base64.b64decode(key.removeprefix("whsec_"))


def standard_signature(keys: Iterable[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,<sig>`` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = ["v1," + base64.b64encode(hmac.digest(_key_bytes(key), signed, "sha256")).decode() for key in keys]
    return " ".join(parts)
