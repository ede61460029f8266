"""Redacted HTTP excerpts for activity messages: a URL without its secrets, a body of at most 4 KB.

Producers build excerpts with these before publishing, and the activity log applies them again on
the way in: a log must never become the place a leaked secret is kept.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..events import HttpExcerpt
from ..logging import REDACTED, is_secret_key, redact

__all__ = ["MAX_BODY_BYTES", "body_excerpt", "http_excerpt", "redacted_text", "redacted_url"]

MAX_BODY_BYTES = 4096
_URL = re.compile(r"https?://[^\s\"'<>]+")


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
    return str(redact(text))


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
            return _cut(str(redact(body)), limit)
        body = parsed
    return _cut(json.dumps(redact(body), separators=(",", ":"), default=str), limit)


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
