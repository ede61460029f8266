"""Benchmark (b): an event's round trip, publish -> consumer handler, through Keyway's bus and raw aio-pika.

    uv run --frozen python bench/bench_event_roundtrip.py [--events 20000] [--queue-types classic,quorum]

Producer and consumer run in ONE process (on uvloop, as the services do), each on its own AMQP
connection, so both share one core's worth of Python. Each event carries ``time.perf_counter()`` taken
just before its publish starts (``ActivityMessage.meta.sent``); the handler records ``now - sent``.
Publishing is pipelined: 100 workers each await their confirm, so 100 publishes are always in flight.

    raw       aio-pika: persistent message with confirms to a topic exchange; consume, json.loads, ack
    keyway    EventPublisher (confirms) -> ConsumerRunner (envelope validation, log context, ack policy)
    guarded   keyway plus MongoIdempotencyGuard (an insert and an update per event on MongoDB)

When publishing outruns the consumer, messages queue up and the latency includes that wait: the
p50/p99 here are latencies at saturation, not at a comfortable rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import uvloop
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from common import amqp_url, check_rabbitmq, cpu_seconds, find_pid, latency_ms, mongo_server, print_table, ratio, unique

from keyway_shared.bus import (
    ConsumerRunner,
    ConsumerSpec,
    EventPublisher,
    MessageContext,
    connect,
    delete_consumer_queues,
)
from keyway_shared.events import ActivityMessage, CloudEvent, make_event
from keyway_shared.logging import configure_logging
from keyway_shared.store import MongoIdempotencyGuard, ensure_indexes, open_client

IN_FLIGHT = 100
PREFETCH = 64  # ConsumerSpec's default; the raw consumer gets the same
ROUTING_KEY = "activity.message"

Watch = dict[str, int | None]  # label -> pid whose CPU time each measurement reports


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How much one measurement may publish: at most ``events``, and nothing after ``seconds``."""

    events: int = 20_000
    seconds: float = 10.0
    patience: float = 60.0  # after publishing, wait this long at most for the consumer to catch up


@dataclass(frozen=True, kw_only=True)
class Options:
    budget: Budget = field(default_factory=Budget)
    queue_types: tuple[str, ...] = ("classic", "quorum")


@dataclass
class Recorder:
    """The handler side: latencies from ``sent`` to now, and an event once all published arrived."""

    expected: int | None = None  # known once publishing has stopped
    latencies: list[float] = field(default_factory=list)
    last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, sent: float) -> None:
        self.last = time.perf_counter()
        self.latencies.append(self.last - sent)
        self._check()

    def expect(self, count: int) -> None:
        self.expected = count
        self._check()

    def _check(self) -> None:
        if self.expected is not None and len(self.latencies) >= self.expected:
            self.done.set()


async def _pipelined(budget: Budget, publish_one: Callable[[int], Awaitable[None]]) -> int:
    """``IN_FLIGHT`` workers, each publishing and awaiting its confirm, within the budget; returns the count."""
    counter = iter(range(budget.events))
    stop_at = time.perf_counter() + budget.seconds
    published = 0

    async def worker() -> None:
        nonlocal published
        for seq in counter:
            if time.perf_counter() >= stop_at:
                return
            await publish_one(seq)
            published += 1

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return published


async def _measure(
    name: str, budget: Budget, recorder: Recorder, publish_one: Callable[[int], Awaitable[None]], watch: Watch
) -> dict[str, Any]:
    cpu_before = {label: cpu_seconds(pid) for label, pid in watch.items()}
    started = time.perf_counter()
    events = await _pipelined(budget, publish_one)
    published = time.perf_counter() - started
    recorder.expect(events)
    try:
        await asyncio.wait_for(recorder.done.wait(), timeout=budget.patience)
    except TimeoutError:
        print(f"  {name}: only {len(recorder.latencies)} of {events} events arrived within {budget.patience:g} s")
    handled = len(recorder.latencies)
    elapsed = recorder.last - started if handled else float("nan")
    wall = time.perf_counter() - started
    cpu = {label: round((cpu_seconds(pid) - cpu_before[label]) / wall, 2) for label, pid in watch.items()}
    result = {
        "events": events,
        "handled": handled,
        "seconds": round(elapsed, 2),
        "publish_rate": round(events / published, 1),
        "rate": round(handled / elapsed, 1) if handled else 0.0,
        **latency_ms(recorder.latencies),
        "cpu_cores": cpu,
    }
    print(
        f"  {name:<22} {result['rate']:>8,.0f} events/s  (publish {result['publish_rate']:,.0f}/s)"
        f"  p50 {result['p50_ms']:,.1f} ms  p99 {result['p99_ms']:,.1f} ms  ({handled}/{events} in {elapsed:.1f} s)"
        f"  CPU cores {cpu}",
        flush=True,
    )
    return result


