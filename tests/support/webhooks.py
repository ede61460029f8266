"""What the webhook dispatcher's tests share: settings for a fast schedule, the environment's webhook
settings, a listener for the ``webhook.*`` events, and waiting until the dispatcher is idle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web

from keyway_shared.bus import environment_changes_exchange
from keyway_shared.events import CloudEvent, decode_event
from keyway_shared.service import CONSUMERS
from keyway_shared.store import EnvironmentStore, WebhookSettings
from webhook_dispatcher.app import DISPATCHER
from webhook_dispatcher.settings import DispatcherSettings

from .polling import eventually


def dispatcher_settings(
    *, mongo_url: str, db_name: str, amqp_url: str, namespace: str, encryption_key: str, **overrides: Any
) -> DispatcherSettings:
    """A dispatcher on this test's database and namespace, with waits short enough to watch."""
    values: dict[str, Any] = {
        "mongodb_url": mongo_url,
        "mongodb_database": db_name,
        "amqp_url": amqp_url,
        "bus_namespace": namespace,
        "encryption_key": encryption_key,
        "egress_allowlist": "127.0.0.1/32",
        "queue_type": "classic",
        "retry_schedule": (0.2, 0.2, 0.2),
        "retry_jitter": 0.0,
        "overload_min_delay_seconds": 0.2,
        "webhook_timeout_seconds": 2.0,
        "breaker_failures": 1000,  # off unless a test is about it
        "cache_seconds": 0.0,  # tests change settings straight in the database
    }
    return DispatcherSettings(**(values | overrides))


async def configure(environments: EnvironmentStore, name: str = "dev", **webhooks: Any) -> str:
    """Create the environment with these webhook settings; returns its secret key."""
    env = await environments.ensure(name)
    await environments.update_settings(name, webhooks=WebhookSettings(**webhooks))
    return env.secret_key


@asynccontextmanager
async def webhook_events(connection: AbstractRobustConnection, namespace: str) -> AsyncIterator[list[CloudEvent[Any]]]:
    """Every ``webhook.*`` event published (delivered, failed, endpoint_disabled, …), as it arrives."""
    channel = await connection.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"{namespace}.test.webhook-results")
    await queue.bind(exchange, routing_key="webhook.*")
    seen: list[CloudEvent[Any]] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        seen.append(decode_event(message.body))
        await message.ack()

    await queue.consume(on_message)
    try:
        yield seen
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await channel.close()


@asynccontextmanager
async def running_dispatcher(app: web.Application) -> AsyncIterator[web.Application]:
    """The dispatcher in this process, returned once its three consumers take messages."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:

        async def consuming() -> bool:
            consumers = app.get(CONSUMERS)
            return consumers is not None and consumers.runner is not None and consumers.runner.consuming

        await eventually(consuming, what="the dispatcher to consume")
        yield app
    finally:
        await runner.cleanup()


async def idle(app: web.Application, connection: AbstractRobustConnection, *, calm_polls: int = 5) -> None:
    """Until the event and send queues are empty and nothing is in flight, a few polls in a row.

    Retries parked in delay queues are not counted: wait for their outcome instead.
    """
    parts = app[DISPATCHER]
    names = [parts.specs.deliver.queue, parts.specs.send.queue]
    calm = 0

    async def probe() -> bool:
        nonlocal calm
        channel = await connection.channel()
        try:
            depth = 0
            for name in names:
                depth += (await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0
        finally:
            await channel.close()
        runner = app[CONSUMERS].runner
        calm = calm + 1 if depth == 0 and runner is not None and runner.inflight == 0 else 0
        return calm >= calm_polls

    await eventually(probe, interval=0.1, what="the dispatcher to be idle")


async def broadcast_change(connection: AbstractRobustConnection, namespace: str, environment: str) -> None:
    """What the gateway does after changing an environment: every replica forgets its cached copy."""
    channel = await connection.channel()
    try:
        exchange = await channel.declare_exchange(
            environment_changes_exchange(namespace), aio_pika.ExchangeType.FANOUT, durable=True
        )
        await exchange.publish(aio_pika.Message(f'{{"environment": "{environment}"}}'.encode()), routing_key="")
    finally:
        await channel.close()


def of_type(events: list[CloudEvent[Any]], kind: str) -> list[CloudEvent[Any]]:
    return [e for e in events if e.type == kind]


async def count_at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def attempts_of(db: Any, **query: Any) -> list[dict[str, Any]]:
    """Delivery attempt records, in the order they were made."""
    return await db["webhook_deliveries"].find(query).sort([("created_at", 1), ("attempt", 1)]).to_list()
