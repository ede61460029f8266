"""Benchmark (c): the activity log, ingest through the bus against raw ``insert_many``, and list-query latency.

    uv run --frozen python bench/bench_activity.py [--entries 100000] [--fill 0] [--fill-minutes 30] [--queries 30]

1. Events: ``--entries`` CloudEvents shaped like production (connect attempts of four steps, webhook
   deliveries of one or two attempts, refreshes). The documents they become (a message each, an
   operation per logical action) are computed with the service's own code.
2. raw: those very documents written with ``insert_many`` (batches of 500, both collections at once,
   the same journaled write concern and indexes) into a fresh database: the floor.
3. keyway: the activity-log service as its own process (``python -m activity_log``) consumes the
   events, published to RabbitMQ as fast as it takes them (100 confirms in flight); entries stored
   per second from the first publish to the last message stored, as the service's
   ``keyway_activity_entries_total{outcome="stored"}`` counts them (a count on the embedded server
   reads the whole collection under its lock: polling one slows the ingest it measures). Reported
   also while the bench's publisher still runs and after, and by quarter of the fill. It runs
   between two raw runs (the server slows as it fills) and is reported as a ratio to their mean.
4. queries: the keyway collection (topped up to ``--fill`` operations with raw, unjournaled inserts
   of 5,000, for at most ``--fill-minutes``) is queried through ``keyway_shared.activity.list_operations``
   (what ``GET /logs/operations`` runs) for every filter kind with random values; p50/p99 of the
   first page and of the next page.

Needs RabbitMQ at ``AMQP_URL``; starts the embedded MongoDB-wire server unless ``MONGODB_URL`` is set.
Writes ``bench/results/activity.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from common import (
    BENCH,
    ServiceProcess,
    amqp_url,
    check_rabbitmq,
    cpu_seconds,
    find_pid,
    free_port,
    latency_ms,
    mongo_server,
    print_table,
    ratio,
    unique,
    wait_for_port,
)
from pymongo import WriteConcern

from activity_log.app import record_spec
from activity_log.entries import Entry, entry_for
from activity_log.settings import ActivityLogSettings
from activity_log.writer import DURABLE, merge
from keyway_shared.activity import OperationFilter, list_operations, words
from keyway_shared.bus import EventPublisher, connect, declare_consumer, delete_consumer_queues
from keyway_shared.events import (
    ActivityMessage,
    CloudEvent,
    ConnectionCreated,
    ErrorInfo,
    EventData,
    HttpExcerpt,
    TokenRefreshed,
    TokenRefreshFailed,
    WebhookDelivered,
    WebhookFailed,
)
from keyway_shared.logging import configure_logging
from keyway_shared.store import ensure_indexes, open_client

IN_FLIGHT = 100
TTL_SWEEP_SECONDS = 3600.0  # nothing expires during a run; see common.mongo_server
RETENTION = timedelta(days=15)
INTEGRATIONS = [f"integration-{i}" for i in range(200)]


@dataclass(frozen=True, kw_only=True)
class Options:
    entries: int = 100_000
    fill: int = 0  # operations the queried collection is topped up to (0: what ingest wrote)
    queries: int = 30  # per filter kind
    queue_type: str = "quorum"
    patience: float = 3600.0  # seconds ingest may take at most
    fill_minutes: float = 30.0  # the top-up stops here, wherever it got: queries then run on what is there


def _events(count: int, rnd: random.Random) -> list[CloudEvent[EventData]]:
    """Production-shaped events over the last 14 days; each becomes one activity message."""
    now = datetime.now(UTC)
    out: list[CloudEvent[EventData]] = []

    env = "dev"

    def add(data: EventData, kind: str, at: datetime) -> None:
        out.append(CloudEvent[EventData](type=kind, source="/keyway/bench", environment=env, data=data, time=at))

    while len(out) < count:
        at = now - timedelta(seconds=rnd.uniform(0, 14 * 86400))
        env = rnd.choice(("dev", "prod"))
        op, key, conn = uuid.uuid4().hex, rnd.choice(INTEGRATIONS), f"connection-{rnd.randrange(20_000)}"
        fields = {"provider_config_key": key, "connection_id": conn, "operation_id": op}
        roll = rnd.random()
        if roll < 0.4:  # a connect attempt told in four steps
            url = f"https://provider.example.com/{key}/token"
            for i, (text, state) in enumerate(
                [
                    ("Authorization URL built; sending the user to github", "waiting"),
                    ("Received the callback", "running"),
                ]
            ):
                msg = ActivityMessage(operation_type="auth:create_connection", message=text, state=state, **fields)
                add(msg, "activity.message", at + timedelta(seconds=i))
            answer = HttpExcerpt(method="POST", url=url, status=200, duration_ms=120.0, body='{"expires_in":3600}')
            step = ActivityMessage(
                operation_type="auth:create_connection", message="Token request answered", request=answer, **fields
            )
            add(step, "activity.message", at + timedelta(seconds=2))
            add(ConnectionCreated(provider="github", auth_mode="OAUTH2", **fields), "connection.created", at)
        elif roll < 0.8:  # a webhook delivery, sometimes after a failed attempt
            hook = {
                "delivery_id": op,
                "event_id": uuid.uuid4().hex,
                "url": "https://hooks.example.com/in",
                "operation_id": op,
            }
            if rnd.random() < 0.2:
                error = ErrorInfo(type="http_503", description="HTTP 503")
                add(WebhookFailed(status=503, attempt=1, error=error, final=False, **hook), "webhook.failed", at)
            add(WebhookDelivered(status=200, attempt=1, duration_ms=42.0, **hook), "webhook.delivered", at)
        elif rnd.random() < 0.9:
            add(TokenRefreshed(provider="github", auth_mode="OAUTH2", **fields), "token.refreshed", at)
        else:
            error = ErrorInfo(type="refresh_token_external_error", description="invalid_grant: token revoked")
            add(
                TokenRefreshFailed(provider="github", auth_mode="OAUTH2", error=error, **fields),
                "token.refresh_failed",
                at,
            )
    return out[:count]


def _documents(events: list[CloudEvent[EventData]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries = [entry_for(e, retention=RETENTION) for e in events]
    return [e.message for e in entries], [m.document() for m in merge(entries)]


async def raw_insert(mongo_url: str, events: list[CloudEvent[EventData]], watch: dict[str, int]) -> dict[str, Any]:
    messages, operations = _documents(events)
    client = open_client(mongo_url, app_name="bench-activity-raw")
    database = unique("kwbench_raw_")
    db = client[database]
    try:
        await ensure_indexes(db, ["activity_operations", "activity_messages"])
        ops = db.get_collection("activity_operations", write_concern=DURABLE)
        msgs = db.get_collection("activity_messages", write_concern=DURABLE)
        chunks = max(1, len(messages) // 500)
        cpu = {k: cpu_seconds(p) for k, p in watch.items()}
        started = time.perf_counter()
        progress = [(0, 0.0)]
        for i in range(chunks):
            part = slice(i * len(messages) // chunks, (i + 1) * len(messages) // chunks)
            op_part = slice(i * len(operations) // chunks, (i + 1) * len(operations) // chunks)
            await asyncio.gather(msgs.insert_many(messages[part], ordered=False), ops.insert_many(operations[op_part]))
            progress.append((part.stop, time.perf_counter() - started))
        seconds = time.perf_counter() - started
        return {
            "entries": len(messages),
            "operations": len(operations),
            "seconds": round(seconds, 1),
            "rate": round(len(messages) / seconds, 1),
            "rate_by_quarter": _rate_by_quarter(progress, len(messages)),
            "cpu_cores": {k: round((cpu_seconds(p) - cpu[k]) / seconds, 2) for k, p in watch.items()},
        }
    finally:
        await client.drop_database(database)
        await client.close()


async def stored_entries(http: aiohttp.ClientSession, port: int) -> int:
    """``keyway_activity_entries_total{outcome="stored"}`` from the service's ``/metrics``."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('keyway_activity_entries_total{outcome="stored"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def _rate_by_quarter(progress: list[tuple[int, float]], total: int) -> list[float]:
    """Entries/s over each quarter of the fill, from (entries stored, seconds) samples: the server
    slows as its collections grow, so two runs compare fairly only at the same fill."""

    def when(count: float) -> float:
        for (n0, t0), (n1, t1) in itertools.pairwise(progress):
            if n1 >= count:
                return t0 + (t1 - t0) * (count - n0) / max(n1 - n0, 1)
        return progress[-1][1]

    marks = [when(total * q / 4) for q in range(5)]
    return [round(total / 4 / max(b - a, 1e-9), 1) for a, b in itertools.pairwise(marks)]


async def keyway_ingest(
    amqp: str, mongo_url: str, events: list[CloudEvent[EventData]], opts: Options, watch: dict[str, int], logs: Path
) -> tuple[dict[str, Any], str]:
    """The service as a process; returns the figures and the database it filled (for the queries)."""
    namespace, database, port = unique("kwbench"), unique("kwbench_act_"), free_port()
    settings = ActivityLogSettings(bus_namespace=namespace, queue_type=opts.queue_type)
    connection = await connect(amqp, name="bench-activity-producer")
    channel = await connection.channel()
    spec = record_spec(settings)
    await declare_consumer(channel, spec, queue_type=opts.queue_type)  # the queue exists before the first publish
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database,
        "AMQP_URL": amqp,
        "KEYWAY_BUS_NAMESPACE": namespace,
        "KEYWAY_QUEUE_TYPE": opts.queue_type,
        "KEYWAY_ACTIVITY_LOG_PORT": str(port),
        "KEYWAY_LOG_LEVEL": os.environ.get("KEYWAY_LOG_LEVEL", "WARNING"),
    }
    service = ServiceProcess("activity_log", env, log_dir=logs, port=port).start()
    client = open_client(mongo_url, app_name="bench-activity-watch")
    messages = client[database]["activity_messages"]
    publisher = EventPublisher(connection, exchange_name=f"{namespace}.events")
    http = aiohttp.ClientSession()
    try:
        wait_for_port(port)
        watch = {**watch, "activity_log": service.proc.pid if service.proc else 0}
        cpu = {k: cpu_seconds(p) for k, p in watch.items()}
        started = time.perf_counter()
        pending = iter(events)

        async def worker() -> None:
            for item in pending:
                await publisher.publish(item)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        published = time.perf_counter() - started
        # Two phases: while the bench's own publisher competes for the CPU, and after it is done.
        # Progress is the service's own counter: a count on the embedded server reads every
        # document under its lock, so polling one would measure the probe.
        stored_when_published = await stored_entries(http, port)
        cpu_when_published = {k: cpu_seconds(p) for k, p in watch.items()}
        stored, last = stored_when_published, time.perf_counter()
        progress = [(0, 0.0), (stored, last - started)]
        while stored < len(events) and time.perf_counter() - started < opts.patience:
            await asyncio.sleep(0.5)
            stored, last = await stored_entries(http, port), time.perf_counter()
            progress.append((stored, last - started))
        seconds = last - started
        in_database = await messages.count_documents({"source": "/keyway/bench"})
        draining = max(last - started - published, 1e-9)
        result = {
            "entries": stored,
            "entries_in_database": in_database,
            "seconds": round(seconds, 1),
            "rate": round(stored / seconds, 1),
            "publish_rate": round(len(events) / published, 1),
            "rate_by_quarter": _rate_by_quarter(progress, len(events)),
            "queue_type": opts.queue_type,
            "cpu_cores": {k: round((cpu_seconds(p) - cpu[k]) / seconds, 2) for k, p in watch.items() if p},
            "while_publishing": {
                "seconds": round(published, 1),
                "rate": round(stored_when_published / published, 1),
                "cpu_cores": {k: round((cpu_when_published[k] - cpu[k]) / published, 2) for k, p in watch.items() if p},
            },
            "after_publishing": {
                "seconds": round(draining, 1),
                "rate": round((stored - stored_when_published) / draining, 1),
                "cpu_cores": {
                    k: round((cpu_seconds(p) - cpu_when_published[k]) / draining, 2) for k, p in watch.items() if p
                },
            },
        }
        return result, database
    finally:
        await http.close()
        service.stop()
        await publisher.close()
        await delete_consumer_queues(channel, spec)
        await channel.exchange_delete(spec.exchange)
        await channel.exchange_delete(spec.dead_letter_exchange)
        await connection.close()
        await client.close()


