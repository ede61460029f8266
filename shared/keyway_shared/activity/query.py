"""Reading the activity log: operations newest first under filters and a cursor, one with its messages.

Why windows. The embedded MongoDB-wire server applies ``sort`` and ``limit`` only after it has
fetched every document its index lookup matched, so "the newest 100 of the environment" would read
the whole environment. Each page is therefore read backwards in time windows of one index shape,
``{keys: <facet>, created_at: {$gte, $lt}}`` (or ``{environment, state, created_at}``), that start
small and grow or shrink with the density seen so far; each window costs what it holds, and a
request stops after a bounded amount of work. The facet drives the lookup (the most selective
filter: connection, integration, a search word, a rare state, a type); the other filters are
checked here on what the window returned. On MongoDB proper the same queries are index range scans.

The cursor is the (``created_at``, ``_id``) of the last operation returned, or the boundary of the
last window read; the next page holds what is strictly older. Operations that arrive meanwhile are
newer, so pages neither repeat nor skip. A page may hold fewer than ``limit`` operations (even none)
and still have a cursor when the work budget ran out: read on until the cursor is None.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..store import Database
from .keys import all_key, facet_key, word_key

__all__ = [
    "MAX_MESSAGES",
    "MAX_PAGE",
    "MAX_VALUES",
    "TIME_BUDGET",
    "Cursor",
    "OperationFilter",
    "Page",
    "get_operation",
    "list_operations",
    "window_filters",
]

MAX_PAGE = 500
MAX_VALUES = 20  # per filter, as Nango's log search allows
MAX_MESSAGES = 2000
DEFAULT_SPAN = timedelta(days=31)  # how far back a request without ``since`` looks (retention is 15 days)
_FUTURE = timedelta(minutes=1)  # producers' clocks may run a little ahead
_FIRST_WINDOW = 0.25  # seconds
_GROWTH = 4.0
_WINDOW_BUDGET = 3000  # candidates one window should hold
_REQUEST_BUDGET = 20_000  # candidates one request may read
TIME_BUDGET = 0.5  # seconds of reading per request
_RARE_STATES = frozenset({"waiting", "running", "failed", "timeout"})
_HIDDEN = ("keys", "state_order", "timeout_at")


@dataclass(frozen=True, kw_only=True)
class OperationFilter:
    environment: str
    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    integrations: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()
    words: tuple[str, ...] = ()  # every one must appear (see keys.words)


@dataclass(frozen=True)
class Cursor:
    """Strictly older than (``at_ms``, ``id``); an empty id is a window boundary.

    A boundary cursor also carries the window the next request starts with (``window_ms``), so a
    reader whose every request runs out of budget still moves through sparse history at the pace
    the windows had reached, instead of starting small again each time.
    """

    at_ms: int
    id: str
    window_ms: int = 0

    def encode(self) -> str:
        tail = f":{self.window_ms}" if not self.id and self.window_ms else ""
        return base64.urlsafe_b64encode(f"{self.at_ms}:{self.id}{tail}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            at, _, op_id = raw.partition(":")
            if op_id.startswith(":"):  # a boundary with its next window; ids never start with ':'
                return cls(int(at), "", max(0, int(op_id[1:])))
            return cls(int(at), op_id)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("not a cursor of this API") from None


@dataclass
class Page:
    operations: list[dict[str, Any]]
    cursor: Cursor | None
    windows: int = 0  # queries run, for tests and tuning
    candidates: int = 0
    stopped_by_budget: bool = False


def _ms(at: datetime) -> int:
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _driver(f: OperationFilter) -> tuple[str, list[str]]:
    """Which filter the index lookup follows, and its values (one query each)."""
    env = f.environment
    if f.connections:
        return "keys", [facet_key(env, "connection", v) for v in f.connections]
    if f.integrations:
        return "keys", [facet_key(env, "integration", v) for v in f.integrations]
    if f.words:
        return "keys", [word_key(env, max(f.words, key=len))]  # the longest word is likely the rarest
    if f.states and set(f.states) <= _RARE_STATES:
        return "state", list(f.states)
    if f.types:
        return "keys", [facet_key(env, "type", v) for v in f.types]
    if f.states:
        return "state", list(f.states)
    return "keys", [all_key(env)]


def window_filters(f: OperationFilter, lower: datetime, upper: datetime) -> list[dict[str, Any]]:
    """The queries that read one time window: each an index prefix of equalities, then the range."""
    field_name, values = _driver(f)
    span = {"$gte": lower, "$lt": upper}
    if field_name == "state":
        return [{"environment": f.environment, "state": v, "created_at": span} for v in values]
    return [{"keys": v, "created_at": span} for v in values]


def _matches(doc: dict[str, Any], f: OperationFilter) -> bool:
    if doc.get("environment") != f.environment:
        return False
    for values, name in (
        (f.types, "type"),
        (f.states, "state"),
        (f.integrations, "provider_config_key"),
        (f.connections, "connection_id"),
    ):
        if values and doc.get(name) not in values:
            return False
    if f.words:
        keys = set(doc.get("keys") or ())
        return all(word_key(f.environment, w) in keys for w in f.words)
    return True


def _order(doc: dict[str, Any]) -> tuple[int, str]:
    return _ms(doc["created_at"]), str(doc["_id"])


def _next_window(span: float, candidates: int, matched: int, need: int) -> float:
    """The next window's length in seconds: about what yields ``need`` matches within the budget."""
    by_matches = span * need / matched * 1.25 if matched else span * _GROWTH
    by_budget = span * _WINDOW_BUDGET / candidates if candidates else span * _GROWTH
    return max(min(by_matches, by_budget, span * _GROWTH), span / _GROWTH, 0.001)


