"""Faults without an operator: two replicas of every service as real processes, a TCP link the test
controls in front of RabbitMQ and another in front of MongoDB, and no process restarted by the test.

The services start while the broker's link refuses connections. Then, while a backend creates
(``POST /connection``), updates (``POST /connection/metadata``) and deletes connections, each write
with an ``Idempotency-Key`` and sent again with the same key after a 503 or a timeout:

    broker reset        every connection reset, new ones refused
    broker blackhole    connections accepted and kept, nothing goes through either way
    database reset      as the broker's
    database blackhole  as the broker's
    database killed     the MongoDB process SIGKILLed, started again on its data and port
    receiver 503        the webhook receiver answers 503 (Retry-After: 1)
    replicas killed     one replica of each service SIGKILLed (and not started again)

Each broker or database outage lasts until every ``/readyz`` has said 503, and at least
``MIN_OUTAGE`` seconds. What must hold:

- after each heal, every service is ready again (``/readyz``) and consuming: a connection created
  after the heal has its creation webhook and its activity entry, and every work queue has one
  consumer per live replica, within ``CONSUMING_AFTER_HEAL`` seconds; after a broker or database
  outage ``/readyz`` is 200 again within ``READY_AFTER_HEAL`` (plus ``READY_MARGIN`` for a loaded
  2-core machine);
- ``/readyz`` says 503 during each broker and database outage, and stays 200 while only a webhook
  receiver is down; ``/healthz`` stays 200 throughout (every fault here heals by itself);
- no 500, ever; every failure is a 503 with ``Retry-After`` in the error envelope, answered well
  within the gateway's deadline (``DEADLINE``, checked against the generous ``ANSWER_BOUND``);
- every write ends with one answer, the one it should have: the connections stored are the
  creations answered 2xx minus the deletions answered 2xx, each update's metadata is there;
- one creation webhook (one ``webhook-id``) per created connection, delivered; every event
  published is in the activity log; no dead letter; the outbox empty.

With ``-m slow`` a second variant runs the three database faults six rounds back to back.

The bounds, the steps and the checks are in ``fault_run.py``. The recovery times are printed
(``-s``) and written to ``test-output/faults.txt``; reproduce them with
``uv run --frozen pytest -q -s tests/e2e/test_faults.py``. docs/operations.md quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest
import yaml
from pymongo import AsyncMongoClient

from ..conftest import delete_namespace
from ..support.catalog import providers_file as with_test_providers
from ..support.fault_world import CountingReceiver, Recovery, RestartableDatabase, summary
from ..support.faulty_link import FaultyLink
from ..support.polling import eventually
from ..support.procs import ServiceProcess
from ..support.stack import PACKAGES, Stack
from .fault_run import INTEGRATION, PROVIDER, REPLICAS, SERVICE_ENV, FaultRun, holds, through

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.timeout(480)]


# The database faults once each, or six rounds of them back to back (``-m slow``): the rounds found a
# gateway whose driver a cancellation had broken (docs/development.md, Conventions), which one
# round hit only now and then.
@pytest.mark.parametrize(
    "database_rounds", [pytest.param(1, id="once"), pytest.param(6, marks=pytest.mark.slow, id="database-x6")]
)
async def test_every_fault_heals_without_a_restart_and_no_write_is_lost_or_doubled(
    amqp_url: str, tmp_path: Path, output_dir: Path, database_rounds: int
) -> None:
    (tmp_path / "db" / "data").mkdir(parents=True)
    database = RestartableDatabase(tmp_path / "db" / "data")
    await database.start()
    db_link = FaultyLink("127.0.0.1", database.port)
    await db_link.start()
    broker = urlsplit(amqp_url)
    broker_link = FaultyLink(broker.hostname or "127.0.0.1", broker.port or 5672)  # not started: refused
    receiver = CountingReceiver()
    await receiver.start()
    providers = tmp_path / "providers.yaml"
    providers.write_text(
        yaml.safe_dump({PROVIDER: {"auth_mode": "API_KEY", "proxy": {"base_url": "http://127.0.0.1:9"}}})
    )
    stack = Stack(
        mongo_url=f"mongodb://{db_link.url_host}/?retryWrites=false&directConnection=true",
        amqp_url=through(amqp_url, broker_link),
        log_dir=tmp_path,
        extra_env={**SERVICE_ENV, "KEYWAY_PROVIDERS_FILE": with_test_providers(str(providers))},
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{database.port}/?directConnection=true", tz_aware=True, serverSelectionTimeoutMS=3000
    )
    amqp = await aio_pika.connect_robust(amqp_url)  # the test's own view of the broker, past the link
    http = aiohttp.ClientSession()
    run: FaultRun | None = None
    start = Recovery("broker refused while the services start", broke=time.monotonic())
    try:
        events: list[dict[str, Any]] = []  # every event published on this stack's exchange
        channel = await amqp.channel()
        exchange = await channel.declare_exchange(
            f"{stack.namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        watched = await channel.declare_queue(f"{stack.namespace}.test.watch")  # removed with the namespace
        await watched.bind(exchange, routing_key="#")

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            events.append(json.loads(message.body))

        await watched.consume(collect, no_ack=True)

        # ---- started while the broker refuses connections -----------------------------------
        # In threads: each start waits for its port while this loop carries the database link.
        started = await asyncio.gather(
            *(asyncio.to_thread(stack.start, package) for package in PACKAGES for _ in range(REPLICAS))
        )
        replicas: dict[str, ServiceProcess] = {}
        for proc in started:
            replicas[f"{proc.package}-{sum(name.startswith(proc.package) for name in replicas)}"] = proc
        run = FaultRun(
            replicas=replicas,
            http=http,
            amqp=amqp,
            db=client[stack.database],
            receiver=receiver,
            namespace=stack.namespace,
            secret_key=stack.secret_key,
            events=events,
        )
        run.watch.start()
        await eventually(lambda: holds(run.watch.all_unready_since(0.0)), timeout=30, what="every /readyz 503")
        start.unready_from_start = True
        await asyncio.sleep(max(0.0, start.broke + 3.0 - time.monotonic()))  # a few refused tries each
        await broker_link.heal()
        start.healed = time.monotonic()
        await run.ready_again(start)
        auth = {"Authorization": f"Bearer {stack.secret_key}"}
        gateway = next(iter(run.gateways.values()))
        async with http.patch(
            f"{gateway}/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(
            f"{gateway}/config", json={"provider": PROVIDER, "provider_config_key": INTEGRATION}, headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()
        await run.consuming_again(start, replicas_each=REPLICAS)
        start.recovered = time.monotonic()
        run.recoveries.append(start)

        # ---- under load: the links, the database, a receiver, a kill --------------------------
        run.workload.start()
        await eventually(lambda: holds(len(run.writer.writes) >= 10), timeout=60, what="the load to get going")

        async def blackhole_broker() -> None:
            broker_link.blackhole()

        async def blackhole_database() -> None:
            db_link.blackhole()

        await run.outage("broker reset", broker_link.cut, broker_link.heal)
        await run.outage("broker blackhole", blackhole_broker, broker_link.heal)
        for _ in range(database_rounds):
            await run.outage("database reset", db_link.cut, db_link.heal)
            await run.outage("database blackhole", blackhole_database, db_link.heal)
            await run.outage("database killed and started again", database.kill, database.start)
        await run.receiver_down()
        await run.kill_one_of_each()
        await run.workload.stop()

        attempts = run.attempts()
        report = "\n".join([*(r.report(attempts) for r in run.recoveries), f"== the whole run: {summary(attempts)}"])
        print("\n" + report)
        (output_dir / "faults.txt").write_text(report + "\n")

        # ---- every write answered once, every event handled -----------------------------------
        writes = run.writer.writes
        created = {w.connection_id for w in writes if w.kind == "create" and w.succeeded}
        deleted = {w.connection_id for w in writes if w.kind == "delete" and w.succeeded}
        await eventually(
            lambda: run.settled(created), timeout=120, interval=0.5, what="every webhook and activity entry"
        )

        violations = await run.violations(created, deleted)
        assert violations == {}, "\n".join(
            [*(f"{name}:\n  " + "\n  ".join(v) for name, v in violations.items()), *unhandled_errors(tmp_path)]
        )
    except BaseException:
        print(stack.logs())
        if run is not None:
            print(f"the backend's writes: {summary(run.attempts())}")
            for write in run.writer.writes:
                if not write.succeeded:
                    print(f"  {write.timeline()}")
        raise
    finally:
        if run is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.workload.stop(), timeout=30)
            await run.watch.stop()
        await broker_link.heal()
        await db_link.heal()
        await asyncio.to_thread(stack.stop_all)  # in a thread: the services' last words go through the links
        await http.close()
        await amqp.close()
        await client.close()
        await delete_namespace(amqp_url, stack.namespace)
        await receiver.stop()
        await database.stop()
        await broker_link.cut()
        await db_link.cut()


def unhandled_errors(log_dir: Path) -> list[str]:
    """The tracebacks the services logged for their 500s: a 500 in a CI run is then explained in
    the failure's own message, not only in a log that goes with the machine."""
    found: list[str] = []
    for log in sorted(log_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if '"unhandled error"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                trace = str(entry.get("exception", "")).splitlines()[-12:]
                found.append(f"{log.name} {entry.get('method')} {entry.get('path')}:\n    " + "\n    ".join(trace))
    return found
