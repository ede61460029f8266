"""Activity: operations with filters and whole-word search, a chart of outcomes per integration,
and one operation's messages as a timeline."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from markupsafe import Markup

from keyway_shared.events import utcnow
from keyway_shared.service import MONGO_DB

from ...resources import STORES
from ..activity import (
    OPERATION_TYPES,
    RANGES,
    STATES,
    activity_filter,
    get_operation,
    list_operations,
    outcome_series,
    parse_cursor,
    search_words,
)
from ..chart import outcome_chart
from ..pages import Page, page

__all__ = ["activity_page", "operation_page"]

PAGE_SIZE = 50


def _local_time(value: str) -> datetime | None:
    """A ``datetime-local`` input's value, read as UTC (the pages show UTC throughout)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@page
async def activity_page(page: Page) -> web.StreamResponse:
    query = page.request.query
    range_name = query.get("range", "24h")
    since = _local_time(query["from"]) if query.get("from") else None
    until = _local_time(query["to"]) if query.get("to") else None
    if since is None and until is None:
        range_name = range_name if range_name in RANGES else "24h"
        since = utcnow() - RANGES[range_name]
    else:
        range_name = "custom"
    text = query.get("q", "").strip()[:256]
    error = None
    if text and not search_words(text):
        error = "Search looks for whole words of two or more letters or digits."
    if since and until and since >= until:
        error, until = "'From' must be before 'To'.", None
    filters = activity_filter(
        page.env.name,
        since=since,
        until=until,
        type=query.get("type", "")[:100],
        state=query.get("state", "") if query.get("state", "") in STATES else "",
        integration=query.get("integration", "")[:255],
        connection=query.get("connection", "")[:255],
        q=text,
    )
    db = page.app[MONGO_DB]
    cursor = parse_cursor(query["before"]) if query.get("before") else None
    found = await list_operations(db, filters, limit=PAGE_SIZE, cursor=cursor)
    chart_since, chart_until, series = await outcome_series(db, filters)
    peak = max((ok + failed for s in series for ok, failed in zip(s.succeeded, s.failed, strict=True)), default=0)
    charts = [
        (s, Markup(outcome_chart(s, since=chart_since, until=chart_until, peak=peak)))  # noqa: S704 - escaped parts
        for s in series
    ]
    params = {k: v for k, v in query.items() if k not in {"before", "notice"}}
    older_url = page.url("activity", **(params | {"before": found.cursor.encode()})) if found.cursor else None
    return page.render(
        "activity.html",
        section="activity",
        operations=found.operations,
        filters=filters,
        q=text,
        error=error,
        range_name=range_name,
        ranges=list(RANGES),
        types=OPERATION_TYPES,
        states=STATES,
        integrations=await page.app[STORES].integrations.list(page.env.name),
        charts=charts,
        older_url=older_url,
        from_value=query.get("from", ""),
        to_value=query.get("to", ""),
    )


@page
async def operation_page(page: Page) -> web.StreamResponse:
    operation = await get_operation(page.app[MONGO_DB], page.env.name, page.request.match_info["operation_id"])
    if operation is None:
        return page.render("message.html", status=404, title="Not found", text="There is no such operation here.")
    return page.render("operation.html", section="activity", operation=operation)
