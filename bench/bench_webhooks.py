"""Benchmark (c): webhooks, event -> dispatcher -> a receiver that verifies every signature.

    uv run --frozen python bench/bench_webhooks.py [--events 20000] [--queue-type quorum] [--processes 1,2] [--rounds 3]

A receiver process (aiohttp on uvloop, 127.0.0.1) checks each webhook's Standard Webhooks signature
(HMAC-SHA256 over ``id.timestamp.body`` with the environment's ``whsec_`` key) and its
``X-Nango-Signature``, and takes the time it arrived. Each webhook's body carries, in its
``connectionId``, the ``time.monotonic()`` at which its event's publish started (one clock for
every process on Linux), so the receiver measures event -> receipt latency.

    raw        this process POSTs the same signed bodies with one aiohttp session, 64 requests in
               flight (the dispatcher's concurrency): what any dispatcher could at best achieve here
    keyway     the real dispatcher (``python -m webhook_dispatcher``, 1 then 2 processes): events
               published with confirms (100 in flight) to the events exchange, consumed, signed,
               POSTed, every attempt recorded in MongoDB and announced as ``webhook.delivered``;
               one process in ``--rounds`` runs, each with a fresh dispatcher, the median one kept
    raw, paced after each dispatcher run, the raw sender again for 10 s, each POST started when
               due at the rate that run delivered

Each row also gives the sender's own CPU per delivered webhook: the CPU time the dispatcher
processes used during the run divided by the webhooks delivered, and for the raw rows this
process's (signing and POSTing). Their ratio is what the dispatcher costs over a bare POST, and
only the paced raw row makes it a like-for-like one: a POST's CPU depends on the rate. Flat out,
one loop wakeup and one ``recv`` serve many answers; at the dispatcher's few hundred a second each
POST pays for its own, and a bare aiohttp POST costs two to three times what it does flat out.

Publishing runs flat out alongside, so the dispatcher's queue fills and the latencies are at
saturation (they include the wait in the queue). A second, paced run at half the measured rate
gives the latency of a dispatcher that keeps up. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp
import uvloop
from common import (
    ROOT,
    ServiceProcess,
    amqp_url,
    check_rabbitmq,
    cpu_seconds,
    delete_namespace,
    find_pid,
    free_port,
    latency_ms,
    machine_busy,
    machine_jiffies,
    mongo_server,
    print_table,
    ratio,
    unique,
    wait_for_port,
)

IN_FLIGHT = 100  # publishes awaiting their confirm at once
CONCURRENCY = 64  # the dispatcher's prefetch per queue, and the raw client's requests in flight
WARMUP = 500


@dataclass(frozen=True, kw_only=True)
class Options:
    events: int = 20_000
    queue_type: str = "quorum"
    processes: tuple[int, ...] = (1, 2)
    patience: float = 60.0  # stop waiting once no webhook arrived for this long
    # One flat-out run of one dispatcher lasts about ten seconds here, and its CPU per webhook moves
    # by a fifth from run to run with how fast the database answers at that moment (bigger batches
    # when it is fast): the figure is the median run of these, each run's given beside it.
    rounds: int = 3


TTL_SWEEP_SECONDS = 60.0  # MongoDB's own interval; see common.mongo_server


# -- the receiver (its own process) ------------------------------------------------------------


def serve_receiver(port: int, secret_key: str, signing_key: str) -> None:
    from aiohttp import web

    key = base64.b64decode(signing_key.removeprefix("whsec_"))
    secret = secret_key.encode()
    state: dict[str, Any] = {"latencies": [], "failed": 0, "seen": set(), "duplicates": 0, "last": 0.0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.monotonic()
        msg_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "")
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
        given = [s.partition(",")[2].encode() for s in request.headers.get("webhook-signature", "").split()]
        nango = hashlib.sha256(secret + body).hexdigest()
        if not any(hmac.compare_digest(expected, g) for g in given) or not hmac.compare_digest(
            nango, request.headers.get("X-Nango-Signature", "")
        ):
            state["failed"] += 1
            return web.Response(status=401)
        marker = json.loads(body)["connectionId"]  # b<seq>-<monotonic at publish>
        if marker in state["seen"]:
            state["duplicates"] += 1
        else:
            state["seen"].add(marker)
            state["latencies"].append(now - float(marker.split("-", 1)[1]))
            state["last"] = now
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        full = request.query.get("full") == "1"  # the latencies only at the end: polling stays cheap
        return web.json_response(
            {
                "count": len(state["latencies"]),
                "failed": state["failed"],
                "duplicates": state["duplicates"],
                "last": state["last"],
                "latencies": state["latencies"] if full else [],
            }
        )

    async def reset(_request: web.Request) -> web.Response:
        state.update(latencies=[], failed=0, seen=set(), duplicates=0, last=0.0)
        return web.json_response({"reset": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class Receiver:
    def __init__(self, secret_key: str, signing_key: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-receiver", str(self.port), secret_key, signing_key],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def stats(self, http: aiohttp.ClientSession, *, full: bool = False) -> dict[str, Any]:
        async with http.get(f"http://127.0.0.1:{self.port}/stats", params={"full": "1" if full else "0"}) as resp:
            return await resp.json()  # type: ignore[no-any-return]

    async def reset(self, http: aiohttp.ClientSession) -> None:
        async with http.post(f"http://127.0.0.1:{self.port}/reset") as resp:
            resp.raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# -- measurements ------------------------------------------------------------------------------


def _body(seq: int, sent: float) -> bytes:
    """The body the dispatcher sends for a ``connection.created`` (same size, same key order)."""
    body = {
        "from": "nango",
        "type": "auth",
        "connectionId": f"b{seq}-{sent!r}",
        "providerConfigKey": "bench",
        "authMode": "API_KEY",
        "provider": "posthog",
        "environment": "dev",
        "operation": "creation",
        "success": True,
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def _wait_for(receiver: Receiver, http: aiohttp.ClientSession, count: int, patience: float) -> dict[str, Any]:
    """Until ``count`` webhooks arrived, or none did for ``patience`` seconds."""
    seen, stalled_since = -1, time.monotonic()
    while True:
        stats = await receiver.stats(http)
        if stats["count"] >= count:
            return await receiver.stats(http, full=True)
        if stats["count"] != seen:
            seen, stalled_since = stats["count"], time.monotonic()
        elif time.monotonic() - stalled_since > patience:
            return await receiver.stats(http, full=True)
        await asyncio.sleep(0.5)


def _figures(
    stats: dict[str, Any], started: float, events: int, cpu: dict[str, float], wall: float, machine: float
) -> dict[str, Any]:
    count = stats["count"]
    elapsed = stats["last"] - started if count else float("nan")
    # CPU of every process involved, per webhook: steadier than a rate when other work shares the cores.
    per_delivery = round(sum(cpu.values()) * wall / count * 1000, 2) if count else float("nan")
    by_process = {label: round(cores * wall / count * 1000, 3) for label, cores in cpu.items()} if count else {}
    return {
        "events": events,
        "delivered": count,
        "signature_failures": stats["failed"],
        "duplicates": stats["duplicates"],
        "seconds": round(elapsed, 2),
        "rate": round(count / elapsed, 1) if count else 0.0,
        **latency_ms(stats["latencies"]),
        "cpu_cores": cpu,
        "cpu_ms_per_delivery": per_delivery,
        "cpu_ms_per_delivery_by_process": by_process,
        # Near os.cpu_count(): the machine is saturated, and the rate is bounded by the CPU per webhook.
        "machine_busy_cores": machine,
    }


def _cpu(watch: dict[str, int | None], before: dict[str, float], wall: float) -> dict[str, float]:
    return {label: round((cpu_seconds(pid) - before[label]) / wall, 2) for label, pid in watch.items()}


async def _when_due(started: float, n: int, rate: float | None) -> None:
    """Paced (``rate`` per second), the ``n``-th item of a run that began at ``started`` is due at
    ``started + n / rate``: wait until then. Unpaced (``None``): go at once."""
    if rate is not None and (wait := started + n / rate - time.monotonic()) > 0:
        await asyncio.sleep(wait)


async def raw_posts(
    receiver: Receiver,
    http: aiohttp.ClientSession,
    secret_key: str,
    signing_key: str,
    events: int,
    watch: Any,
    *,
    rate: float | None = None,
) -> dict[str, Any]:
    """``events`` signed POSTs, 64 in flight: flat out, or (``rate``) each started when due
    (:func:`_when_due`, as :func:`_publish_all` paces events)."""
    key = base64.b64decode(signing_key.removeprefix("whsec_"))
    await receiver.reset(http)
    counter = iter(range(events))
    before = {label: cpu_seconds(pid) for label, pid in watch.items()}
    machine = machine_jiffies()
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as client:

        async def worker() -> None:
            for seq in counter:
                await _when_due(started, seq, rate)
                body = _body(seq, time.monotonic())
                msg_id = f"msg_{uuid.uuid4().hex}"
                stamp = str(int(time.time()))
                signature = base64.b64encode(
                    hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
                ).decode()
                headers = {
                    "Content-Type": "application/json",
                    "X-Nango-Signature": hashlib.sha256(secret_key.encode() + body).hexdigest(),
                    "X-Nango-Hmac-Sha256": hmac.new(secret_key.encode(), body, hashlib.sha256).hexdigest(),
                    "webhook-id": msg_id,
                    "webhook-timestamp": stamp,
                    "webhook-signature": f"v1,{signature}",
                }
                async with client.post(receiver.url, data=body, headers=headers) as resp:
                    await resp.read()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    stats = await receiver.stats(http, full=True)
    wall = time.monotonic() - started
    return _figures(stats, started, events, _cpu(watch, before, wall), wall, machine_busy(machine))


async def _publish_all(publisher: Any, events: int, *, rate: float | None, first_seq: int) -> None:
    from keyway_shared.events import ConnectionCreated, make_event

    counter = iter(range(first_seq, first_seq + events))
    started = time.monotonic()

    async def worker() -> None:
        for seq in counter:
            await _when_due(started, seq - first_seq, rate)
            data = ConnectionCreated(
                connection_id=f"b{seq}-{time.monotonic()!r}",
                provider_config_key="bench",
                provider="posthog",
                auth_mode="API_KEY",
            )
            await publisher.publish(make_event(data, type="connection.created", source="/bench", environment="dev"))

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def _consumers(amqp: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.consumer_count or 0)
        except aio_pika.exceptions.ChannelClosed:
            return 0
    finally:
        await connection.close()


async def through_dispatcher(
    *,
    processes: int,
    amqp: str,
    mongo_url: str,
    database: str,
    encryption_key: str,
    receiver: Receiver,
    http: aiohttp.ClientSession,
    opts: Options,
    watch: dict[str, int | None],
    rate: float | None = None,
    events: int | None = None,
) -> dict[str, Any]:
    from keyway_shared.bus import EventPublisher

    namespace = unique("kwbenchwh")
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database,
        "AMQP_URL": amqp,
        "KEYWAY_BUS_NAMESPACE": namespace,
        "KEYWAY_QUEUE_TYPE": opts.queue_type,
        "KEYWAY_ENCRYPTION_KEY": encryption_key,
        "KEYWAY_EGRESS_ALLOWLIST": "127.0.0.1/32",
        "KEYWAY_LOG_LEVEL": "WARNING",
        "KEYWAY_WEBHOOK_CONCURRENCY": str(CONCURRENCY),
    }
    log_dir = ROOT / "test-output"
    log_dir.mkdir(exist_ok=True)
    procs = [
        ServiceProcess(
            "webhook_dispatcher", env | {"KEYWAY_WEBHOOK_DISPATCHER_PORT": str(port)}, log_dir=log_dir, port=port
        ).start()
        for port in (free_port() for _ in range(processes))
    ]
    connection = await aio_pika.connect_robust(amqp)
    publisher = EventPublisher(connection, exchange_name=f"{namespace}.events")
    events = events or opts.events
    try:
        deadline = time.monotonic() + 60
        while await _consumers(amqp, f"{namespace}.webhook-dispatcher.deliver") < processes:
            if time.monotonic() > deadline:
                raise SystemExit("the dispatcher did not start consuming; see test-output/webhook_dispatcher-*.log")
            await asyncio.sleep(0.2)
        await receiver.reset(http)
        await _publish_all(publisher, WARMUP, rate=None, first_seq=10_000_000)
        await _wait_for(receiver, http, WARMUP, 60)
        await receiver.reset(http)
        proc_watch = watch | {f"dispatcher{i + 1}": p.proc.pid if p.proc else None for i, p in enumerate(procs)}
        before = {label: cpu_seconds(pid) for label, pid in proc_watch.items()}
        machine = machine_jiffies()
        started = time.monotonic()
        await _publish_all(publisher, events, rate=rate, first_seq=0)
        published = time.monotonic() - started
        stats = await _wait_for(receiver, http, events, opts.patience)
        wall = time.monotonic() - started
        result = _figures(stats, started, events, _cpu(proc_watch, before, wall), wall, machine_busy(machine))
        result["publish_rate"] = round(events / published, 1)
        return result
    finally:
        await publisher.close()
        await connection.close()
        for proc in procs:
            proc.stop()
        await delete_namespace(amqp, namespace)


async def run_async(amqp: str, mongo_url: str, mongo_pid: int | None, opts: Options) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    from keyway_shared.cipher import CredentialCipher
    from keyway_shared.store import EnvironmentStore, WebhookKeyStore, WebhookSettings, ensure_indexes

    database = unique("kwbench_")
    encryption_key = base64.b64encode(os.urandom(32)).decode()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[database]
    await ensure_indexes(db)
    cipher = CredentialCipher(current_key=encryption_key)
    env = await EnvironmentStore(db, cipher).ensure("dev")
    [signing_key] = await WebhookKeyStore(db, cipher).signing_keys("dev")
    receiver = Receiver(env.secret_key, signing_key)
    await EnvironmentStore(db, cipher).update_settings("dev", webhooks=WebhookSettings(primary_url=receiver.url))
    watch = {
        label: pid
        for label, pid in {
            "bench": os.getpid(),
            "receiver": receiver.proc.pid,
            "rabbitmq": find_pid("beam.smp"),
            "mongo": mongo_pid,
        }.items()
        if pid
    }
    results: dict[str, Any] = {"events": opts.events, "queue_type": opts.queue_type, "concurrency": CONCURRENCY}
    try:
        async with aiohttp.ClientSession() as http:
            results["raw"] = raw = await raw_posts(receiver, http, env.secret_key, signing_key, opts.events, watch)
            _raw_own_cpu(raw)
            _line("raw aiohttp POSTs (1 process)", raw)

            async def raw_at(rate: float, key: str) -> dict[str, Any]:
                # A bare POST's CPU depends on the rate (at a low one each POST pays its own syscalls
                # and loop wakeups), so the dispatcher is also compared with POSTs at its own rate.
                events = min(opts.events, int(rate * 10))
                row = await raw_posts(receiver, http, env.secret_key, signing_key, events, watch, rate=rate)
                row["offered_rate"] = round(rate, 1)
                _raw_own_cpu(row)
                results[key] = row
                _line(f"raw aiohttp POSTs, paced at {rate:,.0f}/s", row)
                return row

            for n in opts.processes:
                common: dict[str, Any] = {
                    "amqp": amqp,
                    "mongo_url": mongo_url,
                    "database": database,
                    "encryption_key": encryption_key,
                    "receiver": receiver,
                    "http": http,
                    "opts": opts,
                    "watch": watch,
                }
                label = f"dispatcher, {n} process{'es' if n > 1 else ''}"
                figures = await _median_round(
                    functools.partial(through_dispatcher, processes=n, **common),
                    raw,
                    label,
                    opts.rounds if n == 1 else 1,
                )
                results[f"dispatcher_{n}"] = figures
                _line(label, figures)
                if figures["rate"]:
                    _versus_same_rate(figures, await raw_at(figures["rate"], f"raw_at_dispatcher_{n}_rate"))
                if n == 1 and figures["rate"]:
                    paced_rate = figures["rate"] / 2
                    paced = await through_dispatcher(
                        processes=1, rate=paced_rate, events=min(opts.events, int(paced_rate * 10)), **common
                    )
                    paced["offered_rate"] = round(paced_rate, 1)
                    _own_cpu(paced, raw)
                    results["dispatcher_1_paced"] = paced
                    _line(f"dispatcher, 1 process, paced at {paced_rate:,.0f}/s", paced)
                    _versus_same_rate(paced, await raw_at(paced["rate"], "raw_at_paced_rate"))
    finally:
        receiver.stop()
        await client.drop_database(database)
        await client.close()
    return results


async def _median_round(
    measure: Callable[[], Awaitable[dict[str, Any]]], raw: dict[str, Any], label: str, rounds: int
) -> dict[str, Any]:
    """The round whose dispatcher CPU per webhook is the median of ``rounds`` runs, with every run's."""
    runs = []
    for number in range(rounds):
        row = await measure()
        row["ratio_over_raw"] = ratio(row["rate"], raw["rate"])
        _own_cpu(row, raw)
        if rounds > 1:
            _line(f"{label}, round {number + 1}/{rounds}", row)
        runs.append(row)
    median = sorted(runs, key=lambda row: row["sender_cpu_ms_per_delivery"])[len(runs) // 2]
    median["rounds_sender_cpu_ms_per_delivery"] = [row["sender_cpu_ms_per_delivery"] for row in runs]
    median["rounds_rate"] = [row["rate"] for row in runs]
    return median


def _raw_own_cpu(raw: dict[str, Any]) -> None:
    """The raw sender's own CPU per webhook: this process signing and POSTing, nothing else."""
    raw["sender_cpu_ms_per_delivery"] = raw["cpu_ms_per_delivery_by_process"].get("bench", float("nan"))


def _own_cpu(row: dict[str, Any], raw: dict[str, Any]) -> None:
    """The dispatcher processes' own CPU per delivered webhook (process CPU time / deliveries),
    and its ratio to what the raw sender spent per POST flat out in the same run."""
    spent = _process_ms(row, "dispatcher")
    row["sender_cpu_ms_per_delivery"] = spent if isinstance(spent, float) else float("nan")
    row["sender_cpu_over_raw"] = ratio(row["sender_cpu_ms_per_delivery"], raw["sender_cpu_ms_per_delivery"])


def _versus_same_rate(row: dict[str, Any], same_rate: dict[str, Any]) -> None:
    """The like-for-like ratio: the dispatcher's own CPU per webhook over the raw sender's when
    it POSTs at the rate the dispatcher delivered."""
    bare = row["raw_same_rate_cpu_ms_per_delivery"] = same_rate["sender_cpu_ms_per_delivery"]
    row["sender_cpu_over_raw_same_rate"] = ratio(row["sender_cpu_ms_per_delivery"], bare)
    print(
        f"  {'':<42} the dispatcher's own CPU per webhook = {row['sender_cpu_over_raw_same_rate']} x"
        f" the raw sender's at {row['rate']:,.0f}/s",
        flush=True,
    )


def _line(name: str, row: dict[str, Any]) -> None:
    print(
        f"  {name:<42} {row['rate']:>8,.0f} deliveries/s  p50 {row['p50_ms']:,.1f} ms  p99 {row['p99_ms']:,.1f} ms"
        f"  ({row['delivered']}/{row['events']} in {row['seconds']} s, {row['signature_failures']} bad signatures,"
        f" {row['duplicates']} duplicates)  CPU cores {row['cpu_cores']}, {row['cpu_ms_per_delivery']} ms per webhook,"
        f" machine busy {row['machine_busy_cores']} cores",
        flush=True,
    )
    own = row.get("sender_cpu_ms_per_delivery")
    if own is not None:
        versus = f" = {row['sender_cpu_over_raw']} x the raw sender's flat out" if "sender_cpu_over_raw" in row else ""
        print(f"  {'':<42} sender's own CPU: {own} ms per webhook{versus}", flush=True)


def run(amqp: str, mongo_url: str, mongo_pid: int | None, opts: Options) -> dict[str, Any]:
    print(
        f"(c) webhooks event -> receipt: {opts.events} events, {opts.queue_type} queues, {CONCURRENCY} in flight,"
        " a receiver verifying every signature",
        flush=True,
    )
    results = uvloop.run(run_async(amqp, mongo_url, mongo_pid, opts))
    print()
    labels = {"raw": "raw aiohttp POSTs, 1 process"}
    for n in opts.processes:
        labels[f"dispatcher_{n}"] = f"dispatcher, {n} process{'es' if n > 1 else ''}"
        labels[f"raw_at_dispatcher_{n}_rate"] = "raw POSTs at that rate"
    labels |= {
        "dispatcher_1_paced": "dispatcher, 1 process, paced at half rate",
        "raw_at_paced_rate": "raw POSTs at that rate",
    }
    rows = [
        [
            label,
            results[key]["rate"],
            results[key]["p50_ms"],
            results[key]["p99_ms"],
            results[key]["cpu_ms_per_delivery"],
            results[key]["machine_busy_cores"],
            results[key].get("ratio_over_raw", ""),
        ]
        for key, label in labels.items()
        if key in results
    ]
    print_table(
        ["(c) webhooks", "deliveries/s", "p50 ms", "p99 ms", "CPU ms/webhook", "machine busy cores", "this / raw"],
        rows,
    )
    print()
    # Where the CPU goes: on a saturated machine the rate is about cores / (sum of these).
    processes = ["dispatcher", "rabbitmq", "mongo", "bench", "receiver"]
    split = [
        [label, *(_process_ms(results[key], name) for name in processes)]
        for key, label in labels.items()
        if key in results
    ]
    print_table(["(c) CPU ms per webhook", *processes], split)
    print()
    # The sender's own share: the dispatcher processes, or this process for the raw POSTs.
    own = [
        [
            label,
            results[key]["rate"],
            results[key]["sender_cpu_ms_per_delivery"],
            results["raw"]["sender_cpu_ms_per_delivery"],
            results[key].get("sender_cpu_over_raw", ""),
            results[key].get("raw_same_rate_cpu_ms_per_delivery", ""),
            results[key].get("sender_cpu_over_raw_same_rate", ""),
        ]
        for key, label in labels.items()
        if key in results
    ]
    print_table(
        [
            "(c) sender's own CPU",
            "deliveries/s",
            "ms/webhook",
            "raw flat out",
            "this / raw",
            "raw at this rate",
            "this / raw at this rate",
        ],
        own,
    )
    print()
    return results


def _process_ms(row: dict[str, Any], name: str) -> float | str:
    """CPU ms per webhook of one kind of process (the dispatcher's summed over its processes)."""
    spent = [ms for label, ms in row["cpu_ms_per_delivery_by_process"].items() if label.rstrip("0123456789") == name]
    return round(sum(spent), 3) if spent else ""


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-receiver":
        serve_receiver(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=Options.events)
    parser.add_argument("--queue-type", choices=["classic", "quorum"], default=Options.queue_type)
    parser.add_argument("--processes", default="1,2", help="dispatcher process counts to measure, e.g. 1,2")
    parser.add_argument(
        "--rounds", type=int, default=Options.rounds, help="flat-out runs of one dispatcher; the median one counts"
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    from keyway_shared.logging import configure_logging

    configure_logging(level="WARNING", json=False, service="bench")
    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    opts = Options(
        events=args.events,
        queue_type=args.queue_type,
        processes=tuple(int(n) for n in args.processes.split(",") if n),
        rounds=max(1, args.rounds),
    )
    with mongo_server(ttl_sweep_seconds=TTL_SWEEP_SECONDS) as mongo:
        results = run(amqp, mongo.url, mongo.pid, opts)
    if args.json:
        with open(args.json, "w") as out:
            out.write(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