FILL_BATCH = 5000  # operations per insert_many: the embedded server pays per round trip and per journal sync


async def top_up(mongo_url: str, database: str, target: int, rnd: random.Random, *, minutes: float) -> int:
    """Raw inserts of production-shaped operations until ``target`` (or ``minutes``): unjournaled
    (the queries need the data, not its durability) and in large batches, two in flight."""
    client = open_client(mongo_url, app_name="bench-activity-fill")
    collection = client[database].get_collection("activity_operations", write_concern=WriteConcern(w=1, j=False))
    have = await collection.estimated_document_count()
    now = datetime.now(UTC)
    texts = ["Webhook delivered to https://hooks.example.com/in", "Token refreshed", "invalid_grant: token revoked"]
    inflight: set[asyncio.Task[Any]] = set()
    started = time.perf_counter()
    while have < target and time.perf_counter() - started < minutes * 60:
        batch = []
        for _ in range(min(FILL_BATCH, target - have)):
            at = now - timedelta(seconds=rnd.uniform(0, 14 * 86400))
            batch.append(
                Entry(
                    event_id="",
                    operation_id=uuid.uuid4().hex,
                    operation_type=rnd.choice(("webhook:outgoing", "auth:refresh_token", "auth:create_connection")),
                    state=rnd.choice(["success"] * 9 + ["failed"]),
                    error=None,
                    environment=rnd.choice(("dev", "prod")),
                    provider_config_key=rnd.choice(INTEGRATIONS),
                    provider="github",
                    connection_id=f"connection-{rnd.randrange(20_000)}",
                    at=at,
                    expires_at=at + RETENTION,
                    timeout_at=None,
                    words=tuple(words(rnd.choice(texts))),
                    message={},
                )
            )
        if len(inflight) >= 2:
            _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        docs = [m.document() for m in merge(batch)]
        inflight.add(asyncio.create_task(collection.insert_many(docs, ordered=False)))
        have += len(docs)
        if have % 50_000 < FILL_BATCH:
            print(f"  filled {have:,} operations ({have / (time.perf_counter() - started):,.0f}/s)", flush=True)
    await asyncio.gather(*inflight)
    await client.close()
    return have


