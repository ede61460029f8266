"""The gateway's connection cache: reads skip the database, yet no replica ever answers with
credentials older than a write that was acknowledged, on whichever replica or service it happened.

Two gateway replicas run in this process on the real broker and database; the second reaches the
broker through a proxy that can slow down what the broker sends it, so its events arrive late.
Every check reads right after a change was acknowledged: no waiting, no retry. Entries' ages are
read from a stepped clock on the second replica, so expiry and refresh ahead need no sleeping; the
replicas' background checks for stamped changes are paused, and the tests run them when they say.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client import REGISTRY

from auth_gateway.connection_cache import CONNECTION_CACHE, UNTRACED_LIFE, ConnectionCache
from keyway_shared.service import BROKER
from keyway_shared.store.client import db_now

from ..support.clock import SteppedClock
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from ..support.tcpproxy import TcpProxy
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@dataclass
class Pair:
    one: Gateway
    two: Gateway  # its broker link runs through ``link``
    provider: OAuthProvider
    link: TcpProxy

    def cache(self, gw: Gateway) -> ConnectionCache:
        app = gw.client.app
        assert app is not None
        cache: ConnectionCache = app[CONNECTION_CACHE]
        return cache


@pytest.fixture
async def pair(tmp_path: Path, amqp_url: str, start_gateway: StartGateway) -> AsyncIterator[Pair]:
    provider = await OAuthProvider().start()
    broker = urlsplit(amqp_url)
    link = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await link.start()
    settings: dict[str, Any] = {
        "providers_file": providers_yaml(tmp_path, {"test-oauth2": provider.template()}),
        "egress_allowlist": "127.0.0.0/8",
        "provider_timeout_seconds": 2.0,
        "connection_cache_seconds": 2.0,
    }
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(start_gateway(**settings))
        through_link = broker._replace(netloc=f"{broker.netloc.rsplit('@', 1)[0]}@127.0.0.1:{link.port}").geturl()
        two = await stack.enter_async_context(start_gateway(**settings, amqp_url=through_link, keys_of=one))
        await create_integration(one, "test-oauth2", "oauth", **provider.integration_fields)
        result = Pair(one=one, two=two, provider=provider, link=link)

        async def both_live() -> bool:
            return result.cache(one).live and result.cache(two).live

        await eventually(both_live, timeout=15, what="both replicas' caches to listen to the event stream")
        result.cache(one).checking = result.cache(two).checking = False
        yield result
    await link.cut()
    await provider.stop()


async def put(gw: Gateway, connection_id: str, access_token: str, **extra: Any) -> None:
    body = {
        "connection_id": connection_id,
        "provider_config_key": "oauth",
        "access_token": access_token,
        "refresh_token": f"rt-{access_token}",
        "expires_in": 3600,
        **extra,
    }
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status in (200, 201), await resp.text()


async def read(gw: Gateway, connection_id: str, **query: str) -> tuple[int, dict[str, Any]]:
    resp = await gw.client.get(
        f"/connection/{connection_id}", params={"provider_config_key": "oauth", **query}, headers=gw.auth
    )
    return resp.status, await resp.json()


async def token(gw: Gateway, connection_id: str) -> str:
    status, body = await read(gw, connection_id)
    assert status == 200, body
    return str(body["credentials"]["access_token"])


def barrier_waits() -> float:
    """How many cached reads have waited for a barrier, in this process (both replicas)."""
    return REGISTRY.get_sample_value("keyway_connection_cache_barrier_seconds_count") or 0.0


async def test_reads_are_served_from_memory(pair: Pair, db: Any) -> None:
    cache = pair.cache(pair.two)
    cache.clock = clock = SteppedClock()
    await put(pair.one, "c-1", "at-1")
    assert await token(pair.two, "c-1") == "at-1"  # a miss fills the entry
    assert len(cache) == 1
    # Change the stored document behind the cache's back (no event): the entry still answers, which
    # shows reads really skip the database. No Keyway writer ever does this.
    await db["connections"].update_one({"connection_id": "c-1"}, {"$set": {"metadata": {"behind": "the back"}}})
    waits_before = barrier_waits()
    _status, body = await read(pair.two, "c-1")
    assert body["metadata"] != {"behind": "the back"}
    await clock.step(1.9)
    _status, body = await read(pair.two, "c-1")
    assert body["metadata"] != {"behind": "the back"}
    assert barrier_waits() - waits_before == 2  # each hit waited for its barrier, and says so
    # However it got there, no entry outlives KEYWAY_CONNECTION_CACHE_SECONDS (2 s here).
    await clock.step(0.1)
    _status, body = await read(pair.two, "c-1")
    assert body["metadata"] == {"behind": "the back"}


async def test_an_entry_in_steady_use_is_reloaded_before_it_expires(pair: Pair, db: Any) -> None:
    cache = pair.cache(pair.two)
    clock = cache.clock = SteppedClock()
    life = 2.0 * UNTRACED_LIFE  # what bounds a write that leaves no stamp, as these do

    async def step_and_check(seconds: float) -> None:
        await clock.step(seconds)
        assert await cache.check_for_changes()  # finds no stamp: entries go on answering

    await put(pair.one, "c-6", "at-6")
    assert await token(pair.two, "c-6") == "at-6"  # filled at t0; expires at t0 + life
    behind_the_back = db["connections"].update_one
    await behind_the_back({"connection_id": "c-6"}, {"$set": {"metadata": {"v": 1}}})
    await step_and_check(0.7 * life)  # before three quarters of its life: a plain hit
    _status, body = await read(pair.two, "c-6")
    assert body["metadata"] != {"v": 1}
    await step_and_check(0.1 * life)  # past three quarters of its life
    _status, body = await read(pair.two, "c-6")
    assert body["metadata"] != {"v": 1}  # still answered from memory, and a reload started

    async def reloaded() -> bool:
        return bool((await read(pair.two, "c-6"))[1]["metadata"] == {"v": 1})

    await eventually(reloaded, timeout=5, interval=0.02, what="the background reload")
    await behind_the_back({"connection_id": "c-6"}, {"$set": {"metadata": {"v": 2}}})
    await step_and_check(0.25 * life)  # now past the first fill's expiry
    _status, body = await read(pair.two, "c-6")
    # The reloaded entry answers: the connection never missed, and its life started again.
    assert body["metadata"] == {"v": 1}


async def test_a_stamped_write_without_its_event_is_seen_after_one_check(pair: Pair, db: Any) -> None:
    cache = pair.cache(pair.two)
    clock = cache.clock = SteppedClock()
    await put(pair.one, "c-7", "at-7")
    assert await token(pair.two, "c-7") == "at-7"
    # What every Keyway writer does, without the event (as if it were lost): a new updated_at.
    await db["connections"].update_one(
        {"connection_id": "c-7"}, {"$set": {"metadata": {"stamped": True}, "updated_at": db_now()}}
    )
    _status, body = await read(pair.two, "c-7")
    assert body["metadata"] != {"stamped": True}  # no check yet: from memory
    assert await cache.check_for_changes()
    _status, body = await read(pair.two, "c-7")
    assert body["metadata"] == {"stamped": True}
    # A write that leaves no stamp survives the checks, but not the entry's whole life (24 s here).
    await db["connections"].update_one({"connection_id": "c-7"}, {"$set": {"metadata": {"stamped": False}}})
    for _ in range(UNTRACED_LIFE - 1):  # no read meanwhile: a read late in its life would reload it
        await clock.step(2.0)
        assert await cache.check_for_changes()
    _status, body = await read(pair.two, "c-7")  # 22 s old, checked 22 s long
    assert body["metadata"] == {"stamped": True}
    await clock.step(2.0)
    _status, body = await read(pair.two, "c-7")
    assert body["metadata"] == {"stamped": False}


async def test_the_background_checks_find_a_stamped_write_within_max_age(pair: Pair, db: Any) -> None:
    cache = pair.cache(pair.two)
    cache.checking = True  # on the real clock: every max_age / 2 (1 s here)
    await put(pair.one, "c-8", "at-8")
    assert await token(pair.two, "c-8") == "at-8"
    await db["connections"].update_one(
        {"connection_id": "c-8"}, {"$set": {"metadata": {"checked": True}, "updated_at": db_now()}}
    )

    async def seen() -> bool:
        return bool((await read(pair.two, "c-8"))[1]["metadata"] == {"checked": True})

    await eventually(seen, timeout=2.0, interval=0.05, what="a background check to drop the entry")
    assert len(cache) == 1  # read again after the drop, and held


async def test_an_acknowledged_write_is_seen_at_once_by_every_replica(pair: Pair) -> None:
    await put(pair.one, "c-2", "at-0")
    pair.link.delay = 0.3  # replica two hears of every event 300 ms late
    for round_ in range(1, 9):
        writer, reader = (pair.one, pair.two) if round_ % 2 else (pair.two, pair.one)
        assert await token(reader, "c-2") == f"at-{round_ - 1}"  # cached on the reader now
        await put(writer, "c-2", f"at-{round_}")  # reconnect with new credentials, acknowledged
        assert await token(reader, "c-2") == f"at-{round_}"  # at once, on the other replica


async def test_delete_and_metadata_reach_the_other_replica_at_once(pair: Pair) -> None:
    await put(pair.one, "c-3", "at-3")
    assert await token(pair.two, "c-3") == "at-3"
    pair.link.delay = 0.3
    resp = await pair.one.client.patch(
        "/connection/c-3/metadata", json={"plan": "pro"}, headers={**pair.one.auth, "Provider-Config-Key": "oauth"}
    )
    assert resp.status in (200, 201), await resp.text()
    _status, body = await read(pair.two, "c-3")
    assert body["metadata"] == {"plan": "pro"}
    resp = await pair.one.client.delete("/connection/c-3?provider_config_key=oauth", headers=pair.one.auth)
    assert resp.status == 200, await resp.text()
    status, body = await read(pair.two, "c-3")
    assert status == 404
    assert body["error"]["code"] == "unknown_connection"


async def test_a_refresh_on_one_replica_is_seen_at_once_on_the_other(pair: Pair) -> None:
    from .test_oauth2_flow import run_flow  # the real connect flow: the provider knows this grant

    _resp, _html, frame = await run_flow(pair.one, pair.provider, "oauth", "connection_id=c-4")
    assert frame["message_type"] == "success"
    before = await token(pair.two, "c-4")
    pair.link.delay = 0.3
    _status, forced = await read(pair.one, "c-4", force_refresh="true")
    after = forced["credentials"]["access_token"]
    assert after != before
    assert await token(pair.two, "c-4") == after


async def test_without_its_event_stream_the_cache_steps_aside(pair: Pair, db: Any) -> None:
    await put(pair.one, "c-5", "at-5")
    assert await token(pair.two, "c-5") == "at-5"
    cache = pair.cache(pair.two)
    channel = cache._channel
    assert channel is not None
    await channel.close()
    assert not cache.live
    assert len(cache) == 0
    # A change this replica cannot hear of: it reads the database, so it is not fooled.
    await db["connections"].update_one({"connection_id": "c-5"}, {"$set": {"metadata": {"seen": True}}})
    _status, body = await read(pair.two, "c-5")
    assert body["metadata"] == {"seen": True}


async def hits_again(pair: Pair, gw: Gateway, connection_id: str) -> None:
    """``gw``'s cache is live and serves ``connection_id`` from memory: its barrier makes the round trip."""

    async def live() -> bool:
        return pair.cache(gw).live

    await eventually(live, timeout=30, what="the cache to listen to its queue again")
    await token(gw, connection_id)  # a miss: filled
    waits_before = barrier_waits()
    await token(gw, connection_id)
    assert barrier_waits() - waits_before == 1  # a hit, whose marker came back through the new consumer


