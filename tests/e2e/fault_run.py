"""The steps of the fault test (``test_faults.py``) and what it checks: the stack it runs, how each
fault is broken and healed, what is measured on the way back, and the guarantees looked at after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp

from keyway_shared.bus.registry import service_consumers

from ..support.fault_world import CountingReceiver, Recovery, Workload
from ..support.faulty_link import FaultyLink
from ..support.health_watch import HealthWatch
from ..support.idempotent_writes import Attempt, IdempotentWriter
from ..support.metric_deltas import counter_deltas, scrape_counters
from ..support.polling import eventually
from ..support.procs import ServiceProcess

__all__ = ["INTEGRATION", "PROVIDER", "REPLICAS", "SERVICE_ENV", "FaultRun", "holds", "through"]

DEADLINE = 2.0  # KEYWAY_REQUEST_DEADLINE_SECONDS
ANSWER_BOUND = 3 * DEADLINE + 2.0  # every failure answered before this: generous, on a loaded machine
BROKER_OUTAGE_BOUND = 2.0  # KEYWAY_BROKER_OUTAGE_BOUND_SECONDS: /readyz reports a broker outage after this
READY_AFTER_HEAL = 5.0
READY_MARGIN = 5.0  # a loaded 2-core machine: 8 services, the database, the broker, other tests
CONSUMING_AFTER_HEAL = 30.0
MIN_OUTAGE = 6.0
REPLICAS = 2
INTEGRATION = "faults"
PROVIDER = "faults-apikey"

SERVICE_ENV = {
    "KEYWAY_REQUEST_DEADLINE_SECONDS": str(DEADLINE),
    "KEYWAY_RETRY_AFTER_SECONDS": "1",
    "KEYWAY_BROKER_OUTAGE_BOUND_SECONDS": str(BROKER_OUTAGE_BOUND),
    # Deliveries failed by a receiver's outage come back within seconds instead of minutes.
    "KEYWAY_WEBHOOK_RETRY_SCHEDULE": "1,1,2,2,2,2,2,2,2,2,2,2",
    "KEYWAY_WEBHOOK_RETRY_JITTER": "0",
    "KEYWAY_WEBHOOK_BREAKER_COOLDOWN_SECONDS": "2",
    "KEYWAY_WEBHOOK_OVERLOAD_MIN_DELAY_SECONDS": "1",
}


def through(url: str, link: FaultyLink) -> str:
    """``url`` with its host and port replaced by the link's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{credentials}@{link.url_host}" if credentials else link.url_host).geturl()


async def queue_counts(amqp: aio_pika.abc.AbstractConnection, queues: list[str]) -> dict[str, tuple[int, int]]:
    """Queue -> (consumers, messages ready); (0, 0) for a queue never declared."""
    counts: dict[str, tuple[int, int]] = {}
    for name in queues:
        channel = await amqp.channel()
        try:
            result = (await channel.declare_queue(name, passive=True)).declaration_result
            counts[name] = (result.consumer_count or 0, result.message_count or 0)
        except aio_pika.exceptions.ChannelClosed:
            counts[name] = (0, 0)
        finally:
            if not channel.is_closed:
                await channel.close()
    return counts


async def holds(value: bool) -> bool:
    """A condition computed at once, as the awaitable probe ``eventually`` asks for."""
    return value


