"""Redacted HTTP excerpts for activity messages: a URL without its secrets, a body of at most 4 KB.

Producers build excerpts with these before publishing, and the activity log applies them again on
the way in: a log must never become the place a leaked secret is kept.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..events import HttpExcerpt
from ..logging import REDACTED, is_secret_key, redact

__all__ = ["MAX_BODY_BYTES", "body_excerpt", "http_excerpt", "redact_fast", "redacted_text", "redacted_url"]

MAX_BODY_BYTES = 4096
_URL = re.compile(r"https?://[^\s\"'<>]+")


_secret_name = functools.lru_cache(maxsize=4096)(is_secret_key)


def _may_hold_secret(text: str) -> bool:
    # What every value pattern of keyway_shared.logging needs at least: "=" (key=value), ":" (JSON
    # pairs, kw1: ciphertexts), "whsec_", or a bearer/basic scheme. Most ids and names have none.
    if "=" in text or ":" in text or "whsec_" in text:
        return True
    lower = text.lower()
    return "bearer" in lower or "basic" in lower


def redact_fast(value: Any, *, depth: int = 0) -> Any:
    """What ``keyway_shared.logging.redact`` returns, without running its patterns on strings none can match.

    Ingest redacts every field of every event: the shortcut keeps that affordable.
    """
    if depth > 12:
        return REDACTED
    if isinstance(value, str):
        return str(redact(value)) if _may_hold_secret(value) else value
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _secret_name(k) and v not in (None, "")
                else redact_fast(v, depth=depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_fast(item, depth=depth + 1) for item in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(value, depth=depth)


def redacted_url(url: str) -> str:
    """``url`` with user:password and every secret-named query parameter (code, token, …) masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return str(redact(url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, REDACTED if is_secret_key(k) and v else v) for k, v in pairs], safe="[]")
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment and REDACTED))
    return str(redact(rebuilt))  # also masks bearer-looking values under innocent names


def redacted_text(text: str) -> str:
    """Free text with the URLs in it redacted as URLs, then the usual secret-looking values masked."""
    if "://" in text:
        text = _URL.sub(lambda m: redacted_url(m.group()), text)
    return str(redact_fast(text))


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def body_excerpt(body: Any, *, limit: int = MAX_BODY_BYTES) -> str | None:
    """A redacted text of ``body`` (JSON-like values, text or bytes), cut to ``limit`` bytes."""
    if body is None or body == "" or body == b"":
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return _cut(str(redact_fast(body)), limit)
        body = parsed
    return _cut(json.dumps(redact_fast(body), separators=(",", ":"), default=str), limit)


def http_excerpt(
    method: str,
    url: str,
    *,
    status: int | None = None,
    duration_ms: float | None = None,
    body: Any = None,
) -> HttpExcerpt:
    return HttpExcerpt(
        method=method.upper(),
        url=redacted_url(url),
        status=status,
        duration_ms=round(duration_ms, 3) if duration_ms is not None else None,
        body=body_excerpt(body),
    )