async def raw_roundtrip(amqp: str, queue_type: str, budget: Budget, watch: Watch) -> dict[str, Any]:
    """Plain aio-pika: the floor Keyway's bus is compared with."""
    namespace = unique("kwbench")
    exchange_name, queue_name = f"{namespace}.events", f"{namespace}.bench.raw"
    producer = await aio_pika.connect_robust(amqp, client_properties={"connection_name": "bench-raw-producer"})
    consumer = await aio_pika.connect_robust(amqp, client_properties={"connection_name": "bench-raw-consumer"})
    recorder = Recorder()
    consuming: tuple[AbstractQueue, str] | None = None
    try:
        publish_channel = await producer.channel(publisher_confirms=True)
        exchange = await publish_channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        channel = await consumer.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": queue_type})
        await queue.bind(exchange_name, routing_key=ROUTING_KEY)

        async def on_message(message: AbstractIncomingMessage) -> None:
            body = json.loads(message.body)
            recorder.record(body["data"]["meta"]["sent"])
            await message.ack()

        consuming = (queue, await queue.consume(on_message))

        async def publish_one(seq: int) -> None:
            sent = time.perf_counter()
            event_id = str(uuid.uuid4())
            body = {
                "specversion": "1.0",
                "id": event_id,
                "source": "/keyway/bench",
                "type": ROUTING_KEY,
                "time": datetime.now(UTC).isoformat(),
                "datacontenttype": "application/json",
                "environment": "dev",
                "data": _activity_data(seq, sent),
            }
            message = aio_pika.Message(
                body=json.dumps(body).encode(),
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=event_id,
                type=ROUTING_KEY,
            )
            await exchange.publish(message, routing_key=ROUTING_KEY, timeout=10)

        return await _measure(f"raw aio-pika {queue_type}", budget, recorder, publish_one, watch)
    finally:
        if consuming is not None:
            await consuming[0].cancel(consuming[1])
        cleanup = await producer.channel()
        await cleanup.queue_delete(queue_name)
        await cleanup.exchange_delete(exchange_name)
        await consumer.close()
        await producer.close()


async def keyway_roundtrip(
    amqp: str, mongo_url: str | None, queue_type: str, budget: Budget, watch: Watch
) -> dict[str, Any]:
    """EventPublisher -> ConsumerRunner, with the MongoDB idempotency guard when ``mongo_url`` is given."""
    namespace = unique("kwbench")
    spec = ConsumerSpec(
        service="bench",
        handler="roundtrip",
        bindings=(ROUTING_KEY,),
        namespace=namespace,
        prefetch=PREFETCH,
    )
    producer = await connect(amqp, name="bench-keyway-producer")
    consumer = await connect(amqp, name="bench-keyway-consumer")
    mongo = open_client(mongo_url, app_name="bench-guard") if mongo_url else None
    database = unique("kwbench_")
    guard = None
    if mongo is not None:
        await ensure_indexes(mongo[database], ["processed_events"])
        guard = MongoIdempotencyGuard(mongo[database])
    publisher = EventPublisher(producer, exchange_name=spec.exchange)
    runner = ConsumerRunner(
        connection=consumer,
        publisher=EventPublisher(consumer, exchange_name=spec.exchange),  # the runner's, for retries
        queue_type=queue_type,
        guard=guard,
        shutdown_grace=5.0,
    )
    recorder = Recorder()

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        recorder.record(event.data.meta["sent"])

    runner.add(spec, handle)
    try:
        await runner.start()

        async def publish_one(seq: int) -> None:
            sent = time.perf_counter()
            event = make_event(
                ActivityMessage(**_activity_data(seq, sent)),
                type=ROUTING_KEY,
                source="/keyway/bench",
                environment="dev",
            )
            await publisher.publish(event)

        name = f"keyway {queue_type}" + (" + guard" if guard else "")
        return await _measure(name, budget, recorder, publish_one, watch)
    finally:
        await runner.stop()
        await publisher.close()
        cleanup = await producer.channel()
        await delete_consumer_queues(cleanup, spec)
        await cleanup.exchange_delete(spec.exchange)
        await cleanup.exchange_delete(spec.dead_letter_exchange)
        await consumer.close()
        await producer.close()
        if mongo is not None:
            await mongo.drop_database(database)
            await mongo.close()


