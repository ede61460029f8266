"""Activity: operations with filters and free-text search, a chart of outcomes per integration,
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
    ActivityFilters,
    get_operation,
    list_operations,
    outcome_series,
    parse_cursor,
)
from ..chart import outcome_chart
from ..pages import Page, page

__all__ = ["activity_page", "operation_page"]


def _local_time(value: str) -> datetime | None:
    """A ``datetime-local`` input's value, read as UTC (the pages show UTC throughout)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _filters(page: Page) -> tuple[ActivityFilters, str]:
    query = page.request.query
    range_name = query.get("range", "24h")
    since = _local_time(query.get("from", "")) if query.get("from") else None
    until = _local_time(query.get("to", "")) if query.get("to") else None
    if since is None and until is None:
        range_name = range_name if range_name in RANGES else "24h"
        since = utcnow() - RANGES[range_name]
    else:
        range_name = "custom"
    before = parse_cursor(query["before"]) if query.get("before") else None
    filters = ActivityFilters(
        since=since,
        until=until,
        type=query.get("type", "")[:100],
        state=query.get("state", "") if query.get("state", "") in STATES else "",
        integration=query.get("integration", "")[:255],
        connection=query.get("connection", "")[:255],
        q=query.get("q", "").strip()[:200],
        before=before,
    )
    return filters, range_name


@page
async def activity_page(page: Page) -> web.StreamResponse:
    filters, range_name = _filters(page)
    db = page.app[MONGO_DB]
    operations, next_cursor = await list_operations(db, page.env.name, filters)
    since, until, series = await outcome_series(db, page.env.name, filters)
    peak = max((ok + failed for s in series for ok, failed in zip(s.succeeded, s.failed, strict=True)), default=0)
    charts = [(s, Markup(outcome_chart(s, since=since, until=until, peak=peak))) for s in series]  # noqa: S704 - built from escaped parts
    query = dict(page.request.query)
    query.pop("before", None)
    older_url = page.url("activity", **(query | {"before": next_cursor})) if next_cursor else None
    integrations = await page.app[STORES].integrations.list(page.env.name)
    return page.render(
        "activity.html",
        section="activity",
        operations=operations,
        filters=filters,
        range_name=range_name,
        ranges=list(RANGES),
        types=OPERATION_TYPES,
        states=STATES,
        integrations=integrations,
        charts=charts,
        older_url=older_url,
        from_value=page.request.query.get("from", ""),
        to_value=page.request.query.get("to", ""),
    )


@page
async def operation_page(page: Page) -> web.StreamResponse:
    operation = await get_operation(page.app[MONGO_DB], page.env.name, page.request.match_info["operation_id"])
    if operation is None:
        return page.render("message.html", status=404, title="Not found", text="There is no such operation here.")
    return page.render("operation.html", section="activity", operation=operation)
