"""When and how long the proxy waits before calling an upstream again (spec §3.4).

The caller opts in with ``Retries`` (how many more attempts) and ``Retry-On`` (extra statuses).
Server errors, 429, GitHub-style exhausted rate limits and failed connections are retried; the
wait is the provider's own hint when it gives one (the longest of the template's
``proxy.retry.at``/``.after`` headers present, else ``Retry-After``), else exponential backoff with
jitter. One wait is capped, and a wait that would overrun the call's deadline is not taken: the
caller gets the answer in hand.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from keyway_shared.providers.template import ProxyRetry

__all__ = ["MAX_RETRIES", "RetryPolicy", "header_delay", "parse_retries", "parse_retry_on"]

MAX_RETRIES = 10
_EPOCH_THRESHOLD = 1_000_000_000  # an "at" header below this is seconds from now, not a Unix time
_MS_EPOCH_THRESHOLD = 31_536_000_000  # from here on, milliseconds (Nango: a date after 1971 read as ms)


def parse_retries(value: str | None) -> int:
    """``Retries``: a count, 0 when absent or not a number (as Nango's ``Number()`` then ``> 0``)."""
    try:
        return max(0, min(int((value or "0").strip()), MAX_RETRIES))
    except ValueError:
        return 0


def parse_retry_on(value: str | None) -> frozenset[int]:
    """``Retry-On: 409, 423``: statuses worth another attempt; what is not a status is ignored."""
    codes: set[int] = set()
    for part in (value or "").split(","):
        part = part.strip()
        if part.isdigit() and 100 <= int(part) <= 599:
            codes.add(int(part))
    return frozenset(codes)


def _seconds(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def _retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP date."""
    seconds = _seconds(value)
    if seconds is not None or not value:
        return seconds
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _at(value: str, *, now: float) -> float | None:
    """An ``at`` header: a Unix time in seconds or milliseconds (Nango tells them apart by size), a
    date, or (below the epoch threshold) seconds from now; the wait until then."""
    number = _seconds(value)
    if number is None:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return _retry_after(value, now=now)  # an HTTP date, or nothing readable
        return max(0.0, (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() - now)
    if number >= _MS_EPOCH_THRESHOLD:
        number /= 1000.0
    return max(0.0, number - now) if number >= _EPOCH_THRESHOLD else number


def _longest(waits: Iterable[float | None]) -> float | None:
    found = [wait for wait in waits if wait is not None]
    return max(found) if found else None


def header_delay(headers: Mapping[str, str], hint: ProxyRetry | None, *, now: float | None = None) -> float | None:
    """The wait the upstream asks for, if it says; ``headers`` must look names up case-insensitively.

    Of the template's ``at`` headers (else its ``after`` ones) every one the answer carries is read
    and the longest wait is kept, as Nango's proxy does (Affinity's per-user and per-organization
    resets: a call before both have passed would fail again); none readable falls through to the
    other kind of hint, then ``Retry-After``."""
    now = time.time() if now is None else now
    if hint is not None and hint.at:
        at = _longest(_at(headers[name], now=now) for name in hint.at if name in headers)
        if at is not None:
            return at
    if hint is not None and hint.after:
        after = _longest(_retry_after(headers[name], now=now) for name in hint.after if name in headers)
        if after is not None:
            return after
    return _retry_after(headers.get("Retry-After"), now=now)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    retries: int = 0
    retry_on: frozenset[int] = field(default_factory=frozenset)
    base_delay: float = 0.2
    max_delay: float = 60.0

    def retryable_status(self, status: int, headers: Mapping[str, str]) -> bool:
        if status >= 500 or status == 429 or status in self.retry_on:
            return True
        # GitHub signals an exhausted rate limit with 403 and a zero remaining count.
        return status == 403 and headers.get("X-RateLimit-Remaining", "").strip() == "0"

    def backoff(self, attempt: int) -> float:
        """Exponential from ``base_delay`` (attempt 0 is the first retry), between half and all of it."""
        ceiling = min(self.max_delay, self.base_delay * 2.0**attempt)
        return ceiling * random.uniform(0.5, 1.0)

    def delay_after_response(self, attempt: int, headers: Mapping[str, str], hint: ProxyRetry | None) -> float | None:
        """How long to wait before the next attempt; None when the upstream asks for more than we allow."""
        asked = header_delay(headers, hint)
        if asked is None:
            return self.backoff(attempt)
        return asked if asked <= self.max_delay else None
