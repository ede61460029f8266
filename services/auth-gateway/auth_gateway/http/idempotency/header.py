"""The ``Idempotency-Key`` header: which routes take it, how its value is read, and which requests are the same."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Protocol

from aiohttp import web

from ..errors import ApiError
from ..route_line import RouteLine

__all__ = [
    "IDEMPOTENCY_KEY",
    "MAX_KEY_LENGTH",
    "IdempotentRouteLine",
    "fingerprint",
    "idempotent_routes",
    "parse_idempotency_key",
]

IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 255  # Stripe's bound


class IdempotentRouteLine(RouteLine, Protocol):
    """A route-table line that says whether its route takes the header (``openapi_spec.Route`` does)."""

    @property
    def takes_idempotency_key(self) -> bool: ...


def idempotent_routes(routes: Iterable[IdempotentRouteLine]) -> frozenset[tuple[str, str]]:
    """(method, path as the router spells it) of the routes that take the header: the secret key's writes.

    ``Route.takes_idempotency_key`` says which, so the OpenAPI document names the same routes.
    """
    return frozenset((r.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path)) for r in routes if r.takes_idempotency_key)


def _invalid(message: str) -> ApiError:
    return ApiError("invalid_idempotency_key", message)


def parse_idempotency_key(values: list[str]) -> str:
    """The key the header carries: a structured-field string (``"…"``, as the draft writes it) or bare text.

    Both spellings of one key are the same key. Printable ASCII only, 1 to 255 characters.
    """
    if len(values) != 1:
        raise _invalid(f"Send one {IDEMPOTENCY_KEY} header.")
    value = values[0].strip(" \t")
    if value.startswith('"'):
        value = _sf_string(value)
    if not value:
        raise _invalid(f"The {IDEMPOTENCY_KEY} header is empty.")
    if len(value) > MAX_KEY_LENGTH:
        raise _invalid(f"The {IDEMPOTENCY_KEY} is longer than {MAX_KEY_LENGTH} characters.")
    if any(not " " <= ch <= "~" for ch in value):
        raise _invalid(f"The {IDEMPOTENCY_KEY} may hold printable ASCII characters only.")
    return value


def _sf_string(text: str) -> str:
    """RFC 8941 §4.2.5: ``"`` … ``"`` with ``\\"`` and ``\\\\`` the only escapes."""
    out: list[str] = []
    index = 1
    while index < len(text):
        ch = text[index]
        if ch == "\\":
            if index + 1 >= len(text) or text[index + 1] not in '"\\':
                raise _invalid(f"The {IDEMPOTENCY_KEY} string has a bad escape.")
            out.append(text[index + 1])
            index += 2
            continue
        if ch == '"':
            if index != len(text) - 1:
                raise _invalid(f"The {IDEMPOTENCY_KEY} has text after its closing quote.")
            return "".join(out)
        out.append(ch)
        index += 1
    raise _invalid(f"The {IDEMPOTENCY_KEY} string has no closing quote.")


def fingerprint(request: web.Request, body: bytes) -> str:
    """What makes two requests the same request: method, path and query, the integration header, body."""
    parts = [
        request.method.encode(),
        request.raw_path.encode(),
        request.headers.get("Provider-Config-Key", "").encode(),
        hashlib.sha256(body).digest(),
    ]
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()
