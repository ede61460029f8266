"""The fallback load generator when ``wrk`` cannot be installed: aiohttp clients in their own process.

    python bench/loadgen.py URL CONNECTIONS SECRET_KEY CONFIG_KEY CONCURRENCY DURATION

It sends what ``get_connection.lua`` sends (the same paths, round-robin, the same header) from
CONCURRENCY keep-alive clients, and prints one JSON line in the same shape as the wrk script.
A Python client is much slower than wrk, so on a fast server it measures itself: compare only
figures taken with the same tool.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time

import aiohttp
import uvloop
from common import percentile


async def run(
    url: str, connections: int, secret_key: str, config_key: str, concurrency: int, duration: float
) -> dict[str, float | int]:
    paths = [f"{url}/connection/c{i}?provider_config_key={config_key}" for i in range(connections)]
    cycle = itertools.cycle(paths)
    headers = {"Authorization": f"Bearer {secret_key}"}
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0, "non_2xx": 0}
    stop_at = time.perf_counter() + duration

    async def client(session: aiohttp.ClientSession) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            status = 0
            try:
                async with session.get(next(cycle), headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = -1
            received = time.perf_counter()
            if received > stop_at:
                continue  # cut off at the end of the window, as wrk does
            counts["requests"] += 1
            latencies.append(received - sent)
            if status < 0:
                counts["errors"] += 1
            elif not 200 <= status < 400:
                counts["non_2xx"] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
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
    url, connections, secret_key, config_key, concurrency, duration = sys.argv[1:7]
    result = uvloop.run(run(url, int(connections), secret_key, config_key, int(concurrency), float(duration)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