class FaultRun:
    """The running stack, what watches it, and the steps of the scenario."""

    def __init__(
        self,
        *,
        replicas: dict[str, ServiceProcess],
        http: aiohttp.ClientSession,
        amqp: aio_pika.abc.AbstractConnection,
        db: Any,
        receiver: CountingReceiver,
        namespace: str,
        secret_key: str,
        events: list[dict[str, Any]],
    ) -> None:
        self.replicas = replicas
        self.http = http
        self.amqp = amqp
        self.db = db
        self.receiver = receiver
        self.events = events
        self.watch = HealthWatch(http, {name: proc.port or 0 for name, proc in replicas.items()})
        self.gateways = {
            name: f"http://127.0.0.1:{proc.port}" for name, proc in replicas.items() if proc.package == "auth_gateway"
        }
        self.writer = IdempotentWriter(http, list(self.gateways.values()), secret_key)
        self.workload = Workload(self.writer, INTEGRATION)
        consumers = service_consumers(namespace).values()
        self.work_queues = [spec.queue for spec in consumers]
        self.dead_queues = [spec.dead_letter_queue for spec in consumers]
        self.recoveries: list[Recovery] = []

    def attempts(self) -> list[Attempt]:
        return [a for w in self.writer.writes for a in w.attempts]

    def _metric_targets(self) -> dict[str, tuple[str, int]]:
        return {name: (self.replicas[name].package, port) for name, port in self.watch.targets.items()}

    async def counters(self) -> dict[tuple[str, str], float]:
        return await scrape_counters(self.http, self._metric_targets())

    async def ready_again(self, recovery: Recovery) -> None:
        await eventually(
            lambda: holds(self.watch.all_ready_since(recovery.healed)),
            timeout=CONSUMING_AFTER_HEAL,
            interval=0.1,
            what=f"every /readyz 200 after {recovery.fault}",
        )
        for name in self.watch.targets:
            probe = self.watch.first_ready(name, since=recovery.healed)
            assert probe is not None
            recovery.ready_after[name] = probe.answered - recovery.healed

    async def consuming_again(self, recovery: Recovery, *, replicas_each: int) -> None:
        """A connection created now gets its webhook and its activity entry; every queue its consumers."""
        probe = f"probe-{len(self.recoveries)}"
        write = await self.workload.create(probe)
        assert write.succeeded, write

        def left() -> float:
            return max(1.0, recovery.healed + CONSUMING_AFTER_HEAL - time.monotonic())

        async def delivered() -> bool:
            return self.receiver.delivered(probe) is not None

        async def recorded() -> bool:
            ids = [
                e["id"]
                for e in self.events
                if e.get("type") == "connection.created" and e.get("data", {}).get("connection_id") == probe
            ]
            return bool(ids) and await self.db["activity_messages"].count_documents({"_id": {"$in": ids}}) > 0

        async def consumed() -> bool:
            counts = await queue_counts(self.amqp, self.work_queues)
            return all(consumers == replicas_each for consumers, _ready in counts.values())

        await eventually(delivered, timeout=left(), interval=0.1, what=f"{probe}'s webhook after {recovery.fault}")
        recovery.webhook_after = time.monotonic() - recovery.healed
        await eventually(recorded, timeout=left(), interval=0.2, what=f"{probe}'s activity after {recovery.fault}")
        recovery.activity_after = time.monotonic() - recovery.healed
        await eventually(consumed, timeout=left(), interval=0.2, what=f"every queue consumed after {recovery.fault}")
        recovery.consumers_after = time.monotonic() - recovery.healed

    async def outage(
        self, fault: str, break_: Callable[[], Awaitable[None]], heal: Callable[[], Awaitable[None]]
    ) -> Recovery:
        """A broker or database fault: every /readyz must say so; then heal it and measure the way back."""
        before = await self.counters()
        recovery = Recovery(fault, broke=time.monotonic())
        await break_()
        await eventually(
            lambda: holds(self.watch.all_unready_since(recovery.broke)),
            timeout=30,
            interval=0.1,
            what=f"every /readyz to say 503 during {fault}",
        )
        for name in self.watch.targets:
            first = self.watch.first_unready(name, since=recovery.broke)
            assert first is not None
            recovery.unready_after[name] = first.answered - recovery.broke
        # The outage's length is the scenario (writes must meet it), not something checked.
        await asyncio.sleep(max(0.0, recovery.broke + MIN_OUTAGE - time.monotonic()))
        await heal()
        recovery.healed = time.monotonic()
        await self.ready_again(recovery)
        await self.consuming_again(recovery, replicas_each=REPLICAS)
        recovery.recovered = time.monotonic()
        recovery.counters = counter_deltas(before, await self.counters())
        self.recoveries.append(recovery)
        return recovery

    async def receiver_down(self) -> None:
        """The receiver answers 503 for a while: retried, delivered once it is back; nobody unready."""
        before = await self.counters()
        down = Recovery("webhook receiver answers 503", broke=time.monotonic())
        self.receiver.status = 503
        assert (await self.workload.create(f"probe-{len(self.recoveries)}-during")).succeeded

        async def met() -> bool:
            return any(r.status == 503 and r.at >= down.broke for r in self.receiver.receipts)

        await eventually(met, timeout=30, what="a webhook to meet the 503")
        await asyncio.sleep(max(0.0, down.broke + MIN_OUTAGE - time.monotonic()))
        self.receiver.status = 200
        down.healed = time.monotonic()
        created = {w.connection_id for w in self.writer.writes if w.kind == "create" and w.succeeded}
        waiting = {c for c in created if self.receiver.delivered(c) is None}

        async def backlog_delivered() -> bool:
            return all(self.receiver.delivered(c) is not None for c in waiting)

        await eventually(backlog_delivered, timeout=60, interval=0.2, what="the webhooks that met the 503")
        down.backlog_after = time.monotonic() - down.healed
        answers = [p for p in self.watch.probes if p.path == "/readyz" and down.broke <= p.sent < down.healed]
        assert [p for p in answers if p.status != 200] == [], "a receiver's outage is not the services'"
        await self.ready_again(down)
        await self.consuming_again(down, replicas_each=REPLICAS)
        down.recovered = time.monotonic()
        down.counters = counter_deltas(before, await self.counters())
        self.recoveries.append(down)

    async def kill_one_of_each(self) -> None:
        """SIGKILL replica 0 of every service, between two writes (a write in flight on a killed gateway
        holds its key for the claim's lease, which is the lease's story, not this fault's)."""
        await self.workload.pause()
        killed = [name for name in self.replicas if name.endswith("-0")]
        for name in killed:
            await self.watch.forget(name)
        before = await self.counters()
        kill = Recovery("one replica of each service SIGKILLed", broke=time.monotonic())
        for name in killed:
            await asyncio.to_thread(self.replicas[name].kill)
        self.writer.gateways = [url for name, url in self.gateways.items() if name not in killed]
        kill.healed = kill.broke  # nothing to heal: the survivors are on their own from the kill
        self.workload.resume()
        await self.ready_again(kill)
        await self.consuming_again(kill, replicas_each=REPLICAS - 1)
        kill.recovered = time.monotonic()
        kill.counters = counter_deltas(before, await self.counters())
        self.recoveries.append(kill)

    async def violations(self, created: set[str], deleted: set[str]) -> dict[str, list[str]]:
        """Every guarantee the run broke, by name, with what broke it (empty: none)."""
        found: dict[str, list[str]] = {}

        def check(name: str, bad: list[str]) -> None:
            if bad:
                found[name] = [*bad[:8], *([f"... and {len(bad) - 8} more"] if len(bad) > 8 else [])]

        writes = self.writer.writes
        attempts = self.attempts()
        check("a 5xx other than 503", [repr(a) for a in attempts if (a.status or 0) >= 500 and a.status != 503])
        check(
            "writes with a failure that is not an answered 503",
            [w.timeline() for w in writes if any(a.later and a.status != 503 for a in w.attempts)],
        )
        check(
            "503s without Retry-After or the service_unavailable envelope",
            [
                repr(a)
                for a in attempts
                if a.status == 503 and not ((a.retry_after or "").isdigit() and a.code == "service_unavailable")
            ],
        )
        check(
            f"failures answered after {ANSWER_BOUND} s",
            [repr(a) for a in attempts if a.later and a.elapsed > ANSWER_BOUND],
        )
        check("writes that did not end with their success", [w.timeline() for w in writes if not w.succeeded])
        stored = {
            doc["connection_id"]: doc.get("metadata")
            async for doc in self.db["connections"].find({"provider_config_key": INTEGRATION})
        }
        check("stored but not created, or deleted", sorted(set(stored) - (created - deleted)))
        check("created and not deleted, but not stored", sorted((created - deleted) - set(stored)))
        check(
            "updates whose metadata is not there",
            [
                f"{w.connection_id}: {stored[w.connection_id]}"
                for w in writes
                if w.kind == "update"
                and w.connection_id in stored
                and stored[w.connection_id] != {"n": int(w.connection_id.rsplit("-", 1)[1])}
            ],
        )
        creation_ids = self.receiver.creation_ids()
        check("creation webhooks for connections not created", sorted(set(creation_ids) - created))
        check("created connections without a creation webhook", sorted(created - set(creation_ids)))
        check(
            "connections with more than one creation webhook",
            [f"{c}: {sorted(ids)}" for c, ids in creation_ids.items() if len(ids) != 1],
        )
        dead = await queue_counts(self.amqp, self.dead_queues)
        check("dead letters", [f"{q}: {n}" for q, (_consumers, n) in dead.items() if n])
        check("/healthz not 200", [repr(p) for p in self.watch.unhealthy()])
        check(
            f"/readyz 200 later than {READY_AFTER_HEAL + READY_MARGIN} s after a heal",
            [
                f"{r.fault}: {name} {seconds:.1f} s"
                for r in self.recoveries[1:]  # the start has the broker link's backoff (up to 5 s) on top
                for name, seconds in r.ready_after.items()
                if seconds > READY_AFTER_HEAL + READY_MARGIN
            ],
        )
        return found

    async def settled(self, created: set[str]) -> bool:
        if await self.db["outbox"].count_documents({}) > 0:
            return False
        if any(self.receiver.delivered(c) is None for c in created):
            return False
        ids = {e["id"] for e in self.events}
        recorded: int = await self.db["activity_messages"].count_documents({"_id": {"$in": list(ids)}})
        return recorded == len(ids)