def _filters(rnd: random.Random) -> dict[str, OperationFilter]:
    env = rnd.choice(("dev", "prod"))
    week = datetime.now(UTC) - timedelta(days=7)
    return {
        "environment only": OperationFilter(environment=env),
        "type": OperationFilter(environment=env, types=(rnd.choice(("auth:refresh_token", "webhook:outgoing")),)),
        "failed": OperationFilter(environment=env, states=("failed",)),
        "integration": OperationFilter(environment=env, integrations=(rnd.choice(INTEGRATIONS),)),
        "connection": OperationFilter(environment=env, connections=(f"connection-{rnd.randrange(20_000)}",)),
        "search": OperationFilter(environment=env, words=(rnd.choice(("revoked", "callback", "503", "delivered")),)),
        "type+state+integration, last week": OperationFilter(
            environment=env,
            since=week,
            types=("auth:refresh_token",),
            states=("success",),
            integrations=(rnd.choice(INTEGRATIONS),),
        ),
    }


async def query_latency(mongo_url: str, database: str, opts: Options, rnd: random.Random) -> dict[str, Any]:
    client = open_client(mongo_url, app_name="bench-activity-query")
    db = client[database]
    operations = await db["activity_operations"].estimated_document_count()
    first: dict[str, list[float]] = {}
    second: dict[str, list[float]] = {}
    for _ in range(opts.queries):
        for name, f in _filters(rnd).items():
            t0 = time.perf_counter()
            page = await list_operations(db, f, limit=100)
            first.setdefault(name, []).append(time.perf_counter() - t0)
            if page.cursor:
                t0 = time.perf_counter()
                await list_operations(db, f, limit=100, cursor=page.cursor)
                second.setdefault(name, []).append(time.perf_counter() - t0)
    await client.close()
    everything = [t for times in first.values() for t in times]
    return {
        "operations": operations,
        "limit": 100,
        "all_first_pages": latency_ms(everything),
        "by_filter": {
            name: {"first_page": latency_ms(times), "next_page": latency_ms(second.get(name, []) or [float("nan")])}
            for name, times in first.items()
        },
    }