async def list_operations(
    db: Database,
    f: OperationFilter,
    *,
    limit: int = 100,
    cursor: Cursor | None = None,
    now: datetime | None = None,
    time_budget: float = TIME_BUDGET,
) -> Page:
    """Up to ``limit`` operations (at most 500), newest first, strictly older than ``cursor``.

    ``time_budget``: seconds of reading after which the page ends early with a boundary cursor. At
    least one window is read whatever the budget, so reading on always makes progress.
    """
    limit = max(1, min(limit, MAX_PAGE))
    now = now or datetime.now(UTC)
    upper_ms = _ms(f.until) if f.until else _ms(now + _FUTURE)
    if cursor is not None:
        upper_ms = min(upper_ms, cursor.at_ms + 1)  # the cursor's own millisecond, then filtered by id
    lower_ms = _ms(f.since) if f.since else upper_ms - int(DEFAULT_SPAN.total_seconds() * 1000)
    collection = db["activity_operations"]
    page = Page(operations=[], cursor=None)
    found: list[dict[str, Any]] = []
    # The first window ends now: beyond it only clock skew lives, read in one go; then small ones.
    skew = (upper_ms - _ms(now)) / 1000
    window = skew if skew > _FIRST_WINDOW else _FIRST_WINDOW
    if cursor is not None and cursor.window_ms:
        window = cursor.window_ms / 1000
    started = time.monotonic()
    while upper_ms > lower_ms and len(found) < limit:
        spent = page.candidates >= _REQUEST_BUDGET or time.monotonic() - started > time_budget
        if page.windows and spent:
            page.stopped_by_budget = True
            break
        window_lower = max(lower_ms, upper_ms - max(1, int(window * 1000)))
        matched: dict[str, dict[str, Any]] = {}
        candidates = 0
        for query in window_filters(f, _from_ms(window_lower), _from_ms(upper_ms)):
            page.windows += 1
            async for doc in collection.find(query):
                candidates += 1
                if _matches(doc, f) and (cursor is None or _order(doc) < (cursor.at_ms, cursor.id)):
                    matched[str(doc["_id"])] = doc
        page.candidates += candidates
        found.extend(sorted(matched.values(), key=_order, reverse=True))
        span = (upper_ms - window_lower) / 1000
        window = _next_window(span, candidates, len(matched), limit - len(found))
        if span == skew and not candidates:
            window = _FIRST_WINDOW
        upper_ms = window_lower
    page.operations = [_public(doc) for doc in found[:limit]]
    if len(found) > limit or (found and len(found) == limit and upper_ms > lower_ms):
        last = found[limit - 1]
        page.cursor = Cursor(*_order(last))
    elif page.stopped_by_budget:
        # Everything at or after the boundary was read; the next request goes on at this pace.
        page.cursor = Cursor(upper_ms, "", max(1, int(window * 1000)))
    return page


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _HIDDEN}


async def get_operation(
    db: Database, environment: str, operation_id: str, *, message_limit: int = MAX_MESSAGES
) -> dict[str, Any] | None:
    """One operation of ``environment`` with its ``messages`` in the order they happened, or None."""
    operation = await db["activity_operations"].find_one({"_id": operation_id})
    if operation is None or operation.get("environment") != environment:
        return None
    cursor = (
        db["activity_messages"]
        .find({"operation_id": operation_id})
        .sort([("created_at", 1), ("_id", 1)])
        .limit(message_limit + 1)
    )
    messages = [doc async for doc in cursor]
    operation = _public(operation)
    operation["messages"] = messages[:message_limit]
    operation["messages_truncated"] = len(messages) > message_limit
    return operation
