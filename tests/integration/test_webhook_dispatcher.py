"""The webhook dispatcher against the real RabbitMQ, MongoDB-wire server and real receivers on 127.0.0.1.

Proves: the exact Nango body bytes, both Nango signatures (``X-Nango-Signature`` keyed by the secret
key, ``X-Nango-Hmac-Sha256`` by the webhook signing key) and the Standard Webhooks headers (checked
by the ``standardwebhooks`` library), both keys signing during a rotation, the environment's toggles
and URLs, each URL retried on its own, a failing receiver recorded, retried and finally announced
as ``webhook.failed``, private targets refused, and one webhook for an event the bus delivers twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aio_pika
import pytest
from standardwebhooks.webhooks import Webhook

from keyway_shared.bus import EventPublisher
from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import (
    AuthFailed,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionUpdated,
    ErrorInfo,
    TokenRefreshed,
    TokenRefreshFailed,
)
from keyway_shared.store import EnvironmentStore, WebhookKeyStore
from webhook_dispatcher.app import create_app
from webhook_dispatcher.messages import delivery_id, webhook_id
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import event
from ..support.polling import eventually
from ..support.receiver import WebhookReceiver, webhook_receiver
from ..support.scripted_receiver import scripted_receiver
from ..support.webhooks import (
    attempts_of,
    broadcast_change,
    configure,
    count_at_least,
    dispatcher_settings,
    idle,
    of_type,
    running_dispatcher,
    webhook_events,
)

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

CONN = {"connection_id": "c-1", "provider_config_key": "posthog-x", "provider": "posthog", "auth_mode": "API_KEY"}
CREATED_BODY = (
    '{"from":"nango","type":"auth","connectionId":"c-1","providerConfigKey":"posthog-x","authMode":"API_KEY",'
    '"provider":"posthog","environment":"dev","operation":"creation","success":true}'
)


@pytest.fixture
def settings(mongo_url: str, db_name: str, amqp_url: str, namespace: str, encryption_key: str) -> DispatcherSettings:
    return dispatcher_settings(
        mongo_url=mongo_url, db_name=db_name, amqp_url=amqp_url, namespace=namespace, encryption_key=encryption_key
    )


@pytest.fixture
def environments(db: Any, encryption_key: str) -> EnvironmentStore:
    return EnvironmentStore(db, CredentialCipher(current_key=encryption_key))


@pytest.fixture
def keys(db: Any, encryption_key: str) -> WebhookKeyStore:
    return WebhookKeyStore(db, CredentialCipher(current_key=encryption_key))


@pytest.fixture
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield pub
    await pub.close()


@pytest.fixture
async def results(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[list[Any]]:
    async with webhook_events(amqp, namespace) as seen:
        yield seen


async def test_a_created_connection_is_posted_signed_to_primary_and_secondary(
    settings: DispatcherSettings,
    db: Any,
    environments: EnvironmentStore,
    keys: WebhookKeyStore,
    publisher: EventPublisher,
    results: list[Any],
) -> None:
    async with webhook_receiver() as primary, webhook_receiver() as secondary:
        secret_key = await configure(environments, primary_url=primary.url, secondary_url=secondary.url_for("/second"))
        created = event("connection.created", ConnectionCreated(**CONN))
        async with running_dispatcher(create_app(settings)):
            await publisher.publish(created)
            await eventually(lambda: _got(primary, secondary), what="both receivers to get the webhook")
            await eventually(lambda: count_at_least(results, 2), what="two webhook.delivered events")

    [signing_key] = await keys.signing_keys("dev")
    assert signing_key.startswith("whsec_")
    env = await environments.get("dev")
    assert env is not None
    assert env.webhook_signing_key != secret_key
    ids = set()
    for rec in (primary, secondary):
        assert len(rec.received) == 1
        hook = rec.received[0]
        assert hook.body == CREATED_BODY.encode()  # the exact bytes, JSON.stringify-style, key order kept
        assert hook.headers["Content-Type"] == "application/json"
        assert hook.headers["User-Agent"] == "Keyway-Webhooks"
        assert hook.headers["X-Nango-Signature"] == hashlib.sha256((secret_key + CREATED_BODY).encode()).hexdigest()
        # Nango's node SDK re-serialises the parsed body; our bytes are what JSON.stringify gives back.
        assert json.dumps(json.loads(hook.body), separators=(",", ":")) == CREATED_BODY
        expected_hmac = hmac.new(env.webhook_signing_key.encode(), hook.body, hashlib.sha256).hexdigest()
        assert hook.headers["X-Nango-Hmac-Sha256"] == expected_hmac
        lowered = {k.lower(): v for k, v in hook.headers.items()}
        assert Webhook(signing_key).verify(hook.body, lowered)["connectionId"] == "c-1"  # raises when invalid
        ids.add(lowered["webhook-id"])
    assert ids == {webhook_id(delivery_id(created.id, slot)) for slot in ("primary", "secondary")}
    assert {r.received[0].path for r in (primary, secondary)} == {"/hook", "/second"}

    assert {r.type for r in results} == {"webhook.delivered"}
    assert {r.data.url for r in results} == {primary.url, secondary.url_for("/second")}
    assert all(r.data.event_id == created.id and r.data.status == 200 for r in results)
    assert all(r.data.connection_id == "c-1" and r.data.webhook_id in ids for r in results)
    records = await attempts_of(db, event_id=created.id)
    assert sorted(r["status"] for r in records) == [200, 200]
    assert sorted(r["slot"] for r in records) == ["primary", "secondary"]
    for r in records:
        assert (r["state"], r["success"], r["final"], r["attempt"], r["run"]) == ("succeeded", True, True, 1, "0")
        assert r["response_body"] == "answered 200"
        assert r["body"] == CREATED_BODY
        assert r["duration_ms"] >= 0
        assert r["expires_at"] - r["finished_at"] == timedelta(days=settings.delivery_retention_days)
        assert r["created_at"] <= r["finished_at"]


async def test_during_a_key_rotation_both_keys_sign(
    settings: DispatcherSettings,
    environments: EnvironmentStore,
    keys: WebhookKeyStore,
    publisher: EventPublisher,
) -> None:
    async with webhook_receiver() as rec:
        await configure(environments, primary_url=rec.url)
        [old] = await keys.signing_keys("dev")
        new = await keys.rotate("dev", grace=timedelta(hours=24))
        async with running_dispatcher(create_app(settings)):
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: count_at_least(rec.received, 1), what="the webhook")
    hook = rec.received[0]
    lowered = {k.lower(): v for k, v in hook.headers.items()}
    assert len(lowered["webhook-signature"].split()) == 2
    for key in (old, new.key):  # a receiver still on the old key and one already on the new both accept it
        assert Webhook(key).verify(hook.body, lowered)["operation"] == "creation"
    listed = await keys.keys("dev")
    assert [k.key for k in listed] == [new.key, old]
    assert listed[0].expires_at is None
    assert listed[1].expires_at is not None
    # After the grace period only the new key signs.
    assert await keys.signing_keys("dev", at=listed[1].expires_at + timedelta(seconds=1)) == [new.key]


async def test_toggles_and_event_kinds_decide_what_is_sent(
    settings: DispatcherSettings,
    db: Any,
    environments: EnvironmentStore,
    publisher: EventPublisher,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    error = ErrorInfo(type="refresh_token_external_error", description="revoked")
    async with webhook_receiver() as rec:
        await configure(environments, primary_url=rec.url, on_auth_creation=False, on_auth_refresh_error=True)
        events = {
            "creation (toggled off)": event("connection.created", ConnectionCreated(**CONN)),
            "failed creation (toggled off)": event(
                "auth.failed", AuthFailed(operation="creation", error=ErrorInfo(type="x", description="y"))
            ),
            "override": event("connection.updated", ConnectionUpdated(**CONN)),
            "metadata change": event("connection.updated", ConnectionUpdated(**CONN, operation="metadata")),
            "deletion": event("connection.deleted", ConnectionDeleted(**CONN)),
            "routine refresh": event("token.refreshed", TokenRefreshed(**CONN)),
            "recovered refresh": event("token.refreshed", TokenRefreshed(**CONN, recovered=True)),
            "refresh failure": event("token.refresh_failed", TokenRefreshFailed(**CONN, error=error)),
        }
        app = create_app(settings)
        async with running_dispatcher(app):
            for item in events.values():
                await publisher.publish(item)
            await eventually(lambda: count_at_least(rec.received, 3), what="three webhooks")
            await idle(app, amqp)
        bodies = sorted((json.loads(r.body)["operation"], json.loads(r.body)["success"]) for r in rec.received)
        assert bodies == [("override", True), ("refresh", False), ("refresh", True)]
        failure = next(json.loads(r.body) for r in rec.received if not json.loads(r.body)["success"])
        assert list(failure) == [
            "from",
            "type",
            "connectionId",
            "providerConfigKey",
            "authMode",
            "provider",
            "environment",
            "operation",
            "success",
            "error",
        ]
        assert failure["error"] == {"type": "refresh_token_external_error", "description": "revoked"}

        # Refresh failures switched off, then no URL at all: nothing more goes out.
        app = create_app(settings)
        async with running_dispatcher(app):
            await configure(environments, primary_url=rec.url, on_auth_refresh_error=False)
            await publisher.publish(event("token.refresh_failed", TokenRefreshFailed(**CONN, error=error)))
            await idle(app, amqp)
            await configure(environments, primary_url=None)
            await publisher.publish(event("connection.updated", ConnectionUpdated(**CONN)))
            await idle(app, amqp)
        assert len(rec.received) == 3


async def test_cached_settings_are_forgotten_when_the_gateway_broadcasts_a_change(
    settings: DispatcherSettings,
    environments: EnvironmentStore,
    publisher: EventPublisher,
    amqp: aio_pika.abc.AbstractRobustConnection,
    namespace: str,
) -> None:
    cached = settings.model_copy(update={"cache_seconds": 3600.0})
    async with webhook_receiver() as first, webhook_receiver() as second:
        await configure(environments, primary_url=first.url)
        async with running_dispatcher(create_app(cached)):
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: count_at_least(first.received, 1), what="the first webhook")
            await configure(environments, primary_url=second.url)
            await broadcast_change(amqp, namespace, "dev")

            # The broadcast and the next event travel on different queues: publish until one lands.
            for _ in range(20):
                await publisher.publish(event("connection.updated", ConnectionUpdated(**CONN)))
                await asyncio.sleep(0.25)
                if second.received:
                    break
    assert second.received, "the cached settings were never dropped"
    assert len(first.received) >= 1


async def test_a_failing_receiver_is_retried_then_given_up_on(
    settings: DispatcherSettings,
    db: Any,
    environments: EnvironmentStore,
    publisher: EventPublisher,
    results: list[Any],
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    async with scripted_receiver(status=500) as rec:
        await configure(environments, primary_url=rec.url)
        failed = event(
            "auth.failed",
            AuthFailed(**CONN, operation="override", error=ErrorInfo(type="invalid_credentials", description="bad")),
        )
        async with running_dispatcher(create_app(settings)):
            await publisher.publish(failed)
            final = await eventually(lambda: _final_failure(results), what="the final webhook.failed")
    assert len(rec.arrivals) == 4  # the first attempt and three retries (schedule of three waits)
    assert {a.headers["webhook-id"] for a in rec.arrivals} == {final.data.webhook_id}
    assert all(b.at - a.at >= 0.18 for a, b in zip(rec.arrivals, rec.arrivals[1:], strict=False))  # the waits held
    assert json.loads(rec.received[0].body)["error"] == {"type": "invalid_credentials", "description": "bad"}
    failures = of_type(results, "webhook.failed")
    assert [f.data.attempt for f in failures] == [1, 2, 3, 4]
    assert [f.data.final for f in failures] == [False, False, False, True]
    assert all(f.data.next_attempt_at is not None for f in failures[:3])
    assert final.data.next_attempt_at is None
    assert final.data.status == 500
    assert final.data.error.type == "http_error"
    assert final.data.connection_id == "c-1"  # so the activity log files it under the connection
    assert len({f.data.operation_id for f in failures}) == 1  # every attempt nests under one operation
    records = await attempts_of(db, event_id=failed.id)
    assert [r["attempt"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert (r["status"], r["success"], r["error_class"], r["state"]) == (500, False, "HTTPStatus", "failed")
        assert r["response_body"] == "answered 500"
    assert [r["final"] for r in records] == [False, False, False, True]
    assert all(r["next_attempt_at"] > r["created_at"] for r in records[:3])
    assert records[3]["next_attempt_at"] is None
    # The delivery that gave up waits in the send queue's dead-letter queue.
    spec_dead = f"{settings.bus_namespace}.webhook-dispatcher.send.dead"
    channel = await amqp.channel()
    dead = await channel.declare_queue(spec_dead, passive=True)
    message = await dead.get(timeout=5)
    assert json.loads(message.body)["data"]["delivery_id"] == final.data.delivery_id
    await channel.close()


async def test_each_url_retries_on_its_own(
    settings: DispatcherSettings, db: Any, environments: EnvironmentStore, publisher: EventPublisher
) -> None:
    async with webhook_receiver() as good, scripted_receiver(500, 500) as flaky:
        await configure(environments, primary_url=good.url, secondary_url=flaky.url)
        created = event("connection.created", ConnectionCreated(**CONN))
        async with running_dispatcher(create_app(settings)):
            await publisher.publish(created)
            await eventually(lambda: count_at_least(flaky.arrivals, 3), what="the secondary to succeed at last")
            await eventually(lambda: _succeeded(db, created.id, 2), what="both deliveries recorded as done")
    assert len(good.received) == 1  # the secondary's retries never resent to the primary


async def test_a_private_target_is_refused_without_a_request(
    settings: DispatcherSettings,
    db: Any,
    environments: EnvironmentStore,
    publisher: EventPublisher,
    results: list[Any],
) -> None:
    async with webhook_receiver() as rec:
        # All loopback, all outside the allowlist (127.0.0.1/32): the IPv6 one, and the IPv4-mapped
        # IPv6 form of 127.0.0.2, judged by the address it embeds. A decimal IPv4 host is not a URL
        # aiohttp accepts at all.
        targets = {
            f"http://127.0.0.2:{rec.port}/hook": "EgressRefused",
            f"http://[::1]:{rec.port}/hook": "EgressRefused",
            f"http://[::ffff:127.0.0.2]:{rec.port}/hook": "EgressRefused",
            f"http://2130706434:{rec.port}/hook": "InvalidUrlClientError",
        }
        async with running_dispatcher(create_app(settings)):
            for n, target in enumerate(targets, start=1):
                await configure(environments, primary_url=target)
                await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
                await eventually(lambda n=n: _final_count(results, n), what="webhook.failed")
        assert rec.received == []
    assert [r.data.error.type for r in results] == ["egress_refused"] * 3 + ["network_error"]
    assert all(r.data.final and r.data.attempt == 1 for r in results)  # refused once, not retried
    records = await attempts_of(db)
    assert [r["error_class"] for r in records] == list(targets.values())


async def test_an_event_delivered_twice_sends_one_webhook(
    settings: DispatcherSettings,
    db: Any,
    environments: EnvironmentStore,
    publisher: EventPublisher,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    async with webhook_receiver() as rec:
        await configure(environments, primary_url=rec.url)
        created = event("connection.created", ConnectionCreated(**CONN))
        app = create_app(settings)
        async with running_dispatcher(app):
            await publisher.publish(created)
            await publisher.publish(created)
            await eventually(lambda: count_at_least(rec.received, 1), what="the webhook")
            await idle(app, amqp)
        assert len(rec.received) == 1
    assert len(await attempts_of(db, event_id=created.id)) == 1


async def _got(*receivers: WebhookReceiver) -> bool:
    return all(r.received for r in receivers)


async def _final_failure(results: list[Any]) -> Any:
    return next((r for r in results if r.type == "webhook.failed" and r.data.final), None)


async def _final_count(results: list[Any], n: int) -> bool:
    return len([r for r in results if r.type == "webhook.failed" and r.data.final]) >= n


async def _succeeded(db: Any, event_id: str, n: int) -> bool:
    return await db["webhook_deliveries"].count_documents({"event_id": event_id, "success": True}) >= n
