"""Benchmark (a): ``GET /connection/{id}`` through the real gateway against a bare aiohttp handler.

    uv run --frozen python bench/bench_get_connection.py [--duration 10] [--loadgen auto|wrk|python]

The gateway runs as its own process (``python -m auth_gateway``) on a fresh database and bus
namespace; 1000 API-key connections are made through its public routes, then 64 keep-alive clients
in a separate process (wrk, or the Python fallback) read them round-robin with the secret key.
Baselines from the same run: the same load on ``bare_server.py`` returning the same JSON, and the
raw driver ``find_one`` rate on the same collection. The gateway serves a connection it has read
before from its connection cache (one broker round trip per batch of reads, no database read) and
the environment from its environment cache; ``KEYWAY_CONNECTION_CACHE_ENTRIES=0`` in the
environment measures it reading the database on every request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import uvloop
from common import (
    BENCH,
    ROOT,
    ServiceProcess,
    amqp_url,
    check_rabbitmq,
    children_cpu_seconds,
    cpu_seconds,
    ensure_wrk,
    free_port,
    list_queues_and_exchanges,
    mongo_server,
    print_table,
    ratio,
    unique,
    wait_for_port,
)
from pymongo import AsyncMongoClient

from keyway_shared.bus import delete_consumer_queues, service_consumers
from keyway_shared.logging import configure_logging

CONFIG_KEY = "ph"
LUA = BENCH / "get_connection.lua"


@dataclass(frozen=True, kw_only=True)
class Options:
    connections: int = 1000
    concurrency: int = 64
    duration: float = 10.0
    warmup: float = 2.0
    loadgen: str = "auto"  # auto: wrk when it is (or can be) installed, else the Python load generator
    wrk_threads: int = 1


@dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    url: str
    pids: dict[str, int | None]  # processes whose CPU time is reported for the run


@dataclass(frozen=True, kw_only=True)
class Gateway:
    database: str
    namespace: str
    secret_key: str
    public_key: str
    env: dict[str, str]


def _gateway(mongo_url: str, amqp: str, port: int) -> Gateway:
    database, namespace = unique("kwbench_"), unique("kwbench")
    secret_key, public_key = str(uuid.uuid4()), str(uuid.uuid4())
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database,
        "AMQP_URL": amqp,
        "KEYWAY_BUS_NAMESPACE": namespace,
        "KEYWAY_QUEUE_TYPE": "classic",
        "KEYWAY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KEYWAY_SECRET_KEY_DEV": secret_key,
        "KEYWAY_PUBLIC_KEY_DEV": public_key,
        "KEYWAY_PUBLIC_KEY_CONNECT": "allowed",  # the seeding connects with the public key (2024 protocol)
        "KEYWAY_GATEWAY_PORT": str(port),
        "KEYWAY_HOST": "127.0.0.1",
        "KEYWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "KEYWAY_LOG_LEVEL": "WARNING",
        # The limiter stays in the path (its bookkeeping is part of a read) but never says 429:
        # the default (2400/min, Nango's) would turn this into a benchmark of rejections.
        "KEYWAY_RATE_LIMIT_PER_MINUTE": "1000000000",
        # The catalog's posthog template checks each new key against posthog.com; benches stay on 127.0.0.1.
        "KEYWAY_PROVIDERS_FILE": str(ROOT / "tests" / "support" / "providers.test.yaml"),
    }
    return Gateway(database=database, namespace=namespace, secret_key=secret_key, public_key=public_key, env=env)


async def _seed(base: str, gw: Gateway, mongo_url: str, connections: int) -> dict[str, Any]:
    """Create the integration and the connections through the gateway; return one real GET answer."""
    auth = {"Authorization": f"Bearer {gw.secret_key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        deadline = time.monotonic() + 30
        while True:  # listening is not ready: wait until broker and database answer
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not become ready in 30 s")
            await asyncio.sleep(0.2)
        async with session.post(
            f"{base}/config", json={"provider": "posthog", "provider_config_key": CONFIG_KEY}, headers=auth
        ) as response:
            if response.status >= 300:
                raise RuntimeError(f"POST /config answered {response.status}: {await response.text()}")
        limit = asyncio.Semaphore(16)

        async def connect(i: int) -> None:
            params = {"connection_id": f"c{i}", "public_key": gw.public_key}
            async with (
                limit,
                session.post(
                    f"{base}/api-auth/api-key/{CONFIG_KEY}", params=params, json={"apiKey": f"phc_bench_{i:06d}"}
                ) as response,
            ):
                if response.status >= 300:
                    raise RuntimeError(f"POST /api-auth/api-key answered {response.status}: {await response.text()}")

        started = time.perf_counter()
        await asyncio.gather(*(connect(i) for i in range(connections)))
        print(f"  made {connections} connections in {time.perf_counter() - started:.1f} s", flush=True)
        async with session.get(f"{base}/connection/c0", params={"provider_config_key": CONFIG_KEY}, headers=auth) as r:
            if r.status != 200:
                raise RuntimeError(f"GET /connection/c0 answered {r.status}: {await r.text()}")
            body: dict[str, Any] = await r.json()
    await _wait_outbox_empty(mongo_url, gw.database)
    return body


async def _wait_outbox_empty(mongo_url: str, database: str, patience: float = 60.0) -> None:
    """Let the relay publish every connection.created first, so it does not run during the load."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        deadline = time.monotonic() + patience
        while await client[database]["outbox"].count_documents({}) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway's outbox did not drain")
            await asyncio.sleep(0.2)
    finally:
        await client.close()


def _wrk(wrk: str, url: str, gw: Gateway, opts: Options, seconds: float) -> dict[str, Any]:
    command = [
        wrk,
        f"-t{opts.wrk_threads}",
        f"-c{opts.concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
        "--",
        str(opts.connections),
        gw.secret_key,
        CONFIG_KEY,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{"))
    return dict(json.loads(line))


def _python_loadgen(url: str, gw: Gateway, opts: Options, seconds: float) -> dict[str, Any]:
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        url,
        str(opts.connections),
        gw.secret_key,
        CONFIG_KEY,
        str(opts.concurrency),
        str(seconds),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _load(tool: str, wrk: str | None, target: Target, gw: Gateway, opts: Options) -> dict[str, Any]:
    """A warm-up run (discarded), then the measured run; CPU time of each process over the latter."""

    def once(seconds: float) -> dict[str, Any]:
        if tool == "wrk":
            assert wrk is not None
            return _wrk(wrk, target.url, gw, opts, seconds)
        return _python_loadgen(target.url, gw, opts, seconds)

    once(opts.warmup)
    before = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
    loadgen_before = children_cpu_seconds()
    wall = time.perf_counter()
    result = once(opts.duration)
    wall = time.perf_counter() - wall
    cpu = {name: (cpu_seconds(pid) - before[name]) / wall for name, pid in target.pids.items() if pid}
    cpu["loadgen"] = (children_cpu_seconds() - loadgen_before) / wall
    ok = result["requests"] - result["non_2xx"] - result["errors"]
    result["rps"] = round(ok / result["duration_s"], 1)  # successful answers only: a 429 is not a read
    if ok < result["requests"]:
        print(
            f"  WARNING: {target.name}: {result['requests'] - ok} of {result['requests']} requests failed", flush=True
        )
    result["cpu_cores"] = {name: round(value, 2) for name, value in cpu.items()}
    print(
        f"  {target.name:<8} {result['rps']:>9,.0f} req/s  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
        f"  non-2xx {result['non_2xx']}  errors {result['errors']}  CPU cores {result['cpu_cores']}",
        flush=True,
    )
    return result


def _find_one(mongo_url: str, gw: Gateway, opts: Options, mongo_pid: int | None) -> dict[str, Any]:
    def once(seconds: float) -> dict[str, Any]:
        command = [
            sys.executable,
            str(BENCH / "find_one_load.py"),
            mongo_url,
            gw.database,
            str(opts.connections),
            CONFIG_KEY,
            str(opts.concurrency),
            str(seconds),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    once(opts.warmup)
    mongo_before, client_before = cpu_seconds(mongo_pid), children_cpu_seconds()
    wall = time.perf_counter()
    result = once(opts.duration)
    wall = time.perf_counter() - wall
    result["ops"] = round(result["operations"] / result["duration_s"], 1)
    result["cpu_cores"] = {"client": round((children_cpu_seconds() - client_before) / wall, 2)}
    if mongo_pid:
        result["cpu_cores"]["mongo"] = round((cpu_seconds(mongo_pid) - mongo_before) / wall, 2)
    print(
        f"  find_one {result['ops']:>9,.0f} ops/s    p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
        f"  misses {result['misses']}  CPU cores {result['cpu_cores']}",
        flush=True,
    )
    return result


async def _cleanup(mongo_url: str, amqp: str, gw: Gateway, leftovers: tuple[list[str], list[str]]) -> None:
    """Drop the database; delete the namespace's queues and exchanges, the known ones and any listed."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await client.drop_database(gw.database)
    finally:
        await client.close()
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        specs = list(service_consumers(gw.namespace).values())
        for spec in specs:
            await delete_consumer_queues(channel, spec)
        queues, exchanges = leftovers
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in {specs[0].exchange, specs[0].dead_letter_exchange, *exchanges}:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def run(mongo_url: str, mongo_pid: int | None, amqp: str, opts: Options) -> dict[str, Any]:
    print(
        f"(a) GET /connection/{{id}}: {opts.concurrency} clients, {opts.duration:g} s after {opts.warmup:g} s warm-up"
    )
    wrk = ensure_wrk() if opts.loadgen in {"auto", "wrk"} else None
    if opts.loadgen == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed and could not be installed (apt-get install -y wrk)")
    tool = "wrk" if wrk else "python"
    tool_label = f"wrk -t{opts.wrk_threads} -c{opts.concurrency}" if wrk else f"bench/loadgen.py c={opts.concurrency}"
    print(f"  load generator: {tool_label} (a separate process)", flush=True)
    port = free_port()
    gw = _gateway(mongo_url, amqp, port)
    results: dict[str, Any] = {"tool": tool_label, "connections": opts.connections, "concurrency": opts.concurrency}
    with tempfile.TemporaryDirectory(prefix="kwbench-") as tmp:
        log_dir = Path(tmp)
        try:
            gateway = ServiceProcess("auth_gateway", gw.env, log_dir=log_dir, port=port)
            try:
                gateway.start()
                body = uvloop.run(_seed(f"http://127.0.0.1:{port}", gw, mongo_url, opts.connections))
                pids = {"gateway": gateway.proc.pid if gateway.proc else None, "mongo": mongo_pid}
                target = Target(name="gateway", url=f"http://127.0.0.1:{port}", pids=pids)
                results["gateway"] = _load(tool, wrk, target, gw, opts)
            except Exception:
                print(gateway.logs()[-4000:], file=sys.stderr)
                raise
            finally:
                gateway.stop()

            body_file = log_dir / "body.json"
            body_file.write_text(json.dumps(body))
            results["body_bytes"] = len(json.dumps(body, separators=(",", ":")))
            bare_port = free_port()
            bare = subprocess.Popen(
                [sys.executable, str(BENCH / "bare_server.py"), str(bare_port), str(body_file)],
                stdout=subprocess.DEVNULL,
            )
            try:
                wait_for_port(bare_port, proc=bare)
                target = Target(name="bare", url=f"http://127.0.0.1:{bare_port}", pids={"bare": bare.pid})
                results["bare"] = _load(tool, wrk, target, gw, opts)
            finally:
                bare.terminate()
                bare.wait(timeout=10)

            results["find_one"] = _find_one(mongo_url, gw, opts, mongo_pid)
        finally:
            # Listed after the gateway stopped, so what it declared beyond the consumer topology goes too.
            uvloop.run(_cleanup(mongo_url, amqp, gw, list_queues_and_exchanges(gw.namespace)))

    gateway_rps = results["gateway"]["rps"]
    results["ratio_gateway_over_bare"] = ratio(gateway_rps, results["bare"]["rps"])
    results["ratio_gateway_over_find_one"] = ratio(gateway_rps, results["find_one"]["ops"])
    print()
    print_table(
        ["(a) GET /connection", "rate/s", "p50 ms", "p99 ms", "gateway / this"],
        [
            [
                "gateway (connection cache)",
                gateway_rps,
                results["gateway"]["p50_ms"],
                results["gateway"]["p99_ms"],
                "",
            ],
            [
                "bare aiohttp, same JSON",
                results["bare"]["rps"],
                results["bare"]["p50_ms"],
                results["bare"]["p99_ms"],
                results["ratio_gateway_over_bare"],
            ],
            [
                "raw find_one (ops/s)",
                results["find_one"]["ops"],
                results["find_one"]["p50_ms"],
                results["find_one"]["p99_ms"],
                results["ratio_gateway_over_find_one"],
            ],
        ],
    )
    print()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=Options.duration)
    parser.add_argument("--warmup", type=float, default=Options.warmup)
    parser.add_argument("--connections", type=int, default=Options.connections)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default=Options.loadgen)
    args = parser.parse_args()
    configure_logging(level="WARNING", json=False, service="bench")
    opts = Options(duration=args.duration, warmup=args.warmup, connections=args.connections, loadgen=args.loadgen)
    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    with mongo_server() as mongo:
        print(json.dumps(run(mongo.url, mongo.pid, amqp, opts), indent=2))


if __name__ == "__main__":
    main()
