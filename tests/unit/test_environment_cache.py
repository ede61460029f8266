"""The gateway's environment cache: one load per key however many reads wait, entries in steady use
reloaded before they expire, a load that straddles a change never stores what it read, and a change
announced or heard on the broadcast forgets the environment. Time is a stepped clock."""

from __future__ import annotations

import asyncio
from typing import Any

from auth_gateway.env_cache import EnvironmentCache
from keyway_shared.bus.environment_changes import EnvironmentChanged, EnvironmentChanges
from keyway_shared.store import Environment

from ..support.clock import SteppedClock, settle

SECRET = "5b4c9a8e-1f2d-4c3b-9a7e-6d5f4e3c2b1a"


class SlowStore:
    """Answers ``by_secret_key`` after ``gate`` opens, with the current version of the environment."""

    def __init__(self) -> None:
        self.loads = 0
        self.version = 1
        self.gate = asyncio.Event()
        self.gate.set()

    async def by_secret_key(self, key: str) -> Environment | None:
        self.loads += 1
        version = self.version
        await self.gate.wait()
        return Environment(name="dev", public_key="pk", secret_key=key, callback_url=f"https://v{version}.example")


def cache_over(
    store: SlowStore, ttl: float, *, clock: SteppedClock | None = None, changes: EnvironmentChanges | None = None
) -> EnvironmentCache:
    fake: Any = store
    return EnvironmentCache(fake, ttl_seconds=ttl, clock=clock or SteppedClock(), changes=changes)


async def test_reads_of_a_missing_key_share_one_load() -> None:
    store = SlowStore()
    store.gate.clear()
    cache = cache_over(store, ttl=60)
    reads = [asyncio.create_task(cache.by_secret_key(SECRET)) for _ in range(50)]
    await settle()
    store.gate.set()
    envs = await asyncio.gather(*reads)
    assert store.loads == 1
    assert {env.callback_url for env in envs if env is not None} == {"https://v1.example"}


async def test_a_key_in_steady_use_is_reloaded_in_the_background_before_it_expires() -> None:
    store, clock = SlowStore(), SteppedClock()
    cache = cache_over(store, ttl=40, clock=clock)
    assert (await cache.by_secret_key(SECRET)) is not None
    store.version = 2
    await clock.step(29.9)  # not yet in the last quarter of its life
    env = await cache.by_secret_key(SECRET)
    assert env is not None
    await settle()
    assert store.loads == 1
    await clock.step(0.1)  # in the last quarter
    env = await cache.by_secret_key(SECRET)
    assert env is not None
    assert env.callback_url == "https://v1.example"  # answered at once from memory...
    await settle()
    assert store.loads == 2  # ...while a reload ran
    await clock.step(15)  # past the first entry's expiry: the reloaded one answers
    env = await cache.by_secret_key(SECRET)
    assert env is not None
    assert env.callback_url == "https://v2.example"
    assert store.loads == 2


async def test_a_load_that_straddles_a_change_does_not_store_what_it_read() -> None:
    store = SlowStore()
    store.gate.clear()
    cache = cache_over(store, ttl=60)
    read = asyncio.create_task(cache.by_secret_key(SECRET))
    await settle()  # the load read version 1 and is waiting on the gate
    store.version = 2
    cache.drop("dev")  # the change is announced while the load is out
    store.gate.set()
    first = await read
    assert first is not None
    second = await cache.by_secret_key(SECRET)
    assert second is not None
    assert second.callback_url == "https://v2.example"
    assert store.loads == 2


async def test_an_unknown_key_is_not_remembered() -> None:
    class Empty(SlowStore):
        async def by_secret_key(self, key: str) -> Environment | None:
            self.loads += 1
            return None

    store = Empty()
    cache = cache_over(store, ttl=60)
    assert await cache.by_secret_key(SECRET) is None
    assert await cache.by_secret_key(SECRET) is None
    assert store.loads == 2  # a key created a moment ago works at once


async def test_a_change_announced_here_or_heard_on_the_broadcast_forgets_the_environment() -> None:
    store = SlowStore()
    changes = EnvironmentChanges("unused")  # no broker attached: announcing only tells this process
    cache = cache_over(store, ttl=60, changes=changes)
    await cache.by_secret_key(SECRET)
    await cache.changed("dev")
    await cache.by_secret_key(SECRET)
    assert store.loads == 2
    changes.heard(EnvironmentChanged(environment="other"))
    await cache.by_secret_key(SECRET)
    assert store.loads == 2
    changes.heard(EnvironmentChanged(environment="dev"))
    await cache.by_secret_key(SECRET)
    assert store.loads == 3
