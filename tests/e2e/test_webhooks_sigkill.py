"""The dispatcher as a real process, killed with SIGKILL, and the webhook still delivered.

Between attempts the retry waits in a delay queue on the broker, not in the process: kill the
dispatcher there, start another, and the next attempt happens (on classic and on quorum queues,
whose delay queues dead-letter at least once). Killed in the middle of an attempt, the event was
never acknowledged: the broker hands it to the new process, which finds the attempt's claim left
``sending`` and takes it over. Either way the receiver sees one ``webhook-id``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest

from keyway_shared.bus import EventPublisher
from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import ConnectionCreated
from keyway_shared.store import EnvironmentStore

from ..support.inproc import event
from ..support.polling import eventually
from ..support.procs import ServiceProcess
from ..support.scripted_receiver import HANG, scripted_receiver
from ..support.stack import Stack
from ..support.webhooks import attempts_of, configure, count_at_least

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]

CONN = {"connection_id": "c-k", "provider_config_key": "ph", "provider": "posthog", "auth_mode": "API_KEY"}


async def consuming(stack: Stack, amqp_url: str) -> None:
    """Until the dispatcher's event queue has a consumer (so an event published now is not dropped)."""
    connection = await aio_pika.connect(amqp_url)
    try:

        async def probe() -> bool:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(f"{stack.namespace}.webhook-dispatcher.deliver", passive=True)
                return (queue.declaration_result.consumer_count or 0) > 0
            except aio_pika.exceptions.ChannelClosed:
                return False
            finally:
                if not channel.is_closed:
                    await channel.close()

        await eventually(probe, timeout=30, interval=0.1, what="the dispatcher to consume")
    finally:
        await connection.close()


def start_dispatcher(stack: Stack, **env: str) -> ServiceProcess:
    overrides = {
        "KEYWAY_WEBHOOK_RETRY_JITTER": "0",
        "KEYWAY_WEBHOOK_CACHE_SECONDS": "0",
        "KEYWAY_LOG_LEVEL": "INFO",
        **env,
    }
    return stack.start("webhook_dispatcher", **overrides)


async def publish(stack: Stack, amqp_url: str, item: Any) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    publisher = EventPublisher(connection, exchange_name=f"{stack.namespace}.events")
    try:
        await publisher.publish(item)
    finally:
        await publisher.close()
        await connection.close()


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_killed_between_attempts_the_retry_still_happens(
    cleanup_stack: Stack, mongo_client: Any, amqp_url: str, queue_type: str
) -> None:
    stack = cleanup_stack
    db = mongo_client[stack.database]
    environments = EnvironmentStore(db, CredentialCipher(current_key=stack.encryption_key))
    env = {"KEYWAY_WEBHOOK_RETRY_SCHEDULE": "2,2", "KEYWAY_QUEUE_TYPE": queue_type}
    async with scripted_receiver(500) as rec:
        await configure(environments, primary_url=rec.url)
        first = start_dispatcher(stack, **env)
        await consuming(stack, amqp_url)
        sent = event("connection.created", ConnectionCreated(**CONN))
        await publish(stack, amqp_url, sent)
        await eventually(lambda: _failed_attempts(db, sent.id, 1), timeout=30, what="the first attempt to fail")
        first.kill()  # SIGKILL: no shutdown of any kind
        await asyncio.sleep(2.5)  # the retry's wait ends while no dispatcher runs
        start_dispatcher(stack, **env)
        try:
            await eventually(lambda: count_at_least(rec.arrivals, 2), timeout=30, what="the retry after the restart")
            await eventually(lambda: _succeeded(db, sent.id), timeout=10, what="the success recorded")
        except AssertionError:
            print(stack.logs())
            raise
        await asyncio.sleep(1)
    assert len(rec.arrivals) == 2
    assert len({a.headers["webhook-id"] for a in rec.arrivals}) == 1
    records = await attempts_of(db, event_id=sent.id)
    assert [(r["attempt"], r["state"]) for r in records] == [(1, "failed"), (2, "succeeded")]


async def test_killed_during_an_attempt_the_attempt_is_taken_over(
    cleanup_stack: Stack, mongo_client: Any, amqp_url: str
) -> None:
    stack = cleanup_stack
    db = mongo_client[stack.database]
    environments = EnvironmentStore(db, CredentialCipher(current_key=stack.encryption_key))
    env = {"KEYWAY_WEBHOOK_TIMEOUT_SECONDS": "60"}
    async with scripted_receiver(HANG) as rec:
        await configure(environments, primary_url=rec.url)
        first = start_dispatcher(stack, **env)
        await consuming(stack, amqp_url)
        sent = event("connection.created", ConnectionCreated(**CONN))
        await publish(stack, amqp_url, sent)
        await eventually(lambda: count_at_least(rec.arrivals, 1), timeout=30, what="the first request, hanging")
        first.kill()
        start_dispatcher(stack, **env)
        try:
            await eventually(lambda: _succeeded(db, sent.id), timeout=30, what="the attempt taken over")
        except AssertionError:
            print(stack.logs())
            raise
    assert len(rec.arrivals) == 2  # at least once: the killed attempt may have reached the receiver
    assert len({a.headers["webhook-id"] for a in rec.arrivals}) == 1
    [record] = await attempts_of(db, event_id=sent.id)  # one attempt, finished by the second process
    assert (record["attempt"], record["state"], record["status"]) == (1, "succeeded", 200)


async def _failed_attempts(db: Any, event_id: str, n: int) -> bool:
    return await db["webhook_deliveries"].count_documents({"event_id": event_id, "state": "failed"}) >= n


async def _succeeded(db: Any, event_id: str) -> bool:
    return await db["webhook_deliveries"].count_documents({"event_id": event_id, "success": True}) >= 1
