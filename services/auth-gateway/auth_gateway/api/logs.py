"""The activity log's query API (secret key; the environment is the key's): ``GET /logs/operations[/{id}]``.

The gateway answers it by reading the activity collections through ``keyway_shared.activity``; the
activity-log service is their only writer. Query parameters of the list (each filter may repeat;
``type`` and ``state`` also take comma-separated values, at most 20 values each):

    from, to       ISO 8601 times (``to`` exclusive); by default the 31 days up to now
    type           auth:create_connection, auth:refresh_token, webhook:outgoing, …
    state          waiting, running, success, failed, timeout
    integration    provider config keys (also ``provider_config_key``)
    connection     connection ids (also ``connection_id``)
    search         words that must all appear in the operation's messages (whole words, any case)
    limit          1 to 500 (default 100)
    cursor         ``pagination.cursor`` of the previous page
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from keyway_shared.activity import MAX_PAGE, MAX_VALUES, Cursor, OperationFilter, get_operation, list_operations, words
from keyway_shared.service import MONGO_DB
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.serialize import js_iso
from ..openapi_spec import query
from ..operations.callers import secret_key

__all__ = ["QUERY_PARAMS", "get_log_operation", "list_log_operations"]

STATES = ("waiting", "running", "success", "failed", "timeout")
MAX_SEARCH = 256
_TIME = "ISO 8601, e.g. 2024-06-01T12:00:00Z"
# The list's query, as the route table documents it (the module docstring says the same for people).
QUERY_PARAMS = (
    query("from", _TIME),
    query("to", _TIME + " (exclusive)"),
    query("type", "auth:create_connection, auth:refresh_token, webhook:outgoing, … (comma-separated or repeated)"),
    query("state", f"{', '.join(STATES)} (comma-separated or repeated)"),
    query("integration", "Provider config keys"),
    query("provider_config_key", "Same as integration"),
    query("connection", "Connection ids"),
    query("connection_id", "Same as connection"),
    query("search", "Words that must all appear in the operation's messages", maxLength=MAX_SEARCH),
    query("limit", type="integer", minimum=1, maximum=MAX_PAGE),
    query("cursor", "pagination.cursor of the previous page"),
)


def _invalid(message: str) -> ApiError:
    return ApiError("invalid_query_params", message, status=400)


def _values(request: web.Request, *names: str, commas: bool = False) -> tuple[str, ...]:
    found: list[str] = []
    for name in names:
        for raw in request.query.getall(name, []):
            found.extend(part.strip() for part in (raw.split(",") if commas else [raw]) if part.strip())
    if len(found) > MAX_VALUES:
        raise _invalid(f"'{names[0]}' takes at most {MAX_VALUES} values.")
    return tuple(dict.fromkeys(found))


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        # An unencoded "+00:00" arrives as " 00:00": take it as meant.
        at = datetime.fromisoformat(raw.strip().replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"'{name}' must be an ISO 8601 time, e.g. 2024-06-01T12:00:00Z.") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    # "²" is a digit to isdigit, and int() refuses 4,300 digits and more: both would be a 500
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= MAX_PAGE:
        raise _invalid(f"'limit' must be a whole number from 1 to {MAX_PAGE}.")
    return int(raw)


def operation_filter(request: web.Request, environment: str) -> OperationFilter:
    states = _values(request, "state", commas=True)
    if unknown := [s for s in states if s not in STATES]:
        raise _invalid(f"Unknown state {unknown[0]!r}; states are {', '.join(STATES)}.")
    search = request.query.get("search", "")
    if len(search) > MAX_SEARCH:
        raise _invalid(f"'search' is at most {MAX_SEARCH} characters.")
    found = words(search, limit=MAX_VALUES)
    if search.strip() and not found:
        raise _invalid("'search' has no word to look for (words of two or more letters or digits).")
    since, until = _time(request, "from"), _time(request, "to")
    if since and until and since >= until:
        raise _invalid("'from' must be before 'to'.")
    return OperationFilter(
        environment=environment,
        since=since,
        until=until,
        types=_values(request, "type", commas=True),
        states=states,
        integrations=_values(request, "integration", "provider_config_key"),
        connections=_values(request, "connection", "connection_id"),
        words=tuple(found),
    )


def operation_json(doc: dict[str, Any]) -> dict[str, Any]:
    started, ended = doc.get("started_at"), doc.get("ended_at")
    return {
        "id": doc["_id"],
        "type": doc.get("type"),
        "state": doc.get("state"),
        "environment": doc.get("environment"),
        "provider_config_key": doc.get("provider_config_key"),
        "provider": doc.get("provider"),
        "connection_id": doc.get("connection_id"),
        "error": doc.get("error"),
        "created_at": js_iso(doc.get("created_at")),
        "started_at": js_iso(started),
        "ended_at": js_iso(ended),
        "updated_at": js_iso(doc.get("updated_at")),
        "expires_at": js_iso(doc.get("expires_at")),
        "duration_ms": round((ended - started).total_seconds() * 1000) if started and ended else None,
    }


def message_json(doc: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": doc["_id"],
        "level": doc.get("level"),
        "message": doc.get("message"),
        "created_at": js_iso(doc.get("created_at")),
        "event_type": doc.get("event_type"),
        "source": doc.get("source"),
    }
    for name in ("request", "meta"):
        if doc.get(name):
            body[name] = doc[name]
    return body


@secret_key
async def list_log_operations(request: web.Request, env: Environment) -> web.Response:
    query = operation_filter(request, env.name)
    limit = _limit(request)
    raw_cursor = request.query.get("cursor")
    try:
        cursor = Cursor.decode(raw_cursor) if raw_cursor else None
    except ValueError as exc:
        raise _invalid(f"'cursor': {exc}.") from None
    page = await list_operations(request.app[MONGO_DB], query, limit=limit, cursor=cursor)
    return web.json_response(
        {
            "data": [operation_json(doc) for doc in page.operations],
            "pagination": {"cursor": page.cursor.encode() if page.cursor else None, "limit": limit},
        }
    )


@secret_key
async def get_log_operation(request: web.Request, env: Environment) -> web.Response:
    operation_id = request.match_info["operationId"]
    found = await get_operation(request.app[MONGO_DB], env.name, operation_id)
    if found is None:
        raise ApiError("unknown_operation", f"No operation '{operation_id}' in this environment.", status=404)
    body = operation_json(found) | {
        "messages": [message_json(m) for m in found["messages"]],
        "messages_truncated": found["messages_truncated"],
    }
    return web.json_response({"data": body})
