"""Proxy metrics: calls by provider and what they came to, upstream latency, retries.

Labelled by provider (the catalog bounds it), never by connection or integration key (callers
choose those, without bound).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["PROXY_CALLS", "PROXY_RETRIES", "PROXY_UPSTREAM_SECONDS", "status_class"]

PROXY_CALLS = Counter(
    "keyway_proxy_calls_total",
    "Proxy calls by provider: the status class answered, and 'upstream' or the error code that ended it",
    ["provider", "status_class", "outcome"],
)
PROXY_UPSTREAM_SECONDS = Histogram(
    "keyway_proxy_upstream_seconds",
    "Time until the upstream's response headers, retries and waits included",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PROXY_RETRIES = Counter("keyway_proxy_retries_total", "Upstream attempts made again", ["provider", "reason"])


def status_class(status: int) -> str:
    return f"{status // 100}xx"
