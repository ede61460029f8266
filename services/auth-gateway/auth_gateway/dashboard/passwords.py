"""The admin's password hash: scrypt (the default) or PBKDF2-SHA256, both from ``hashlib``.

The format is colon-separated, ``scrypt:<n>:<r>:<p>:<salt>:<hash>`` or
``pbkdf2_sha256:<iterations>:<salt>:<hash>`` (salt and hash in base64), so it needs no quoting in a
shell, a systemd unit or a compose file (where ``$`` would be read as a variable).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

__all__ = ["PasswordHashError", "hash_password", "verify_password"]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1  # OWASP's minimum for scrypt (16 MiB of memory)
_PBKDF2_MIN_ITERATIONS = 100_000
_DUMMY = "scrypt:16384:8:1:AAAAAAAAAAAAAAAAAAAAAA==:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


class PasswordHashError(ValueError):
    """The configured hash is not in a format we know."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt:{_SCRYPT_N}:{_SCRYPT_R}:{_SCRYPT_P}:{_b64(salt)}:{_b64(digest)}"


def _digest(password: str, encoded: str) -> tuple[bytes, bytes]:
    """(computed, expected) for a stored hash; raises PasswordHashError when it cannot be read."""
    parts = encoded.strip().split(":")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt, expected = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
            maxmem = 128 * n * r * p + 1024 * 1024  # enough for the parameters given, bounded by them
            computed = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=maxmem)
            return computed, expected
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            iterations = int(parts[1])
            if iterations < _PBKDF2_MIN_ITERATIONS:
                raise PasswordHashError(f"pbkdf2_sha256 needs at least {_PBKDF2_MIN_ITERATIONS} iterations")
            salt, expected = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
            computed = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, dklen=len(expected))
            return computed, expected
    except (ValueError, binascii.Error) as exc:
        if isinstance(exc, PasswordHashError):
            raise
        raise PasswordHashError(f"unreadable password hash: {exc.__class__.__name__}") from None
    raise PasswordHashError("the password hash must start with 'scrypt:' or 'pbkdf2_sha256:'")


def verify_password(password: str, encoded: str | None) -> bool:
    """Constant-time check. With no hash configured the same work is done, then False (no timing oracle)."""
    computed, expected = _digest(password, encoded or _DUMMY)
    return encoded is not None and hmac.compare_digest(computed, expected)
