"""AES-256-GCM encryption of credentials at rest, with key rotation.

A ciphertext is ``kw1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>``. The key id is the first 8 hex
characters of SHA-256 of the key, so it names a key without revealing it, and a reader holding
several keys picks the right one. New ciphertexts are always written with the current key; the
older ones stay readable until everything has been re-encrypted and the old key is dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["CredentialCipher", "DecryptionError", "generate_key", "key_id"]

_PREFIX = "kw1"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext could not be read: unknown key id, wrong format, or tampered with."""


def generate_key() -> str:
    """A fresh base64 key of 32 random bytes, for ``KEYWAY_ENCRYPTION_KEY``."""
    return base64.b64encode(os.urandom(32)).decode()


def _decode_key(key_b64: str) -> bytes:
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("an encryption key must be base64") from exc
    if len(raw) != 32:
        raise ValueError("an encryption key must be 32 bytes (AES-256)")
    return raw


def key_id(raw_key: bytes) -> str:
    return hashlib.sha256(raw_key).hexdigest()[:8]


class CredentialCipher:
    """Encrypts with one key, decrypts with any of the configured ones."""

    def __init__(self, *, current_key: str, old_keys: Iterable[str] = ()) -> None:
        current = _decode_key(current_key)
        self._current_id = key_id(current)
        self._keys: dict[str, AESGCM] = {self._current_id: AESGCM(current)}
        for old in old_keys:
            raw = _decode_key(old)
            self._keys.setdefault(key_id(raw), AESGCM(raw))

    @property
    def current_key_id(self) -> str:
        return self._current_id

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id this cipher can read: the current key's and the old ones'."""
        return frozenset(self._keys)

    def encrypt(self, plaintext: bytes, *, associated_data: bytes | None = None) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(nonce, plaintext, associated_data)
        return f"{_PREFIX}:{self._current_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, associated_data: bytes | None = None) -> bytes:
        try:
            prefix, kid, body = token.split(":", 2)
        except ValueError as exc:
            raise DecryptionError("not a Keyway ciphertext") from exc
        if prefix != _PREFIX:
            raise DecryptionError(f"unsupported ciphertext version {prefix!r}")
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptionError(f"no key with id {kid} is configured")
        try:
            blob = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecryptionError("ciphertext is not valid base64") from exc
        if len(blob) <= _NONCE_BYTES:
            raise DecryptionError("ciphertext is too short")
        try:
            return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data)
        except InvalidTag as exc:
            raise DecryptionError("ciphertext failed authentication (tampered or wrong key)") from exc

    def key_id_of(self, token: str) -> str | None:
        parts = token.split(":", 2)
        return parts[1] if len(parts) == 3 and parts[0] == _PREFIX else None

    def encrypt_json(self, value: Any, *, associated_data: bytes | None = None) -> str:
        return self.encrypt(json.dumps(value, separators=(",", ":")).encode(), associated_data=associated_data)

    def decrypt_json(self, token: str, *, associated_data: bytes | None = None) -> Any:
        return json.loads(self.decrypt(token, associated_data=associated_data))
