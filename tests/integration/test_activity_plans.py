"""Every list filter of the activity log reads through an index on a large collection (``slow``).

Writes ``KEYWAY_ACTIVITY_PLAN_OPERATIONS`` operations (200,000 by default) shaped like production
ones (the writer's own documents) into a MongoDB-wire server of its own, then for each filter combination the query API offers: asks
``explain`` about every query one page runs (an ``IXSCAN`` on the expected index, never a
``COLLSCAN``) and times a first and a later page. The plans and timings land in
``test-output/activity_plans.json`` (docs/activity-log.md quotes a run). Run it with
``pytest -m slow tests/integration/test_activity_plans.py``; without ``-m slow`` it is skipped.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, ConnectionFailure

from activity_log.entries import Entry
from activity_log.writer import merge
from keyway_shared.activity import OperationFilter, list_operations, window_filters, words
from keyway_shared.store import ensure_indexes

from ..support.procs import start_mongo

pytestmark = [pytest.mark.slow]

NOW = datetime.now(UTC).replace(microsecond=0)
TYPES = ["webhook:outgoing"] * 6 + ["auth:refresh_token"] * 2 + ["auth:create_connection", "proxy"]
STATES = ["success"] * 90 + ["failed"] * 7 + ["timeout"] * 2 + ["running"]
TEXTS = [
    "Webhook delivered to https://hooks.example.com/in/{n} (HTTP 200, attempt 1)",
    "Webhook delivery to https://hooks.example.com/in/{n} failed (attempt 2): HTTP 503; will retry",
    "Token refreshed",
    "Token refresh failed: invalid_grant: the refresh token was revoked by the user",
    "Connection created",
    "Authorization failed: token_err: the provider answered 401 invalid_client",
    "Proxy GET /v1/contacts/{n} answered 200",
]


def operations(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """Production-shaped operation documents over the last 14 days (the writer builds them)."""
    rnd = random.Random(seed)
    entries = []
    for _ in range(count):
        at = NOW - timedelta(seconds=rnd.uniform(0, 14 * 86400))
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        text = rnd.choice(TEXTS).format(n=rnd.randrange(100))
        state = rnd.choice(STATES)
        entries.append(
            Entry(
                event_id=uuid.uuid4().hex,
                operation_id=uuid.uuid4().hex,
                operation_type=rnd.choice(TYPES),
                state=state,
                error={"type": "http_503", "description": "HTTP 503"} if state == "failed" else None,
                environment=rnd.choice(("dev", "prod", "prod", "prod")),
                provider_config_key=f"integration-{rnd.randrange(200)}",
                provider="github",
                connection_id=f"connection-{rnd.randrange(20_000)}",
                at=at,
                expires_at=at + timedelta(days=15),
                timeout_at=None,
                words=tuple(words(text)),
                message={},
            )
        )
    return [item.document() for item in merge(entries)]


FILTERS: dict[str, OperationFilter] = {
    "environment only": OperationFilter(environment="prod"),
    "last day": OperationFilter(environment="prod", since=NOW - timedelta(days=1), until=NOW),
    "type": OperationFilter(environment="prod", types=("auth:refresh_token",)),
    "two types": OperationFilter(environment="prod", types=("proxy", "auth:create_connection")),
    "rare state": OperationFilter(environment="prod", states=("failed",)),
    "two rare states": OperationFilter(environment="prod", states=("failed", "timeout")),
    "common state": OperationFilter(environment="prod", states=("success",)),
    "integration": OperationFilter(environment="prod", integrations=("integration-7",)),
    "connection": OperationFilter(environment="prod", connections=("connection-42",)),
    "search one word": OperationFilter(environment="prod", words=("revoked",)),
    "search two words": OperationFilter(environment="prod", words=("invalid", "client")),
    "type + state": OperationFilter(environment="prod", types=("webhook:outgoing",), states=("failed",)),
    "integration + type + state": OperationFilter(
        environment="prod", integrations=("integration-3",), types=("auth:refresh_token",), states=("success",)
    ),
    "connection + search": OperationFilter(environment="prod", connections=("connection-9",), words=("token",)),
    "everything": OperationFilter(
        environment="prod",
        since=NOW - timedelta(days=7),
        until=NOW,
        types=("webhook:outgoing",),
        states=("failed", "timeout"),
        integrations=("integration-1", "integration-2"),
        words=("webhook",),
    ),
}


def leaf(plan: dict[str, Any]) -> dict[str, Any]:
    while "inputStage" in plan:
        plan = plan["inputStage"]
    return plan


@pytest.fixture
async def big_db(tmp_path: Path) -> AsyncIterator[Any]:
    """A server of its own, whose TTL sweep runs hourly.

    The suite's server sweeps every second, and the embedded server's sweep reads every document
    of a collection with a TTL index (holding its storage lock): at 200,000 operations that starves
    everything else. MongoDB's TTL monitor reads the index instead.
    """
    data = tmp_path / "data"
    data.mkdir()
    proc, url = start_mongo(data, ttl_sweep_seconds=3600)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    try:
        db = client["plans"]
        await ensure_indexes(db, ["activity_operations", "activity_messages"])
        yield db
    finally:
        await client.close()
        proc.terminate()
        proc.wait(timeout=60)


async def insert_all(collection: Any, docs: list[dict[str, Any]]) -> None:
    """Batches of 500, one at a time; a batch the embedded server dropped the connection on is sent again."""
    for i in range(0, len(docs), 500):
        for attempt in range(5):
            try:
                await collection.insert_many(docs[i : i + 500], ordered=False)
                break
            except BulkWriteError:
                break  # the lost attempt had been applied: duplicates only
            except ConnectionFailure:
                if attempt == 4:
                    raise


@pytest.mark.timeout(5400)
async def test_every_filter_reads_through_an_index(big_db: Any, output_dir: Path) -> None:
    db = big_db
    count = int(os.environ.get("KEYWAY_ACTIVITY_PLAN_OPERATIONS", "200000"))
    collection = db["activity_operations"]
    started = time.monotonic()
    await insert_all(collection, operations(count))
    insert_seconds = time.monotonic() - started

    report: dict[str, Any] = {"operations": count, "insert_seconds": round(insert_seconds, 1), "filters": {}}
    for name, f in FILTERS.items():
        plans = set()
        for query in window_filters(f, NOW - timedelta(hours=1), NOW):
            explained = await collection.find(query).explain()
            stage = leaf(explained["queryPlanner"]["winningPlan"])
            assert stage["stage"] == "IXSCAN", (name, query, explained["queryPlanner"]["winningPlan"])
            plans.add(stage["indexName"])
        timings = []
        page = None
        for _ in range(3):
            t0 = time.perf_counter()
            page = await list_operations(db, f, limit=100, now=NOW)
            timings.append(time.perf_counter() - t0)
        assert page is not None
        t0 = time.perf_counter()
        later = await list_operations(db, f, limit=100, cursor=page.cursor, now=NOW) if page.cursor else None
        later_ms = round((time.perf_counter() - t0) * 1000, 1) if later else None
        report["filters"][name] = {
            "index": sorted(plans),
            "first_page_ms": round(statistics.median(timings) * 1000, 1),
            "second_page_ms": later_ms,
            "returned": len(page.operations),
            "candidates_read": page.candidates,
            "queries": page.windows,
        }
    for query, index in (
        ({"state": "waiting", "timeout_at": {"$gte": datetime(1970, 1, 1, tzinfo=UTC), "$lte": NOW}}, "state_timeout"),
        ({"expires_at": {"$lte": NOW}}, "ttl"),
    ):
        explained = await collection.find(query).explain()
        assert leaf(explained["queryPlanner"]["winningPlan"]).get("indexName") == index
    explained = await db["activity_messages"].find({"operation_id": "x"}).explain()
    assert leaf(explained["queryPlanner"]["winningPlan"]).get("indexName") == "operation_time"

    # Timings are reported, never asserted (the machine is shared); the plans above are the contract.
    (output_dir / "activity_plans.json").write_text(json.dumps(report, indent=2) + "\n")
