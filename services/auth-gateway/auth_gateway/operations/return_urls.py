"""Which return URLs an environment accepts for its connect links (redirect mode).

A return URL is where a connect link's flow sends the whole tab back, with the signed outcome
(``connect/link_outcome``). The environment lists the allowed ones (``PATCH /environment``, the
dashboard), each checked by :func:`return_url_problem`; a link's URL must fall under one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["return_url_allowed", "return_url_problem"]


def return_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a return URL at all (before the allowed list is consulted), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "it is not a valid URL"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "it must be an absolute http(s) URL"
    if parts.username or parts.password:
        return "it must not carry credentials"
    if parts.fragment:
        return "it must not have a fragment"
    if "\\" in url or any(seg in {".", ".."} for seg in parts.path.split("/")) or "%2e" in parts.path.lower():
        return "its path must not contain dot segments or backslashes"
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def return_url_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Same origin as an allowed URL, and a path equal to its path or under it (segment-wise)."""
    if return_url_problem(url) is not None:
        return False
    path = urlsplit(url).path or "/"
    for candidate in allowed:
        if return_url_problem(candidate) is not None or _origin(candidate) != _origin(url):
            continue
        prefix = urlsplit(candidate).path or "/"
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return True
    return False
