"""Retries on the broker's delay queues, against real receivers on 127.0.0.1 that misbehave on purpose.

A receiver down then up; 500 x N then 200; ``Retry-After`` on 429 and 503 (clamped); 410 disabling
the endpoint; a receiver that never answers; the circuit breaker; an endpoint disabled after its
deliveries kept failing, and a success resetting that clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from standardwebhooks.webhooks import Webhook

from keyway_shared.bus import EventPublisher
from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import ConnectionCreated, ConnectionUpdated
from keyway_shared.store import EnvironmentStore, WebhookKeyStore
from keyway_shared.store.webhook_endpoints import EndpointStore
from webhook_dispatcher.app import create_app
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import event
from ..support.polling import eventually
from ..support.procs import free_port
from ..support.scripted_receiver import HANG, Reply, ScriptedReceiver, scripted_receiver
from ..support.webhooks import (
    attempts_of,
    configure,
    count_at_least,
    dispatcher_settings,
    idle,
    of_type,
    running_dispatcher,
    webhook_events,
)

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

CONN = {"connection_id": "c-9", "provider_config_key": "ph", "provider": "posthog", "auth_mode": "API_KEY"}


@pytest.fixture
def make_settings(mongo_url: str, db_name: str, amqp_url: str, namespace: str, encryption_key: str) -> Any:
    def make(**overrides: Any) -> DispatcherSettings:
        return dispatcher_settings(
            mongo_url=mongo_url,
            db_name=db_name,
            amqp_url=amqp_url,
            namespace=namespace,
            encryption_key=encryption_key,
            **overrides,
        )

    return make


@pytest.fixture
def environments(db: Any, encryption_key: str) -> EnvironmentStore:
    return EnvironmentStore(db, CredentialCipher(current_key=encryption_key))


@pytest.fixture
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield pub
    await pub.close()


@pytest.fixture
async def results(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[list[Any]]:
    async with webhook_events(amqp, namespace) as seen:
        yield seen


def created() -> Any:
    return event("connection.created", ConnectionCreated(**CONN))


async def test_a_receiver_down_for_a_while_gets_the_webhook_once_it_is_up(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher, encryption_key: str
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    receiver = ScriptedReceiver(port=port)
    await configure(environments, primary_url=receiver.url)
    sent = created()
    async with running_dispatcher(create_app(make_settings(retry_schedule=(0.3,) * 8))):
        await publisher.publish(sent)
        await eventually(lambda: _attempts(db, sent.id, 3), what="three refused attempts")
        await receiver.start()
        try:
            await eventually(lambda: count_at_least(receiver.arrivals, 1), what="the webhook, once up")
            await eventually(lambda: _delivered(db, sent.id), what="the attempt recorded as delivered")
            await asyncio.sleep(1)  # no attempt after the success
        finally:
            await receiver.stop()
    assert len(receiver.arrivals) == 1
    records = await attempts_of(db, event_id=sent.id)
    assert [r["state"] for r in records] == ["failed"] * (len(records) - 1) + ["succeeded"]
    assert len(records) >= 4
    assert [r["attempt"] for r in records] == list(range(1, len(records) + 1))
    assert all(r["error_class"] == "ClientConnectorError" and r["status"] is None for r in records[:-1])
    assert {r["webhook_id"] for r in records} == {receiver.arrivals[0].headers["webhook-id"]}
    [key] = await WebhookKeyStore(db, CredentialCipher(current_key=encryption_key)).signing_keys("dev")
    Webhook(key).verify(receiver.arrivals[0].request.body, receiver.arrivals[0].headers)


async def test_500_n_times_then_200_one_request_per_attempt_each_freshly_signed(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher, encryption_key: str
) -> None:
    async with scripted_receiver(500, 502, 500) as rec:
        await configure(environments, primary_url=rec.url)
        sent = created()
        async with running_dispatcher(create_app(make_settings(retry_schedule=(1.05,) * 4))):
            await publisher.publish(sent)
            await eventually(lambda: _delivered(db, sent.id), timeout=30, what="the fourth attempt to succeed")
    assert len(rec.arrivals) == 4
    assert len({a.headers["webhook-id"] for a in rec.arrivals}) == 1
    stamps = [int(a.headers["webhook-timestamp"]) for a in rec.arrivals]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 4  # a fresh timestamp (and so signature) on every attempt
    [key] = await WebhookKeyStore(db, CredentialCipher(current_key=encryption_key)).signing_keys("dev")
    for arrival in rec.arrivals:
        Webhook(key).verify(arrival.request.body, arrival.headers)
    records = await attempts_of(db, event_id=sent.id)
    assert [(r["attempt"], r["status"]) for r in records] == [(1, 500), (2, 502), (3, 500), (4, 200)]


async def test_a_retry_follows_the_endpoint_to_its_corrected_url(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher
) -> None:
    async with scripted_receiver(status=404) as typo, scripted_receiver() as fixed:
        await configure(environments, primary_url=typo.url)
        sent = created()
        async with running_dispatcher(create_app(make_settings(retry_schedule=(0.5, 0.5)))):
            await publisher.publish(sent)
            await eventually(lambda: count_at_least(typo.arrivals, 1), what="the first attempt, to the typo")
            await configure(environments, primary_url=fixed.url)  # the endpoint's URL corrected
            await eventually(lambda: _delivered(db, sent.id), what="the retry, to the corrected URL")
    assert len(typo.arrivals) == 1
    assert typo.arrivals[0].headers["webhook-id"] == fixed.arrivals[0].headers["webhook-id"]
    records = await attempts_of(db, event_id=sent.id)
    assert [(r["url"], r["attempt"], r["state"]) for r in records] == [
        (typo.url, 1, "failed"),
        (fixed.url, 2, "succeeded"),
    ]


async def test_retry_after_is_honoured_within_bounds(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher
) -> None:
    replies = [Reply(503, "1"), Reply(503, "3600"), Reply(429), Reply(429, "2"), Reply(200)]
    settings = make_settings(retry_schedule=(0.8,) * 4, overload_min_delay_seconds=1.2)
    async with scripted_receiver(*replies) as rec:
        await configure(environments, primary_url=rec.url)
        sent = created()
        async with running_dispatcher(create_app(settings)):
            await publisher.publish(sent)
            await eventually(lambda: _delivered(db, sent.id), timeout=30, what="the delivery")
    records = await attempts_of(db, event_id=sent.id)
    waits = [r["retry_delay"] for r in records[:-1]]
    # 503 asking 1 s of a 0.8 s wait: honoured (rounded up to the next quarter of the wait);
    # 503 asking an hour: capped at twice the wait; 429 without a header: the overload minimum;
    # 429 asking 2 s with the 1.2 s overload minimum: honoured, rounded up to a quarter.
    assert waits == pytest.approx([1.0, 1.6, 1.2, 2.1])
    gaps = [b.at - a.at for a, b in zip(rec.arrivals, rec.arrivals[1:], strict=False)]
    for gap, wait in zip(gaps, waits, strict=True):
        assert wait - 0.05 <= gap <= wait + 1.0


async def test_410_disables_the_endpoint_until_it_is_enabled_again(
    make_settings: Any,
    db: Any,
    environments: EnvironmentStore,
    publisher: EventPublisher,
    results: list[Any],
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    async with scripted_receiver(410) as rec:
        await configure(environments, primary_url=rec.url)
        first, second, third = created(), created(), created()
        app = create_app(make_settings())
        async with running_dispatcher(app):
            await publisher.publish(first)
            await eventually(lambda: count_at_least(of_type(results, "webhook.endpoint_disabled"), 1), what="disable")
            await publisher.publish(second)
            await eventually(lambda: _final_failures(results, 2), what="the second delivery refused")
            state = await EndpointStore(db).get("dev", rec.url)
            assert (state.disabled, state.disabled_reason) == (True, "gone")
            assert await EndpointStore(db).enable("dev", rec.url)
            await publisher.publish(third)
            await eventually(lambda: _delivered(db, third.id), what="the third delivered")
            await idle(app, amqp)
    assert len(rec.arrivals) == 2  # the 410, then the third event; never the second
    [disabled] = of_type(results, "webhook.endpoint_disabled")
    assert (disabled.data.url, disabled.data.reason) == (rec.url, "gone")
    [gone] = await attempts_of(db, event_id=first.id)
    assert (gone["status"], gone["final"], gone["attempt"]) == (410, True, 1)
    [skipped] = await attempts_of(db, event_id=second.id)
    assert (skipped["state"], skipped["error"]["type"]) == ("discarded", "endpoint_disabled")


async def test_a_receiver_that_never_answers_times_out_and_is_retried(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher
) -> None:
    settings = make_settings(webhook_timeout_seconds=0.5, retry_schedule=(0.3, 0.3), overload_min_delay_seconds=0.8)
    async with scripted_receiver(HANG, HANG, 200) as rec:
        await configure(environments, primary_url=rec.url)
        sent = created()
        async with running_dispatcher(create_app(settings)):
            await publisher.publish(sent)
            await eventually(lambda: _delivered(db, sent.id), timeout=30, what="the third attempt")
    records = await attempts_of(db, event_id=sent.id)
    assert [r["error"]["type"] if r["error"] else None for r in records] == ["timeout", "timeout", None]
    assert all(0.45 <= r["duration_ms"] / 1000 <= 1.5 for r in records[:2])
    assert [r["retry_delay"] for r in records[:2]] == [0.8, 0.8]  # a timeout waits at least the overload minimum
    assert rec.arrivals[1].at - rec.arrivals[0].at >= 0.5 + 0.8 - 0.05


async def test_a_redirect_is_a_failure_and_is_not_followed(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher
) -> None:
    async with scripted_receiver() as elsewhere:
        async with scripted_receiver(Reply(307, location=elsewhere.url), Reply(200)) as rec:
            await configure(environments, primary_url=rec.url)
            sent = created()
            async with running_dispatcher(create_app(make_settings())):
                await publisher.publish(sent)
                await eventually(lambda: _delivered(db, sent.id), what="the retry to the same URL")
        assert elsewhere.arrivals == []
    records = await attempts_of(db, event_id=sent.id)
    assert [(r["status"], r["state"]) for r in records] == [(307, "failed"), (200, "succeeded")]


async def test_the_circuit_breaker_spares_a_receiver_that_is_down(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher
) -> None:
    settings = make_settings(
        retry_schedule=(0.3,) * 20, breaker_failures=3, breaker_window_seconds=10, breaker_cooldown_seconds=1.0
    )
    async with scripted_receiver(status=500) as rec:
        await configure(environments, primary_url=rec.url)
        events = [created() for _ in range(8)]
        async with running_dispatcher(create_app(settings)):
            for item in events:
                await publisher.publish(item)
            await eventually(lambda: _circuit_open_records(db, 8), what="short-circuited attempts")
            down_requests = len(rec.arrivals)
            await asyncio.sleep(1.5)
            rec.status = 200
            for item in events:
                await eventually(lambda item=item: _delivered(db, item.id), timeout=30, what="every delivery")
    records = await attempts_of(db)
    short_circuited = [r for r in records if r["error_class"] == "CircuitOpen"]
    assert short_circuited
    assert all(r["duration_ms"] == 0 and r["status"] is None for r in short_circuited)
    # While open, at most one probe per cooldown reached the receiver.
    assert down_requests <= 8 + 1
    assert len(rec.arrivals) < len(records)


async def test_an_endpoint_failing_for_the_disable_period_is_disabled_and_a_success_resets_the_clock(
    make_settings: Any, db: Any, environments: EnvironmentStore, publisher: EventPublisher, results: list[Any]
) -> None:
    settings = make_settings(retry_schedule=(0.1,), disable_after_seconds=1.0)
    async with scripted_receiver(status=500) as rec:
        await configure(environments, primary_url=rec.url)
        async with running_dispatcher(create_app(settings)):
            await publisher.publish(created())
            await eventually(lambda: _final_failures(results, 1), what="the first delivery exhausted")
            rec.status = 200  # a success in between: the failing streak is over
            await publisher.publish(event("connection.updated", ConnectionUpdated(**CONN)))
            await eventually(lambda: count_at_least(of_type(results, "webhook.delivered"), 1), what="a success")
            assert (await EndpointStore(db).get("dev", rec.url)).failing_since is None
            rec.status = 500
            await asyncio.sleep(1.1)
            await publisher.publish(created())
            await eventually(lambda: _final_failures(results, 2), what="the second delivery exhausted")
            assert not (await EndpointStore(db).get("dev", rec.url)).disabled  # the clock started again
            await asyncio.sleep(1.1)
            await publisher.publish(created())
            await eventually(lambda: count_at_least(of_type(results, "webhook.endpoint_disabled"), 1), what="disable")
    state = await EndpointStore(db).get("dev", rec.url)
    assert (state.disabled, state.disabled_reason) == (True, "failing")
    [disabled] = of_type(results, "webhook.endpoint_disabled")
    assert disabled.data.reason == "failing"
    assert disabled.data.failing_since is not None


async def _attempts(db: Any, event_id: str, n: int) -> bool:
    return await db["webhook_deliveries"].count_documents({"event_id": event_id, "state": "failed"}) >= n


async def _delivered(db: Any, event_id: str) -> bool:
    return await db["webhook_deliveries"].count_documents({"event_id": event_id, "success": True}) >= 1


async def _circuit_open_records(db: Any, n: int) -> bool:
    return await db["webhook_deliveries"].count_documents({"error_class": "CircuitOpen"}) >= n


async def _final_failures(results: list[Any], n: int) -> bool:
    return len([r for r in results if r.type == "webhook.failed" and r.data.final]) >= n
