"""The Activity pages' reads, over the same queries ``GET /logs/operations`` answers with
(``keyway_shared.activity``): filters, whole-word search, a stable cursor; plus the per-integration
success and failure counts the chart draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from keyway_shared.activity import Cursor, OperationFilter, get_operation, list_operations, window_filters, words
from keyway_shared.events import utcnow
from keyway_shared.store import Database

__all__ = [
    "OPERATION_TYPES",
    "RANGES",
    "STATES",
    "Series",
    "activity_filter",
    "get_operation",
    "list_operations",
    "outcome_series",
    "parse_cursor",
    "search_words",
]

STATES = ("waiting", "running", "success", "failed", "timeout")
OPERATION_TYPES = (
    "auth:create_connection",
    "auth:refresh_token",
    "auth:revoke_connection",
    "webhook:outgoing",
    "proxy",
    "admin:update_connection",
    "admin:delete_connection",
    "admin:reveal_credentials",
    "admin:reveal_secret",
)
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "15d": timedelta(days=15)}
_TERMINAL = ("success", "failed", "timeout")
_CHART_CAP = 20_000  # operations read for one chart at most


def search_words(text: str) -> tuple[str, ...]:
    """The words the search looks for (as ``/logs`` reads its ``search``): whole words, any case."""
    return tuple(words(text, limit=20))


def activity_filter(
    environment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    type: str = "",
    state: str = "",
    integration: str = "",
    connection: str = "",
    q: str = "",
) -> OperationFilter:
    return OperationFilter(
        environment=environment,
        since=since,
        until=until,
        types=(type,) if type else (),
        states=(state,) if state else (),
        integrations=(integration,) if integration else (),
        connections=(connection,) if connection else (),
        words=search_words(q),
    )


def parse_cursor(value: str) -> Cursor | None:
    try:
        return Cursor.decode(value)
    except ValueError:
        return None


@dataclass(frozen=True, kw_only=True)
class Series:
    """One integration's outcomes per time bucket, oldest bucket first."""

    integration: str
    succeeded: list[int]
    failed: list[int]

    @property
    def total_succeeded(self) -> int:
        return sum(self.succeeded)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)


async def outcome_series(
    db: Database, f: OperationFilter, *, buckets: int = 24
) -> tuple[datetime, datetime, list[Series]]:
    """Successes and failures (failed or timed out) per integration over the filter's time range.

    A person's own steps (``admin:`` reveals, edits) are no outcome of the integration and are left
    out unless the filter asks for such a type.
    """
    until = f.until or utcnow()
    since = f.since or until - RANGES["24h"]
    scope = OperationFilter(
        environment=f.environment,
        types=f.types,
        states=_TERMINAL,
        integrations=f.integrations,
        connections=f.connections,
    )
    width = max((until - since).total_seconds() / buckets, 1.0)
    series: dict[str, Series] = {}
    read = 0
    projection = {"provider_config_key": 1, "state": 1, "created_at": 1, "type": 1, "environment": 1}
    for query in window_filters(scope, since, until):
        async for doc in db["activity_operations"].find(query, projection).limit(_CHART_CAP):
            read += 1
            if not _counts(doc, scope):
                continue
            key = str(doc["provider_config_key"])
            at: datetime = doc["created_at"]
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            index = min(max(int((at - since).total_seconds() // width), 0), buckets - 1)
            entry = series.setdefault(key, Series(integration=key, succeeded=[0] * buckets, failed=[0] * buckets))
            (entry.succeeded if doc["state"] == "success" else entry.failed)[index] += 1
        if read >= _CHART_CAP:
            break
    return since, until, [series[k] for k in sorted(series)]


def _counts(doc: dict[str, Any], scope: OperationFilter) -> bool:
    if doc.get("environment") != scope.environment or not doc.get("provider_config_key"):
        return False
    if doc.get("state") not in _TERMINAL:
        return False
    kind = str(doc.get("type", ""))
    if scope.types:
        return kind in scope.types
    return not kind.startswith("admin:")
