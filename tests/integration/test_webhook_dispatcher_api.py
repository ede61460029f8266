"""The webhook API through the real gateway, with the real dispatcher (and activity log) consuming.

Attempts listed and paged; one delivery replayed and every failed one since a time (the gateway
publishes a command, the dispatcher sends); a replay after the URL was fixed goes to the new URL;
signing keys listed and rotated (the dispatcher, caching for an hour, signs with both at once);
endpoint health and enabling a disabled one; the activity log's operation for a delivery that gave up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from standardwebhooks.webhooks import Webhook

from activity_log.app import create_app as create_activity_log
from activity_log.read import get_operation
from activity_log.settings import ActivityLogSettings
from keyway_shared.bus import EventPublisher
from keyway_shared.events import ConnectionCreated
from webhook_dispatcher.app import create_app as create_dispatcher
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import event, running
from ..support.polling import eventually
from ..support.scripted_receiver import scripted_receiver
from ..support.webhooks import count_at_least, dispatcher_settings, running_dispatcher
from .gateway_app import Gateway, StartGateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

CONN = {"connection_id": "c-api", "provider_config_key": "ph", "provider": "posthog", "auth_mode": "API_KEY"}


@pytest.fixture
def settings(mongo_url: str, db_name: str, amqp_url: str, namespace: str, encryption_key: str) -> DispatcherSettings:
    return dispatcher_settings(
        mongo_url=mongo_url,
        db_name=db_name,
        amqp_url=amqp_url,
        namespace=namespace,
        encryption_key=encryption_key,
        retry_schedule=(0.1, 0.1),
    )


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(outbox_sweep_seconds=0.5, outbox_stale_seconds=1) as gateway:
        yield gateway


@pytest.fixture
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield pub
    await pub.close()


async def call(gw: Gateway, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with gw.client.request(method, path, headers=gw.auth, **kwargs) as resp:
        return resp.status, await resp.json()


async def set_urls(gw: Gateway, **urls: str | None) -> None:
    status, _ = await call(gw, "PATCH", "/environment", json={"webhook_settings": urls})
    assert status == 200


async def test_attempts_are_listed_paged_and_one_delivery_replayed(
    gw: Gateway, settings: DispatcherSettings, publisher: EventPublisher
) -> None:
    async with scripted_receiver(status=500) as rec:
        await set_urls(gw, primary_url=rec.url)
        sent = event("connection.created", ConnectionCreated(**CONN))
        async with running_dispatcher(create_dispatcher(settings)):
            await publisher.publish(sent)
            await eventually(lambda: _attempt_count(gw, 3), what="three attempts listed")

            status, page = await call(gw, "GET", "/webhooks/deliveries?limit=2")
            assert status == 200
            assert [a["attempt"] for a in page["attempts"]] == [3, 2]  # newest first
            status, rest = await call(gw, "GET", f"/webhooks/deliveries?limit=2&cursor={page['next_cursor']}")
            assert [a["attempt"] for a in rest["attempts"]] == [1]
            assert rest["next_cursor"] is None
            first = rest["attempts"][0]
            for field in ("url", "status", "duration_ms", "error_class", "response_body", "attempt", "next_attempt_at"):
                assert field in first
            assert (first["url"], first["status"], first["error_class"]) == (rec.url, 500, "HTTPStatus")
            assert first["next_attempt_at"].endswith("Z")
            assert page["attempts"][0]["final"] is True
            _, failed_only = await call(gw, "GET", f"/webhooks/deliveries?state=failed&event_id={sent.id}")
            assert len(failed_only["attempts"]) == 3

            delivery = first["delivery_id"]
            rec.status = 200
            status, accepted = await call(gw, "POST", f"/webhooks/deliveries/{delivery}/replay")
            assert status == 202
            assert accepted["delivery_id"] == delivery
            await eventually(lambda: _succeeded(gw, delivery), timeout=30, what="the replay to be delivered")

        status, one = await call(gw, "GET", f"/webhooks/deliveries/{delivery}")
        assert status == 200
        runs = [(a["trigger"], a["attempt"], a["state"]) for a in one["attempts"]]
        assert runs == [
            ("event", 1, "failed"),
            ("event", 2, "failed"),
            ("event", 3, "failed"),
            ("replay", 1, "succeeded"),
        ]
        assert one["attempts"][3]["run"] == accepted["replay_id"]
    assert len({a.headers["webhook-id"] for a in rec.arrivals}) == 1  # the replay keeps the webhook-id

    status, missing = await call(gw, "POST", "/webhooks/deliveries/no-such-delivery/replay")
    assert (status, missing["error"]["code"]) == (404, "unknown_delivery")
    async with gw.client.get("/webhooks/deliveries") as unauthenticated:
        assert unauthenticated.status == 401


async def test_every_failed_delivery_since_a_time_is_replayed_to_the_url_now_configured(
    gw: Gateway, db: Any, settings: DispatcherSettings, publisher: EventPublisher, namespace: str
) -> None:
    async with scripted_receiver(status=500) as broken, scripted_receiver() as fixed:
        await set_urls(gw, primary_url=broken.url)
        before = datetime.now(UTC) - timedelta(seconds=1)
        async with running_dispatcher(create_dispatcher(settings)):
            failing = [event("connection.created", ConnectionCreated(**CONN)) for _ in range(3)]
            for item in failing:
                await publisher.publish(item)
            await eventually(lambda: _final_failures(gw, 3), what="three deliveries to give up")
            await set_urls(gw, primary_url=fixed.url)  # the URL had a typo; now it is right
            status, _ = await call(gw, "POST", "/webhooks/replay", json={"since": before.isoformat()})
            assert status == 202
            await eventually(lambda: count_at_least(fixed.arrivals, 3), timeout=30, what="three replays")
            # Replaying again finds nothing new to send: the same deliveries (to the new URL) succeeded.
            status, again = await call(gw, "POST", "/webhooks/replay", json={"since": before.isoformat()})
            assert status == 202
            await eventually(lambda: _replay_done(db, namespace, again["replay_id"]), what="the second replay")
            await asyncio.sleep(0.5)
    assert len(broken.arrivals) == 9  # three attempts for each of three deliveries
    assert len(fixed.arrivals) == 3  # the second request found every delivery done
    # The replays keep each delivery's webhook-id, though they went to the corrected URL.
    assert {a.headers["webhook-id"] for a in fixed.arrivals} == {a.headers["webhook-id"] for a in broken.arrivals}
    status, bad = await call(gw, "POST", "/webhooks/replay", json={"since": "yesterday"})
    assert (status, bad["error"]["code"]) == (400, "invalid_body")


async def test_signing_keys_rotate_and_both_sign_at_once_despite_the_cache(
    gw: Gateway, settings: DispatcherSettings, publisher: EventPublisher
) -> None:
    cached = settings.model_copy(update={"cache_seconds": 3600.0})
    async with scripted_receiver() as rec:
        await set_urls(gw, primary_url=rec.url)
        async with running_dispatcher(create_dispatcher(cached)):
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: count_at_least(rec.arrivals, 1), what="a webhook with the first key")
            status, listed = await call(gw, "GET", "/webhooks/signing-keys")
            assert status == 200
            [old] = listed["keys"]
            assert old["key"].startswith("whsec_")
            assert old["expires_at"] is None
            status, rotated = await call(gw, "POST", "/webhooks/signing-keys/rotate", json={"grace_seconds": 3600})
            assert status == 200
            assert rotated["key"] != old["key"]
            expiry = datetime.fromisoformat(rotated["previous_keys_expire_at"].replace("Z", "+00:00"))
            assert timedelta(minutes=59) < expiry - datetime.now(UTC) <= timedelta(hours=1)
            _, both = await call(gw, "GET", "/webhooks/signing-keys")
            assert [k["key"] for k in both["keys"]] == [rotated["key"], old["key"]]
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: count_at_least(rec.arrivals, 2), what="a webhook after the rotation")
    after = rec.arrivals[1]
    assert len(after.headers["webhook-signature"].split()) == 2
    for key in (old["key"], rotated["key"]):
        Webhook(key).verify(after.request.body, after.headers)
    assert len(rec.arrivals[0].headers["webhook-signature"].split()) == 1


async def test_a_gone_endpoint_is_listed_disabled_and_enabled_again(
    gw: Gateway, settings: DispatcherSettings, publisher: EventPublisher
) -> None:
    async with scripted_receiver(410) as rec:
        await set_urls(gw, primary_url=rec.url)
        async with running_dispatcher(create_dispatcher(settings)):
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: _disabled(gw), what="the endpoint disabled")
            _, listed = await call(gw, "GET", "/webhooks/endpoints")
            [endpoint] = listed["endpoints"]
            assert (endpoint["slot"], endpoint["url"], endpoint["disabled_reason"]) == ("primary", rec.url, "gone")
            status, enabled = await call(gw, "POST", "/webhooks/endpoints/enable", json={"url": rec.url})
            assert (status, enabled["was_disabled"]) == (200, True)
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: count_at_least(rec.arrivals, 2), what="a webhook to the enabled endpoint")
        _, listed = await call(gw, "GET", "/webhooks/endpoints")
        assert listed["endpoints"][0]["disabled"] is False
    status, _ = await call(gw, "POST", "/webhooks/endpoints/enable", json={"url": "https://elsewhere.example/"})
    assert status == 404


async def test_the_activity_log_shows_a_delivery_that_gave_up(
    gw: Gateway,
    db: Any,
    settings: DispatcherSettings,
    publisher: EventPublisher,
    service_settings: dict[str, Any],
) -> None:
    activity = ActivityLogSettings(**service_settings)
    async with scripted_receiver(status=503) as rec, running(create_activity_log(activity)):
        await set_urls(gw, primary_url=rec.url)
        async with running_dispatcher(create_dispatcher(settings)):
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: _final_failures(gw, 1), what="the delivery to give up")
            _, page = await call(gw, "GET", "/webhooks/deliveries")
            delivery = page["attempts"][0]["delivery_id"]
            operation = await eventually(lambda: _failed_operation(db, delivery), what="the failed operation")
    assert operation["type"] == "webhook:outgoing"
    assert operation["error"]["type"] == "http_error"
    texts = [m["message"] for m in operation["messages"]]
    assert len(texts) == 3
    assert "will retry" in texts[0]
    assert texts[-1].startswith(f"Webhook delivery to {rec.url} failed (attempt 3)")


async def _attempts(gw: Gateway, query: str = "") -> list[dict[str, Any]]:
    _, page = await call(gw, "GET", f"/webhooks/deliveries?limit=250{query}")
    return page["attempts"]  # type: ignore[no-any-return]


async def _attempt_count(gw: Gateway, n: int) -> bool:
    return len([a for a in await _attempts(gw) if a["state"] != "sending"]) >= n


async def _succeeded(gw: Gateway, delivery: str) -> bool:
    return any(a["state"] == "succeeded" for a in await _attempts(gw, f"&delivery_id={delivery}"))


async def _final_failures(gw: Gateway, n: int) -> bool:
    return len([a for a in await _attempts(gw, "&state=failed") if a["final"]]) >= n


async def _disabled(gw: Gateway) -> bool:
    _, listed = await call(gw, "GET", "/webhooks/endpoints")
    return bool(listed["endpoints"] and listed["endpoints"][0]["disabled"])


async def _replay_done(db: Any, namespace: str, replay_id: str) -> bool:
    key = f"{namespace}.webhook-dispatcher.replay|{replay_id}"  # the replay consumer's idempotency record
    return await db["processed_events"].count_documents({"_id": key, "state": "done"}) == 1


async def _failed_operation(db: Any, operation_id: str) -> dict[str, Any] | None:
    operation = await get_operation(db, operation_id)
    if operation is None or operation.get("state") != "failed" or len(operation["messages"]) < 3:
        return None
    return operation