async def run_async(amqp: str, mongo_url: str, mongo_pid: int | None, opts: Options) -> dict[str, Any]:
    rnd = random.Random(20240601)
    pids = {"mongo": mongo_pid, "rabbitmq": find_pid("beam.smp"), "bench (client, publisher)": os.getpid()}
    watch = {k: p for k, p in pids.items() if p}
    events = _events(opts.entries, rnd)
    print(f"(c) activity log: {len(events):,} events; raw insert_many, the service, raw again", flush=True)
    # The server slows as it fills (its oplog, its indexes): the service runs between two raw runs.
    raw_before = await raw_insert(mongo_url, events, watch)
    print(f"  raw insert_many   {raw_before['rate']:>8,.0f} entries/s ({raw_before['seconds']} s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="kwbench-activity-") as logs:
        keyway, database = await keyway_ingest(amqp, mongo_url, events, opts, watch, Path(logs))
    print(f"  keyway ingest     {keyway['rate']:>8,.0f} entries/s ({keyway['seconds']} s)", flush=True)
    raw_after = await raw_insert(mongo_url, events, watch)
    print(f"  raw insert_many   {raw_after['rate']:>8,.0f} entries/s ({raw_after['seconds']} s)", flush=True)
    raw = {
        "before": raw_before,
        "after": raw_after,
        "entries": raw_before["entries"],
        "rate": round((raw_before["rate"] + raw_after["rate"]) / 2, 1),
    }
    client = open_client(mongo_url, app_name="bench-activity")
    try:
        if opts.fill:
            await top_up(mongo_url, database, opts.fill, rnd, minutes=opts.fill_minutes)
        queries = await query_latency(mongo_url, database, opts, rnd)
        # Before the drop: dropping a large database can take minutes on the embedded server.
        print_queries(queries)
    finally:
        await client.drop_database(database)
        await client.close()
    return {
        "raw": raw,
        "keyway": keyway,
        "ratio_keyway_over_raw": ratio(keyway["rate"], raw["rate"]),
        "queries": queries,
    }


def run(amqp: str, mongo_url: str, mongo_pid: int | None, opts: Options) -> dict[str, Any]:
    results = uvloop.run(run_async(amqp, mongo_url, mongo_pid, opts))
    print()
    print_table(
        ["(c) activity ingest", "entries", "entries/s", "this / raw"],
        [
            ["raw insert_many (same docs, same indexes)", results["raw"]["entries"], results["raw"]["rate"], ""],
            [
                "activity-log service via the bus",
                results["keyway"]["entries"],
                results["keyway"]["rate"],
                results["ratio_keyway_over_raw"],
            ],
        ],
    )
    return results


def print_queries(queries: dict[str, Any]) -> None:
    rows = [
        [name, row["first_page"]["p50_ms"], row["first_page"]["p99_ms"], row["next_page"]["p99_ms"]]
        for name, row in queries["by_filter"].items()
    ]
    rows.append(["all first pages", queries["all_first_pages"]["p50_ms"], queries["all_first_pages"]["p99_ms"], ""])
    print(f"\n  list queries on {queries['operations']:,} operations, limit 100:")
    print_table(["(c) GET /logs/operations", "p50 ms", "p99 ms", "next page p99 ms"], rows)
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=Options.entries)
    parser.add_argument("--fill", type=int, default=Options.fill, help="top the queried collection up to N operations")
    parser.add_argument("--fill-minutes", type=float, default=Options.fill_minutes, help="stop the top-up after this")
    parser.add_argument("--queries", type=int, default=Options.queries)
    parser.add_argument(
        "--standalone-db",
        action="store_true",
        help="start the embedded server without its replica set (no oplog): how it holds 1,000,000 operations",
    )
    parser.add_argument("--queue-type", choices=["classic", "quorum"], default=Options.queue_type)
    args = parser.parse_args()
    configure_logging(level="WARNING", json=False, service="bench")
    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    opts = Options(
        entries=args.entries,
        fill=args.fill,
        fill_minutes=args.fill_minutes,
        queries=args.queries,
        queue_type=args.queue_type,
    )
    with mongo_server(ttl_sweep_seconds=TTL_SWEEP_SECONDS, standalone=args.standalone_db) as mongo:
        results = run(amqp, mongo.url, mongo.pid, opts)
    results["options"] = {"entries": opts.entries, "fill": opts.fill, "queries": opts.queries}
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out = BENCH / "results" / "activity.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
