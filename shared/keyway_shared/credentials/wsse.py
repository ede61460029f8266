"""WSSE UsernameToken headers (the SIGNATURE mode; Emarsys's ``X-WSSE``), as Nango's ``signature.ts``
makes them: a random nonce, the creation time, and the password digested with both.

    PasswordDigest = base64(hex(sha1(nonce + created + password)))

(the base64 of the hexadecimal digest's text, not of the digest's bytes: what Emarsys documents and
checks). The provider refuses a token whose ``Created`` is too old or whose nonce it has seen, so
the proxy makes a new one for every request.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime

__all__ = ["password_digest", "wsse_token"]


def _created(now: datetime) -> str:
    """JavaScript's ``toISOString()``: UTC, milliseconds, ``Z``."""
    moment = now.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def password_digest(nonce: str, created: str, password: str) -> str:
    hex_digest = hashlib.sha1((nonce + created + password).encode()).hexdigest()  # noqa: S324 # WSSE's digest
    return base64.b64encode(hex_digest.encode()).decode("ascii")


def wsse_token(username: str, password: str, *, now: datetime, nonce: str | None = None) -> str:
    """``UsernameToken Username="…", PasswordDigest="…", Nonce="…", Created="…"``."""
    nonce = nonce or secrets.token_hex(16)
    created = _created(now)
    digest = password_digest(nonce, created, password)
    return f'UsernameToken Username="{username}", PasswordDigest="{digest}", Nonce="{nonce}", Created="{created}"'
