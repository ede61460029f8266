"""Connect links (redirect mode): the signed outcome the browser carries back to the app's return URL.

The outcome travels in the return URL's query; the app trusts it because of ``signature``:
HMAC-SHA256, keyed by the environment's secret key, over the canonical query — every parameter of
the final URL except ``signature``, as ``key=value`` pairs, each side percent-encoded per RFC 3986
(only ``A-Z a-z 0-9 - _ . ~`` left bare), sorted, joined with ``&``. ``timestamp`` (Unix seconds)
is signed too, so a verifier can refuse an old outcome replayed later. Which return URLs an
environment accepts is ``operations/return_urls`` (the environment's settings check them too).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from aiohttp import web

from keyway_shared.compare import secrets_equal
from keyway_shared.store import Environment

from ..operations.return_urls import return_url_allowed
from .flow_pages import plain_error_page

__all__ = [
    "OUTCOME_PARAMS",
    "OutcomeError",
    "canonical_query",
    "outcome_redirect",
    "outcome_url",
    "sign_query",
    "verify_outcome",
]

OUTCOME_PARAMS = (
    "status",
    "connection_id",
    "provider_config_key",
    "error_type",
    "error_description",
    "timestamp",
    "signature",
)
DEFAULT_MAX_AGE_SECONDS = 300


class OutcomeError(Exception):
    """A redirect outcome that must not be trusted: bad or missing signature, or too old."""


def _enc(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(sorted(f"{_enc(k)}={_enc(v)}" for k, v in pairs if k != "signature"))


def sign_query(pairs: Iterable[tuple[str, str]], secret_key: str) -> str:
    return hmac.new(secret_key.encode(), canonical_query(pairs).encode(), hashlib.sha256).hexdigest()


def outcome_url(
    return_url: str, outcome: Mapping[str, str | None], secret_key: str, *, now: float | None = None
) -> str:
    """``return_url`` with the outcome and its signature added (the app's own parameters kept)."""
    parts = urlsplit(return_url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in OUTCOME_PARAMS]
    pairs += [(k, v) for k, v in outcome.items() if v is not None and k in OUTCOME_PARAMS]
    pairs.append(("timestamp", str(int(time.time() if now is None else now))))
    pairs.append(("signature", sign_query(pairs, secret_key)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs, quote_via=quote), ""))


def verify_outcome(
    query: str, secret_key: str, *, max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS, now: float | None = None
) -> dict[str, str]:
    """The outcome in a return URL's raw query string, once its signature and age check out."""
    pairs = parse_qsl(query, keep_blank_values=True)
    given = dict(pairs).get("signature", "")
    if not secrets_equal(sign_query(pairs, secret_key), given):
        raise OutcomeError("The signature does not match.")
    params = dict(pairs)
    try:
        age = (time.time() if now is None else now) - int(params.get("timestamp", ""))
    except ValueError:
        raise OutcomeError("The timestamp is missing or malformed.") from None
    if abs(age) > max_age_seconds:
        raise OutcomeError("The outcome is too old.")
    return params


def outcome_redirect(
    env: Environment,
    return_url: str,
    *,
    provider_config_key: str | None,
    connection_id: str | None,
    error_type: str | None = None,
    error_description: str | None = None,
) -> web.Response:
    """Send the whole tab back to the app with the signed outcome (303, so a form POST becomes a GET)."""
    if not return_url_allowed(return_url, env.allowed_return_urls):  # the list may have changed since
        return plain_error_page("The app's return URL is no longer allowed by its environment.", status=403)
    outcome = {
        "status": "error" if error_type else "success",
        "connection_id": connection_id,
        "provider_config_key": provider_config_key,
        "error_type": error_type,
        "error_description": error_description[:500] if error_description else None,
    }
    location = outcome_url(return_url, outcome, env.secret_key)
    return web.Response(
        status=303, headers={"Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )
