"""Benchmark (c): the token refresher, 10,000 connections falling due within one minute.

    uv run --frozen python bench/bench_refresh.py [--connections 10000] [--spread 60] [--replicas 1,2]

``--replicas 0`` runs only the provider ceiling and the scheduling measurement.

Every connection holds a rotating OAuth2 refresh token and an access token that expires 60 s after
its refresh falls due (due times spread evenly over ``--spread`` seconds). The provider is a light
aiohttp token endpoint in its own process: it rotates refresh tokens and counts any reuse. Runs:

    provider alone   the ceiling: 64 concurrent refresh requests from this process, nothing else
    scheduling       the loop and its claims alone, in this process: RefreshLoop over 10,000 due
                     connections with a refresh that only claims (as the service does)
    N refreshers     N token-refresher processes refresh them for real (provider call, compare-and-
                     swap write with the token.refreshed outbox row, publish with confirm)

Scheduling CPU per refresh is measured in the scheduling run, as this process's CPU time
(``time.process_time``) over the run divided by the connections claimed: finding due work (the due
index query), claiming it (the service's own claim: the round's claims made together, one
``update_many`` and one ``find`` by ``_id``; the release rides on the credential write) and
the loop's own bookkeeping, and nothing of the provider call, the credential decryption and
encryption or the write. The full runs report each refresher
process's whole CPU per refresh beside it, from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import uvloop
from aiohttp import web
from common import (
    BENCH,
    ServiceProcess,
    amqp_url,
    check_rabbitmq,
    cpu_seconds,
    free_port,
    latency_ms,
    mongo_server,
    print_table,
    unique,
    wait_for_port,
)
from pymongo import AsyncMongoClient

from keyway_shared.bus import delete_consumer_queues, service_consumers
from keyway_shared.cipher import CredentialCipher
from keyway_shared.logging import configure_logging
from keyway_shared.store import Integration, IntegrationStore, RefreshStateStore, ensure_indexes, open_client
from keyway_shared.store.connections import credentials_ad
from keyway_shared.store.refresh_state import EPOCH

ACCESS_LIFETIME_AFTER_DUE = 60.0  # seconds an access token still lives once its refresh is due
NEW_TOKEN_SECONDS = 3600  # what the provider hands out: due again far after the run ends
CONFIG_KEY = "bench-oauth"


@dataclass(frozen=True, kw_only=True)
class Options:
    connections: int = 10_000
    spread: float = 60.0
    replicas: tuple[int, ...] = (1, 2)
    ceiling_seconds: float = 5.0
    patience: float = 240.0  # after the last due time, give up waiting for stragglers


# --------------------------------------------------------------------------- the provider process


def provider_app() -> web.Application:
    """Refresh tokens are ``rt-<grant>-<generation>``; only the current generation is accepted."""
    generation: dict[str, int] = {}
    stats = {"requests": 0, "refreshes": 0, "reuse": 0}

    async def token(request: web.Request) -> web.Response:
        stats["requests"] += 1
        form = await request.post()
        grant, _, gen = str(form.get("refresh_token", "")).rpartition("-")
        current = generation.get(grant, 0)
        if not grant.startswith("rt-") or not gen.isdigit() or int(gen) != current:
            stats["reuse"] += 1
            return web.json_response({"error": "invalid_grant", "error_description": "token reused"}, status=400)
        generation[grant] = current + 1
        stats["refreshes"] += 1
        return web.json_response(
            {
                "access_token": f"at-{grant}-{current + 1}",
                "refresh_token": f"{grant}-{current + 1}",
                "token_type": "bearer",
                "expires_in": NEW_TOKEN_SECONDS,
            }
        )

    async def get_stats(_request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def reset(_request: web.Request) -> web.Response:
        generation.clear()
        stats.update(requests=0, refreshes=0, reuse=0)
        return web.json_response(stats)

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", reset)
    return app


def serve_provider(port: int) -> None:
    uvloop.run(_serve_provider(port))


async def _serve_provider(port: int) -> None:
    runner = web.AppRunner(provider_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


class ProviderProcess(ServiceProcess):
    def __init__(self, port: int, log_dir: Path) -> None:
        super().__init__("bench_refresh_provider", {}, log_dir=log_dir, port=port)

    def start(self) -> ProviderProcess:
        import subprocess

        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), "provider", str(self.port)], stdout=log, stderr=log
        )
        assert self.port is not None
        wait_for_port(self.port, proc=self.proc)
        return self


async def provider_stats(session: aiohttp.ClientSession, base: str) -> dict[str, int]:
    async with session.get(f"{base}/stats") as resp:
        stats: dict[str, int] = await resp.json()
        return stats


async def ceiling(base: str, seconds: float, concurrency: int = 64) -> dict[str, Any]:
    """The provider alone: refresh requests as fast as ``concurrency`` clients get answers."""
    async with aiohttp.ClientSession() as session:
        await session.post(f"{base}/reset")
        deadline = time.perf_counter() + seconds
        latencies: list[float] = []

        async def client(n: int) -> None:
            gen = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                form = {"grant_type": "refresh_token", "refresh_token": f"rt-ceiling{n}-{gen}"}
                async with session.post(f"{base}/token", data=form) as resp:
                    await resp.read()
                    assert resp.status == 200
                gen += 1
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
        await session.post(f"{base}/reset")
    return {"rate": round(len(latencies) / elapsed), **latency_ms(latencies)}


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True, kw_only=True)
class World:
    database: str
    namespace: str
    encryption_key: str
    providers_file: Path
    started: datetime  # the first due time
    expiries: dict[str, datetime]


async def seed(mongo_url: str, opts: Options, provider_base: str, log_dir: Path, *, lead: float) -> World:
    """Integration + connections written as the gateway writes them, due over ``spread`` seconds."""
    database, namespace = unique("kwbench_"), unique("kwbench")
    key = base64.b64encode(os.urandom(32)).decode()
    cipher = CredentialCipher(current_key=key)
    providers_file = log_dir / f"{database}-providers.yaml"
    providers_file.write_text(
        json.dumps({"bench-oauth2": {"auth_mode": "OAUTH2", "token_url": f"{provider_base}/token"}})
    )
    client = open_client(mongo_url, app_name="bench-refresh")
    db = client[database]
    try:
        await ensure_indexes(db)
        await IntegrationStore(db, cipher).create(
            Integration(
                environment="dev",
                unique_key=CONFIG_KEY,
                provider="bench-oauth2",
                oauth_client_id="bench-client",
                oauth_client_secret="bench-secret",
            )
        )
        now = datetime.now(UTC)
        first_due = now + timedelta(seconds=lead)
        expiries: dict[str, datetime] = {}
        docs: list[dict[str, Any]] = []
        for i in range(opts.connections):
            connection_id = f"c{i:05d}"
            due = first_due + timedelta(seconds=opts.spread * i / opts.connections)
            expires = due + timedelta(seconds=ACCESS_LIFETIME_AFTER_DUE)
            expiries[connection_id] = expires
            credentials = {
                "type": "OAUTH2",
                "access_token": f"at-rt-{i}-0",
                "refresh_token": f"rt-{i}-0",
                "expires_at": expires.isoformat(),
                "raw": {},
            }
            docs.append(
                {
                    "environment": "dev",
                    "provider_config_key": CONFIG_KEY,
                    "connection_id": connection_id,
                    "id": i + 1,
                    "provider": "bench-oauth2",
                    "auth_mode": "OAUTH2",
                    "credentials_enc": cipher.encrypt_json(
                        credentials, associated_data=credentials_ad("dev", CONFIG_KEY, connection_id)
                    ),
                    "credentials_key_id": cipher.current_key_id,
                    "credentials_expires_at": expires,
                    "connection_config": {},
                    "metadata": None,
                    "created_at": now,
                    "updated_at": now,
                    "refresh_due_at": due,
                    "refresh_failed": False,
                    "refresh_error": None,
                    "refresh_failed_days": 0,
                    "refresh_last_failed_day": None,
                    "refresh_exhausted": False,
                    "refresh_attempt": 0,
                    "refresh_lease_until": EPOCH,
                }
            )
        for start in range(0, len(docs), 1000):
            await db["connections"].insert_many(docs[start : start + 1000], ordered=False)
    finally:
        await client.close()
    return World(
        database=database,
        namespace=namespace,
        encryption_key=key,
        providers_file=providers_file,
        started=first_due,
        expiries=expiries,
    )


async def outcome(mongo_url: str, world: World) -> dict[str, Any]:
    """Per connection: refreshed at all, before its access token expired, and how late."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        cursor = client[world.database]["connections"].find(
            {}, {"connection_id": 1, "updated_at": 1, "credentials_expires_at": 1}
        )
        refreshed = before = 0
        lags: list[float] = []
        last: datetime | None = None
        async for doc in cursor:
            expires = world.expiries[doc["connection_id"]]
            if doc["credentials_expires_at"] <= expires:
                continue  # never refreshed
            refreshed += 1
            at: datetime = doc["updated_at"]
            before += at <= expires
            due = expires - timedelta(seconds=ACCESS_LIFETIME_AFTER_DUE)
            lags.append(max((at - due).total_seconds(), 0.0))
            last = at if last is None or at > last else last
    finally:
        await client.close()
    return {"refreshed": refreshed, "before_expiry": before, "lags": lags, "last": last}


async def cleanup(mongo_url: str, amqp: str, world: World) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await client.drop_database(world.database)
    finally:
        await client.close()
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        specs = list(service_consumers(world.namespace).values())
        for spec in specs:
            await delete_consumer_queues(channel, spec)
        for exchange in {specs[0].exchange, specs[0].dead_letter_exchange}:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


# --------------------------------------------------------------------------- the runs


async def scheduling_run(mongo_url: str, opts: Options, provider_base: str, log_dir: Path) -> dict[str, Any]:
    """The loop and its claims alone, in this process, every connection due at once."""
    from token_refresher.loop import RefreshLoop

    # The same spread of due times, all in the past: everything is due when the loop starts.
    world = await seed(mongo_url, opts, provider_base, log_dir, lead=-opts.spread)
    client = open_client(mongo_url, app_name="bench-refresh-scheduling")
    state = RefreshStateStore(client, client[world.database], CredentialCipher(current_key=world.encryption_key))
    claimed = 0
    done = asyncio.Event()

    async def claim_only(doc_id: Any) -> Any:
        # What a successful background refresh spends on scheduling: the claim, as the service
        # makes it (group-committed with the round's other claims, reading the documents back).
        # Its release is folded into the credential write (save_refreshed clears the lease).
        nonlocal claimed
        if await state.claim_due(doc_id, owner="bench", lease=timedelta(hours=1)) is None:
            return "not_claimed"
        claimed += 1
        if claimed == opts.connections:
            done.set()
        return "refreshed"

    loop = RefreshLoop(state=state, refresh=claim_only, concurrency=32, batch=64, max_sleep=1.0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    loop.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=opts.patience)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await loop.stop(grace=5)
    await client.close()
    await cleanup(mongo_url, amqp_url(), world)
    return {
        "claimed": claimed,
        "claims_per_s": round(claimed / wall),
        "cpu_ms_per_claim": round(cpu / max(claimed, 1) * 1000, 3),
        "rounds": loop.rounds,
    }


async def refresher_run(
    mongo_url: str, mongo_pid: int | None, amqp: str, opts: Options, replicas: int, provider: ProviderProcess
) -> dict[str, Any]:
    base = f"http://127.0.0.1:{provider.port}"
    log_dir = provider.log_path.parent
    lead = 8.0  # seconds for the refresher processes to start before the first due time
    world = await seed(mongo_url, opts, base, log_dir, lead=lead)
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": world.database,
        "AMQP_URL": amqp,
        "KEYWAY_BUS_NAMESPACE": world.namespace,
        "KEYWAY_QUEUE_TYPE": "classic",
        "KEYWAY_ENCRYPTION_KEY": world.encryption_key,
        "KEYWAY_PROVIDERS_FILE": str(world.providers_file),
        "KEYWAY_EGRESS_ALLOWLIST": "127.0.0.0/8",
        "KEYWAY_LOG_LEVEL": "WARNING",
        "KEYWAY_HOST": "127.0.0.1",
    }
    procs: list[ServiceProcess] = []
    try:
        async with aiohttp.ClientSession() as session:
            await session.post(f"{base}/reset")
            for _ in range(replicas):
                port = free_port()
                proc = ServiceProcess(
                    "token_refresher", env | {"KEYWAY_TOKEN_REFRESHER_PORT": str(port)}, log_dir=log_dir, port=port
                )
                procs.append(proc.start())
            for proc in procs:
                while True:
                    try:
                        async with session.get(f"http://127.0.0.1:{proc.port}/readyz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
            pids = [p.proc.pid for p in procs if p.proc is not None]
            cpu0 = [cpu_seconds(pid) for pid in pids]
            db_cpu0, provider_cpu0 = cpu_seconds(mongo_pid), cpu_seconds(provider.proc.pid if provider.proc else None)
            wall0 = time.perf_counter()
            deadline = time.monotonic() + lead + opts.spread + opts.patience
            while time.monotonic() < deadline:
                stats = await provider_stats(session, base)
                if stats["refreshes"] >= opts.connections:
                    break
                await asyncio.sleep(0.5)
            wall = time.perf_counter() - wall0
            cpu = sum(cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True))
            db_cpu = cpu_seconds(mongo_pid) - db_cpu0
            provider_cpu = cpu_seconds(provider.proc.pid if provider.proc else None) - provider_cpu0
            stats = await provider_stats(session, base)
    finally:
        for proc in procs:
            proc.stop()
    result = await outcome(mongo_url, world)
    await cleanup(mongo_url, amqp, world)
    busy = (result["last"] - world.started).total_seconds() if result["last"] else float("nan")
    lags = latency_ms(result["lags"]) if result["lags"] else {}
    return {
        "replicas": replicas,
        "refreshed": result["refreshed"],
        "before_expiry_pct": round(100 * result["before_expiry"] / opts.connections, 2),
        "rate": round(result["refreshed"] / busy) if busy > 0 else None,
        "busy_seconds": round(busy, 1),
        "lag_p50_ms": lags.get("p50_ms"),
        "lag_p99_ms": lags.get("p99_ms"),
        "lag_max_ms": lags.get("max_ms"),
        "refresher_cpu_ms_per_refresh": round(cpu / max(result["refreshed"], 1) * 1000, 3),
        "db_cpu_pct": round(100 * db_cpu / wall),
        "provider_cpu_pct": round(100 * provider_cpu / wall),
        "reuse_detected": stats["reuse"],
        "provider_requests": stats["requests"],
    }


def run(mongo_url: str, mongo_pid: int | None, amqp: str, opts: Options) -> dict[str, Any]:
    print(f"(c) token refresher: {opts.connections} connections due within {opts.spread:g} s", flush=True)
    results: dict[str, Any] = {"connections": opts.connections, "spread_seconds": opts.spread}
    with tempfile.TemporaryDirectory(prefix="kwbench-refresh-") as tmp:
        provider = ProviderProcess(free_port(), Path(tmp)).start()
        base = f"http://127.0.0.1:{provider.port}"
        try:
            results["provider_alone"] = uvloop.run(ceiling(base, opts.ceiling_seconds))
            print(f"  provider alone: {results['provider_alone']['rate']} refreshes/s", flush=True)
            results["scheduling"] = uvloop.run(scheduling_run(mongo_url, opts, base, Path(tmp)))
            print(f"  scheduling alone: {results['scheduling']}", flush=True)
            for replicas in opts.replicas:
                figures = uvloop.run(refresher_run(mongo_url, mongo_pid, amqp, opts, replicas, provider))
                results[f"refreshers_{replicas}"] = figures
                print(f"  {replicas} refresher(s): {figures}", flush=True)
        finally:
            provider.stop()
    summary(results)
    return results


def summary(results: dict[str, Any]) -> None:
    rows: list[list[Any]] = []
    ceiling_rate = results["provider_alone"]["rate"]
    rows.append(["provider alone (ceiling)", ceiling_rate, "", "", "", ""])
    sched = results["scheduling"]
    rows.append(["claims alone (1 process)", sched["claims_per_s"], "", "", sched["cpu_ms_per_claim"], ""])
    for key in sorted(k for k in results if k.startswith("refreshers_")):
        r = results[key]
        rows.append(
            [
                f"{r['replicas']} refresher process(es)",
                r["rate"],
                r["before_expiry_pct"],
                r["lag_p99_ms"],
                r["refresher_cpu_ms_per_refresh"],
                r["db_cpu_pct"],
            ]
        )
    print_table(["run", "refreshes/s", "% before expiry", "lag p99 ms", "CPU ms/refresh", "DB CPU %"], rows)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "provider":
        serve_provider(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=Options.connections)
    parser.add_argument("--spread", type=float, default=Options.spread)
    parser.add_argument("--replicas", default="1,2")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=False, service="bench")
    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    opts = Options(
        connections=args.connections,
        spread=args.spread,
        replicas=tuple(int(n) for n in args.replicas.split(",") if n.strip() not in {"", "0"}),
    )
    with mongo_server() as mongo:
        results = run(mongo.url, mongo.pid, amqp, opts)
    out = BENCH / "results" / "refresh.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
