"""The delivery log's group commit against the real MongoDB-wire server: claims and records made at
once share one insert command, each caller gets its own answer (a duplicate in the same batch is
"already claimed", not an error), and a batch that fails fails every caller in it, which the
``send`` handler turns into the same attempt coming back, nothing sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from keyway_shared.bus import MessageContext, Retry
from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import CloudEvent
from keyway_shared.store import EnvironmentStore, WebhookKeyStore
from keyway_shared.store.webhook_deliveries import DeliveryLog, attempt_key
from keyway_shared.store.webhook_endpoints import EndpointStore
from webhook_dispatcher.announce import Announcer
from webhook_dispatcher.app import retry_policy, specs
from webhook_dispatcher.attempts import Attempter, Limits
from webhook_dispatcher.breaker import CircuitBreaker
from webhook_dispatcher.caches import EndpointCache, SnapshotCache
from webhook_dispatcher.dispatcher import Sender
from webhook_dispatcher.messages import DELIVERY_TYPE, SOURCE, WebhookDelivery, delivery_id, webhook_id
from webhook_dispatcher.sender import WebhookSender, webhook_client

from ..support.commands import CommandLog, logged_database
from ..support.procs import free_port
from ..support.receiver import webhook_receiver
from ..support.webhooks import configure, dispatcher_settings

pytestmark = [pytest.mark.mongo]

LEASE = timedelta(seconds=45)


@pytest.fixture
async def watched(mongo_url: str, db: Any) -> AsyncIterator[tuple[Any, CommandLog]]:
    """The test's database through a client whose commands are logged."""
    async with logged_database(mongo_url, db.name) as watched:
        yield watched


def insert_batches(log: CommandLog) -> list[int]:
    """The number of documents of each ``insert`` command sent."""
    return [len(command.get("documents", [])) for command in log.of("insert")]


@pytest.fixture
async def unreachable() -> AsyncIterator[Any]:
    """A database whose server is not there: every command fails, quickly."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}/", tz_aware=True, serverSelectionTimeoutMS=300, connectTimeoutMS=300
    )
    yield client["nowhere"]
    await client.close()


async def test_claims_made_at_once_share_one_insert_and_each_is_fresh(watched: tuple[Any, CommandLog]) -> None:
    db, commands = watched
    log = DeliveryLog(db)
    claims = await asyncio.gather(*(log.claim(attempt_key(f"d{i}", "0", 1), lease=LEASE) for i in range(20)))
    await log.close()
    assert [c.fresh for c in claims] == [True] * 20
    assert insert_batches(commands) == [20]
    assert await db["webhook_attempt_claims"].count_documents({}) == 20


async def test_the_same_attempt_claimed_twice_in_one_batch_is_made_once(watched: tuple[Any, CommandLog]) -> None:
    db, commands = watched
    log = DeliveryLog(db)
    key = attempt_key("dup", "0", 1)
    first, second, other = await asyncio.gather(
        log.claim(key, lease=LEASE), log.claim(key, lease=LEASE), log.claim(attempt_key("dup", "0", 2), lease=LEASE)
    )
    assert insert_batches(commands) == [3]  # one command; the duplicate key is an answer, not a failure
    assert sorted([first.fresh, second.fresh]) == [False, True]
    taken = second if first.fresh else first
    assert taken.record is None
    assert taken.lease_until is not None
    assert other.fresh

    winner = first if first.fresh else second
    fields = {"environment": "dev", "delivery_id": "dup", "attempt": 1, "state": "succeeded", "success": True}
    await asyncio.gather(log.record(winner, fields), log.record(winner, fields | {"state": "failed"}))
    again = await log.claim(key, lease=LEASE)  # a redelivery, after the attempt was made
    await log.close()
    assert not again.fresh
    assert again.record is not None
    assert again.record["state"] in ("succeeded", "failed")  # one of the two writes stands...
    assert await db["webhook_deliveries"].count_documents({"_id": key}) == 1  # ...the other is dropped


async def test_a_failed_batch_fails_every_claim_in_it(unreachable: Any) -> None:
    log = DeliveryLog(unreachable)
    outcomes = await asyncio.gather(
        *(log.claim(attempt_key(f"d{i}", "0", 1), lease=LEASE) for i in range(5)), return_exceptions=True
    )
    await log.close()
    assert all(isinstance(outcome, PyMongoError) for outcome in outcomes)


async def test_a_claim_that_cannot_be_written_brings_the_same_attempt_back_unsent(
    db: Any, unreachable: Any, mongo_url: str, db_name: str, encryption_key: str
) -> None:
    settings = dispatcher_settings(
        mongo_url=mongo_url,
        db_name=db_name,
        amqp_url="amqp://unused/",
        namespace="unused",
        encryption_key=encryption_key,
    )
    cipher = CredentialCipher(current_key=encryption_key)
    environments = EnvironmentStore(db, cipher)
    async with webhook_receiver() as rec:
        await configure(environments, primary_url=rec.url)
        client = webhook_client(settings.egress_allowlist, timeout=2.0, limit=10)
        announced: list[CloudEvent[Any]] = []

        async def publish(event: CloudEvent[Any], *, confirm: bool = True) -> None:
            announced.append(event)

        attempter = Attempter(
            environments=SnapshotCache(environments, WebhookKeyStore(db, cipher), ttl=0),
            endpoints=EndpointCache(EndpointStore(db), ttl=0),
            log=DeliveryLog(unreachable),  # settings and endpoints read fine; the claim cannot be written
            sender=WebhookSender(client),
            breaker=CircuitBreaker(),
            policy=retry_policy(settings),
            announcer=Announcer(publish),
            limits=Limits(lease=LEASE, disable_after=timedelta(days=5), forget_after=timedelta(days=10)),
        )
        delivery = WebhookDelivery(
            delivery_id=delivery_id("e-1", "primary"),
            webhook_id=webhook_id(delivery_id("e-1", "primary")),
            slot="primary",
            event_id="e-1",
            event_type="connection.created",
            operation="creation",
            url=rec.url,
            body='{"from":"nango"}',
        )
        message = CloudEvent[WebhookDelivery](type=DELIVERY_TYPE, source=SOURCE, environment="dev", data=delivery)
        ctx = MessageContext(spec=specs(settings).send, attempt=2, redelivered=False)
        try:
            with pytest.raises(Retry) as retry:
                await Sender(attempter=attempter, hiccup_delay=0.2).handle(message, ctx)
        finally:
            await client.close()
        assert retry.value.same_attempt  # attempt 2 comes back as attempt 2, through the broker
        assert rec.received == []
        assert announced == []
