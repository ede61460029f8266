"""The activity log's query side: windowed pages agree with a brute-force sort under every filter, the
cursor holds while operations arrive, and ``GET /logs/operations[/{id}]`` on the gateway.

Operations are written by the activity-log service's own writer from events, as ingest does.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activity_log.entries import entry_for
from activity_log.writer import ActivityWriter
from keyway_shared.activity import Cursor, OperationFilter, list_operations, words
from keyway_shared.events import ActivityMessage, CloudEvent, EventData, HttpExcerpt

from ..support.inproc import event
from .gateway_app import Gateway, StartGateway

pytestmark = [pytest.mark.mongo]

NOW = datetime.now(UTC).replace(microsecond=0)
UNHURRIED = 120.0  # seconds: tests that expect whole pages must not end them early on a busy machine
TYPES = ("auth:create_connection", "auth:refresh_token", "webhook:outgoing", "proxy")
STATES = ("waiting", "running", "success", "failed", "timeout")
TEXTS = (
    "Webhook delivered to https://hooks.example.com/in (HTTP 200)",
    "Token refresh failed: invalid_grant from the provider",
    "Received the callback from github",
    "Connection created",
    "Proxy call answered 502 Bad Gateway",
)


def step(
    op: str, at: datetime, *, env: str = "dev", kind: str = "webhook:outgoing", **fields: Any
) -> CloudEvent[EventData]:
    data = ActivityMessage(operation_id=op, operation_type=kind, message=fields.pop("message", "step"), **fields)
    return event("activity.message", data, environment=env, time=at)


async def write(db: Any, events: list[CloudEvent[EventData]]) -> None:
    writer = ActivityWriter(db)
    entries = [entry_for(e, retention=timedelta(days=15)) for e in events]
    for i in range(0, len(entries), 200):
        await writer.write(entries[i : i + 200])


def random_events(rnd: random.Random, count: int) -> list[CloudEvent[EventData]]:
    """Bursts (many operations in one second, equal milliseconds) and quiet stretches over three days."""
    out: list[CloudEvent[EventData]] = []
    for i in range(count):
        if rnd.random() < 0.4:
            at = NOW - timedelta(minutes=5, milliseconds=rnd.randrange(0, 1000, 50))  # a burst
        else:
            at = NOW - timedelta(seconds=rnd.uniform(0, 3 * 86400))
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        out.append(
            step(
                f"op-{i:04d}",
                at,
                env=rnd.choice(("dev", "dev", "dev", "prod")),
                kind=rnd.choice(TYPES),
                state=rnd.choice(STATES),
                provider_config_key=rnd.choice(("github", "slack", "hubspot")),
                connection_id=f"conn-{rnd.randrange(12)}",
                message=rnd.choice(TEXTS),
            )
        )
    return out


def brute_force(docs: list[dict[str, Any]], f: OperationFilter) -> list[str]:
    def ok(doc: dict[str, Any]) -> bool:
        text_words = set(doc["keys"])
        return (
            doc["environment"] == f.environment
            and (not f.types or doc["type"] in f.types)
            and (not f.states or doc["state"] in f.states)
            and (not f.integrations or doc.get("provider_config_key") in f.integrations)
            and (not f.connections or doc.get("connection_id") in f.connections)
            and all(f"{f.environment}|w|{w}" in text_words for w in f.words)
            and (f.since is None or doc["created_at"] >= f.since)
            and (f.until is None or doc["created_at"] < f.until)
        )

    chosen = sorted((d for d in docs if ok(d)), key=lambda d: (d["created_at"], d["_id"]), reverse=True)
    return [d["_id"] for d in chosen]


async def read_all(db: Any, f: OperationFilter, limit: int, *, time_budget: float = UNHURRIED) -> list[str]:
    seen: list[str] = []
    cursor: Cursor | None = None
    for _ in range(2000):
        page = await list_operations(db, f, limit=limit, cursor=cursor, now=NOW, time_budget=time_budget)
        assert len(page.operations) <= limit
        seen.extend(op["_id"] for op in page.operations)
        if page.cursor is None:
            return seen
        cursor = Cursor.decode(page.cursor.encode())  # through its wire form
    raise AssertionError("paging did not end")


async def test_pages_agree_with_a_brute_force_sort_under_every_filter(db: Any) -> None:
    rnd = random.Random(7)
    await write(db, random_events(rnd, 400))
    docs = [doc async for doc in db["activity_operations"].find({})]
    filters = [
        OperationFilter(environment="dev"),
        OperationFilter(environment="prod"),
        OperationFilter(environment="dev", types=("proxy",)),
        OperationFilter(environment="dev", types=("proxy", "auth:refresh_token")),
        OperationFilter(environment="dev", states=("failed", "timeout")),
        OperationFilter(environment="dev", states=("success",), types=("webhook:outgoing",)),
        OperationFilter(environment="dev", integrations=("slack",), states=("failed",)),
        OperationFilter(environment="dev", connections=("conn-3", "conn-4")),
        OperationFilter(environment="dev", words=("invalid", "grant")),
        OperationFilter(environment="dev", words=("github",), integrations=("hubspot",)),
        OperationFilter(environment="dev", since=NOW - timedelta(days=1), until=NOW - timedelta(minutes=5)),
        OperationFilter(environment="dev", since=NOW - timedelta(hours=6), types=("webhook:outgoing",)),
    ]
    for f in filters:
        expected = brute_force(docs, f)
        for limit in (1, 7, 500):
            assert await read_all(db, f, limit) == expected, (f, limit)
    assert brute_force(docs, filters[0])  # the data set is not trivially empty


async def test_a_spent_budget_ends_the_page_early_and_reading_on_loses_nothing(db: Any) -> None:
    rnd = random.Random(7)
    events = random_events(rnd, 300)
    await write(db, events)
    f = OperationFilter(environment="dev")
    # No time at all: every request reads one window, returns what it found and a boundary cursor.
    page = await list_operations(db, f, limit=50, now=NOW, time_budget=0)
    assert page.windows == 1
    assert page.stopped_by_budget
    assert page.cursor is not None
    docs = [doc async for doc in db["activity_operations"].find({})]
    assert await read_all(db, f, 50, time_budget=0) == brute_force(docs, f)


async def test_the_cursor_holds_while_operations_arrive(db: Any) -> None:
    await write(db, [step(f"old-{i:02d}", NOW - timedelta(minutes=30, seconds=i)) for i in range(30)])
    f = OperationFilter(environment="dev")
    first = await list_operations(db, f, limit=10, now=NOW, time_budget=UNHURRIED)
    assert [op["_id"] for op in first.operations] == [f"old-{i:02d}" for i in range(10)]
    # Newer operations, and some at the very millisecond of the cursor's, arrive between two pages.
    await write(db, [step(f"new-{i}", NOW - timedelta(seconds=i)) for i in range(5)])
    await write(db, [step("old-09-twin", NOW - timedelta(minutes=30, seconds=9))])
    rest: list[str] = []
    cursor = first.cursor
    while cursor is not None:
        page = await list_operations(db, f, limit=10, cursor=cursor, now=NOW, time_budget=UNHURRIED)
        rest.extend(op["_id"] for op in page.operations)
        cursor = page.cursor
    assert rest == [f"old-{i:02d}" for i in range(10, 30)]  # no repeat, no skip; "old-09-twin" > "old-09"


async def test_windows_follow_the_density_instead_of_reading_everything(db: Any) -> None:
    start = NOW - timedelta(seconds=301)
    await write(db, [step(f"d-{i:04d}", start + timedelta(milliseconds=100 * i)) for i in range(3000)])
    f = OperationFilter(environment="dev")
    page = await list_operations(db, f, limit=20, now=NOW, time_budget=UNHURRIED)
    assert [op["_id"] for op in page.operations] == [f"d-{i:04d}" for i in range(2999, 2979, -1)]
    assert page.candidates < 300  # a few windows sized by what the earlier ones held, not all 3000
    assert "keys" not in page.operations[0]
    second = await list_operations(db, f, limit=20, cursor=page.cursor, now=NOW, time_budget=UNHURRIED)
    assert [op["_id"] for op in second.operations] == [f"d-{i:04d}" for i in range(2979, 2959, -1)]
    assert second.candidates < 300


# --- the HTTP API on the gateway ----------------------------------------------------------------


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        yield gateway


@pytest.mark.broker
async def test_logs_api_lists_filters_pages_and_shows_one_operation(gw: Gateway, db: Any) -> None:
    failed = str(uuid.uuid4())
    await write(
        db,
        [
            step(
                failed,
                NOW - timedelta(minutes=3),
                kind="auth:create_connection",
                message="Token request failed: invalid_client (client_secret=hunter2)",
                state="failed",
                provider_config_key="github",
                connection_id="user-1",
                request=HttpExcerpt(
                    method="POST", url="https://github.com/login/oauth/access_token?code=abc", status=401
                ),
            ),
            step(failed, NOW - timedelta(minutes=4), kind="auth:create_connection", message="Authorization URL built"),
            *[step(f"hook-{i}", NOW - timedelta(minutes=10, seconds=i), state="success") for i in range(7)],
            step("prod-op", NOW - timedelta(minutes=1), env="prod", state="success"),
        ],
    )
    resp = await gw.client.get("/logs/operations?limit=5", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert [op["id"] for op in body["data"]] == [failed, "hook-0", "hook-1", "hook-2", "hook-3"]
    assert body["pagination"]["limit"] == 5
    resp = await gw.client.get(f"/logs/operations?limit=5&cursor={body['pagination']['cursor']}", headers=gw.auth)
    rest = await resp.json()
    assert [op["id"] for op in rest["data"]] == ["hook-4", "hook-5", "hook-6"]
    assert rest["pagination"]["cursor"] is None

    first = body["data"][0]
    assert first["state"] == "failed"
    assert (first["type"], first["provider_config_key"], first["connection_id"]) == (
        "auth:create_connection",
        "github",
        "user-1",
    )
    assert first["created_at"].endswith("Z")
    assert first["duration_ms"] == 60_000

    for query, expected in [
        ("state=failed", [failed]),
        ("type=auth:create_connection&integration=github", [failed]),
        ("connection=user-1", [failed]),
        ("search=INVALID%20client", [failed]),
        ("search=hunter2", []),  # redacted before it was stored, so it cannot be found either
        ("state=failed,timeout&type=webhook:outgoing", []),
        # "to" is exclusive: hook-5 is at that very time
        (f"to={(NOW - timedelta(minutes=10, seconds=5)).isoformat()}", ["hook-6"]),
        (f"to={(NOW - timedelta(minutes=10, seconds=4)).strftime('%Y-%m-%dT%H:%M:%SZ')}", ["hook-5", "hook-6"]),
    ]:
        resp = await gw.client.get(f"/logs/operations?{query}", headers=gw.auth)
        assert resp.status == 200, (query, await resp.text())
        assert [op["id"] for op in (await resp.json())["data"]] == expected, query

    resp = await gw.client.get(f"/logs/operations/{failed}", headers=gw.auth)
    assert resp.status == 200
    one = (await resp.json())["data"]
    assert [m["message"] for m in one["messages"]] == [
        "Authorization URL built",
        "Token request failed: invalid_client (client_secret=[REDACTED]",  # masked up to the next space
    ]
    assert one["messages"][1]["request"]["url"] == "https://github.com/login/oauth/access_token?code=[REDACTED]"
    assert one["messages"][1]["level"] == "info"
    assert one["messages_truncated"] is False

    # another environment's operation does not exist for this key
    resp = await gw.client.get("/logs/operations/prod-op", headers=gw.auth)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "unknown_operation"


@pytest.mark.broker
async def test_logs_api_refuses_bad_input(gw: Gateway) -> None:
    assert (await gw.client.get("/logs/operations")).status == 401
    assert (await gw.client.get("/logs/operations", headers={"Authorization": f"Bearer {uuid.uuid4()}"})).status == 401
    for query in (
        "limit=501",
        "limit=0",
        "state=done",
        "from=yesterday",
        "cursor=%%%",
        "search=" + "x" * 300,
        "search=%20!%20",
        "from=2024-02-01T00:00:00Z&to=2024-01-01T00:00:00Z",
        "&".join(f"connection=c{i}" for i in range(21)),
    ):
        resp = await gw.client.get(f"/logs/operations?{query}", headers=gw.auth)
        assert resp.status == 400, query
        assert (await resp.json())["error"]["code"] == "invalid_query_params"


def test_search_words_are_whole_lowercase_words() -> None:
    assert words("Token refresh FAILED: invalid_grant (HTTP 400) at https://x.io/a?b=1") == [
        "token",
        "refresh",
        "failed",
        "invalid",
        "grant",
        "400",
        "io",
    ]