def _activity_data(seq: int, sent: float) -> dict[str, Any]:
    return {
        "operation_id": f"op{seq}",
        "operation_type": "bench:roundtrip",
        "message": "round trip",
        "connection_id": f"c{seq % 1000}",
        "provider_config_key": "ph",
        "meta": {"sent": sent, "seq": seq},
    }


async def run_async(amqp: str, mongo_url: str, mongo_pid: int | None, opts: Options) -> dict[str, Any]:
    # CPU time over each measurement: this process (producer + consumer), RabbitMQ, the database.
    pids = {"bench": os.getpid(), "rabbitmq": find_pid("beam.smp"), "mongo": mongo_pid}
    watch = {label: pid for label, pid in pids.items() if pid}
    results: dict[str, Any] = {
        "in_flight": IN_FLIGHT,
        "prefetch": PREFETCH,
        "max_events": opts.budget.events,
        "publish_seconds": opts.budget.seconds,
        "same_process": True,
        "queue_types": list(opts.queue_types),
    }
    for queue_type in opts.queue_types:
        raw = await raw_roundtrip(amqp, queue_type, opts.budget, watch)
        keyway = await keyway_roundtrip(amqp, None, queue_type, opts.budget, watch)
        guarded = await keyway_roundtrip(amqp, mongo_url, queue_type, opts.budget, watch)
        results[queue_type] = {
            "raw": raw,
            "keyway": keyway,
            "keyway_guarded": guarded,
            "ratio_keyway_over_raw": ratio(keyway["rate"], raw["rate"]),
            "ratio_guarded_over_raw": ratio(guarded["rate"], raw["rate"]),
        }
    return results


def run(amqp: str, mongo_url: str, mongo_pid: int | None, opts: Options) -> dict[str, Any]:
    print(
        f"(b) event round trip publish -> handler: up to {opts.budget.events} events or {opts.budget.seconds:g} s"
        f" of publishing each, {IN_FLIGHT} publishes in flight, prefetch {PREFETCH},"
        " producer and consumer in one process (uvloop)",
        flush=True,
    )
    results = uvloop.run(run_async(amqp, mongo_url, mongo_pid, opts))
    print()
    rows = []
    for queue_type in opts.queue_types:
        figures = results[queue_type]
        for key, label, ratio_key in (
            ("raw", "raw aio-pika", None),
            ("keyway", "keyway bus", "ratio_keyway_over_raw"),
            ("keyway_guarded", "keyway bus + idempotency guard", "ratio_guarded_over_raw"),
        ):
            row = figures[key]
            rows.append(
                [
                    f"{label} ({queue_type})",
                    row["handled"],
                    row["rate"],
                    row["p50_ms"],
                    row["p99_ms"],
                    figures[ratio_key] if ratio_key else "",
                ]
            )
    print_table(["(b) event round trip", "events", "events/s", "p50 ms", "p99 ms", "this / raw"], rows)
    print()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=Budget.events, help="at most this many per measurement")
    parser.add_argument("--seconds", type=float, default=Budget.seconds, help="publish for at most this long")
    parser.add_argument("--queue-types", default="classic,quorum")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=False, service="bench")
    budget = Budget(events=args.events, seconds=args.seconds)
    opts = Options(budget=budget, queue_types=tuple(args.queue_types.split(",")))
    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    with mongo_server() as mongo:
        print(json.dumps(run(amqp, mongo.url, mongo.pid, opts), indent=2))


if __name__ == "__main__":
    main()
