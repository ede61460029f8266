"""The database floor under GET /connection: raw ``find_one`` calls on the connections collection.

    python bench/find_one_load.py MONGODB_URL DATABASE CONNECTIONS CONFIG_KEY CONCURRENCY DURATION

CONCURRENCY asyncio tasks on one ``AsyncMongoClient`` look connections up by their unique key
(environment, provider_config_key, connection_id), round-robin over the ids, as the gateway does;
one JSON line with the rate and latencies comes out. Its own process, so it does not share a GIL
with the orchestrator.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

import uvloop
from common import percentile
from pymongo import AsyncMongoClient


async def run(
    url: str, database: str, connections: int, config_key: str, concurrency: int, duration: float
) -> dict[str, float | int]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True, appname="bench-find-one")
    collection = client[database]["connections"]
    ids = itertools.cycle([f"c{i}" for i in range(connections)])
    latencies: list[float] = []
    counts = {"operations": 0, "misses": 0}
    await client.admin.command("ping")
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            key = {"environment": "dev", "provider_config_key": config_key, "connection_id": next(ids)}
            doc = await collection.find_one(key)
            received = time.perf_counter()
            if received > stop_at:
                continue  # cut off at the end of the window, as wrk does
            counts["operations"] += 1
            latencies.append(received - sent)
            if doc is None:
                counts["misses"] += 1

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    ordered = sorted(latencies)
    return {
        **counts,
        "duration_s": duration,
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p90_ms": round(percentile(ordered, 90) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3) if ordered else 0.0,
    }


def main() -> None:
    url, database, connections, config_key, concurrency, duration = sys.argv[1:7]
    result = uvloop.run(run(url, database, int(connections), config_key, int(concurrency), float(duration)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