async def test_after_a_reconnection_the_cache_is_live_again_and_coherent(pair: Pair) -> None:
    await put(pair.one, "c-9", "at-9")
    assert await token(pair.two, "c-9") == "at-9"
    cache = pair.cache(pair.two)
    await pair.link.cut()  # replica two's broker connection drops; its queue goes with it

    async def off() -> bool:
        return not cache.live

    await eventually(off, timeout=10, what="the cache to step aside while the broker is away")
    assert len(cache) == 0
    await put(pair.one, "c-9", "at-9b")  # an event replica two cannot hear of
    await pair.link.start()
    await hits_again(pair, pair.two, "c-9")
    assert await token(pair.two, "c-9") == "at-9b"
    # Its events reach it again: a write acknowledged on the other replica is seen at once.
    pair.link.delay = 0.3
    await put(pair.one, "c-9", "at-9c")
    assert await token(pair.two, "c-9") == "at-9c"


async def test_a_queue_deleted_under_the_cache_is_declared_again(pair: Pair) -> None:
    await put(pair.one, "c-10", "at-10")
    assert await token(pair.two, "c-10") == "at-10"
    cache = pair.cache(pair.two)
    app = pair.two.client.app
    assert app is not None
    connection = app[BROKER].connection
    assert connection is not None
    # As an operator deleting it in the console would: the broker cancels the cache's consumer, and
    # events routed meanwhile are lost. (Exclusive: only its own connection may delete it.)
    channel = await connection.channel()
    await channel.queue_delete(cache._queue_name)
    await channel.close()

    async def off() -> bool:
        return not cache.live or len(cache) == 0

    await eventually(off, timeout=10, what="the cache to step aside once its consumer is cancelled")
    await hits_again(pair, pair.two, "c-10")
    pair.link.delay = 0.3
    await put(pair.one, "c-10", "at-10b")  # its event reaches the queue declared again, and is handled
    assert await token(pair.two, "c-10") == "at-10b"


async def test_a_read_does_not_wait_for_an_earlier_marker_to_come_back(pair: Pair) -> None:
    await put(pair.one, "c-11", "at-11")
    assert await token(pair.two, "c-11") == "at-11"
    pair.link.delay = 0.5  # every marker takes half a second to come back to replica two

    async def timed_read() -> float:
        began = time.monotonic()
        assert await token(pair.two, "c-11") == "at-11"
        return time.monotonic() - began

    first = asyncio.create_task(timed_read())
    await asyncio.sleep(0.3)  # the first read's marker is out
    second = await timed_read()
    assert await first >= 0.5
    # Its own marker, sent at once: one round trip. Waiting for the first's to come back before
    # sending its own would take 0.2 + 0.5 s.
    assert second < 0.62
