"""The shared TTL cache: expiry by its clock, single flight, the generation check, refresh ahead, and
its one eviction rule. Time is a stepped clock: nothing here sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keyway_shared.ttl_cache import TtlCache

from ..support.clock import SteppedClock, settle


class Source:
    """A database stand-in: counts loads, answers with the current version once ``gate`` is open."""

    def __init__(self) -> None:
        self.loads = 0
        self.version = 1
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def loader(self, key: str) -> Any:
        async def load() -> str | None:
            self.loads += 1
            version = self.version
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            return None if key == "missing" else f"{key}@v{version}"

        return load


def cache_over(clock: SteppedClock, **options: Any) -> TtlCache[str, str | None]:
    settings: dict[str, Any] = {"ttl": 60.0, "max_entries": 100, "clock": clock} | options
    return TtlCache(**settings)


# -- expiry --------------------------------------------------------------------------------------


async def test_an_entry_answers_until_its_ttl_then_is_loaded_again() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    assert await cache.get("a", source.loader("a")) == "a@v1"
    source.version = 2
    await clock.step(59.9)
    assert await cache.get("a", source.loader("a")) == "a@v1"
    assert source.loads == 1
    await clock.step(0.1)  # exactly its ttl: no longer served
    assert "a" not in cache
    assert await cache.get("a", source.loader("a")) == "a@v2"
    assert source.loads == 2


async def test_a_disabled_cache_loads_every_time() -> None:
    clock, source = SteppedClock(), Source()
    for cache in (cache_over(clock, ttl=0), cache_over(clock, max_entries=0)):
        source.loads = 0
        assert await cache.get("a", source.loader("a")) == "a@v1"
        assert await cache.get("a", source.loader("a")) == "a@v1"
        assert source.loads == 2
        assert len(cache) == 0


async def test_keep_decides_what_is_remembered() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock, keep=lambda value: value is not None)
    assert await cache.get("missing", source.loader("missing")) is None
    assert await cache.get("missing", source.loader("missing")) is None
    assert source.loads == 2  # "not found" is asked again: the row may exist by now
    await cache.get("a", source.loader("a"))
    await cache.get("a", source.loader("a"))
    assert source.loads == 3


# -- single flight -------------------------------------------------------------------------------


async def test_concurrent_misses_for_one_key_share_one_load() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    source.gate.clear()
    reads = [asyncio.create_task(cache.get("a", source.loader("a"))) for _ in range(50)]
    other = asyncio.create_task(cache.get("b", source.loader("b")))
    await settle()
    source.gate.set()
    assert set(await asyncio.gather(*reads)) == {"a@v1"}
    assert await other == "b@v1"
    assert source.loads == 2  # one per key


async def test_a_reader_that_gives_up_does_not_cancel_the_shared_load() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    source.gate.clear()
    first = asyncio.create_task(cache.get("a", source.loader("a")))
    await settle()
    second = asyncio.create_task(cache.get("a", source.loader("a")))
    await settle()
    first.cancel()
    await settle()
    source.gate.set()
    assert await second == "a@v1"
    assert first.cancelled()
    assert source.loads == 1
    assert "a" in cache  # stored although its first reader left


async def test_a_failed_load_reaches_every_reader_and_is_not_stored() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    source.gate.clear()
    source.fail = RuntimeError("database away")
    reads = [asyncio.create_task(cache.get("a", source.loader("a"))) for _ in range(3)]
    await settle()
    source.gate.set()
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    assert source.loads == 1
    source.fail = None
    assert await cache.get("a", source.loader("a")) == "a@v1"
    assert source.loads == 2


async def test_without_shared_loads_each_miss_reads_for_itself() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock, share_loads=False)
    source.gate.clear()
    reads = [asyncio.create_task(cache.get("a", source.loader("a"))) for _ in range(3)]
    await settle()
    source.gate.set()
    await asyncio.gather(*reads)
    assert source.loads == 3
    assert "a" in cache


# -- generation check ----------------------------------------------------------------------------


@pytest.mark.parametrize("invalidation", ["drop", "drop_where", "clear", "put"])
async def test_a_load_overtaken_by_an_invalidation_does_not_store_what_it_read(invalidation: str) -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    source.gate.clear()
    read = asyncio.create_task(cache.get("a", source.loader("a")))
    await settle()  # the load read version 1 and waits on the gate
    source.version = 2
    if invalidation == "drop":
        cache.drop("a")
    elif invalidation == "drop_where":
        cache.drop_where(lambda key, _value: key == "zzz")  # matches nothing stored: still overtakes it
    elif invalidation == "clear":
        cache.clear()
    else:
        cache.put("a", "a@put")
    source.gate.set()
    assert await read == "a@v1"  # its own reader gets what was read
    expected = "a@put" if invalidation == "put" else "a@v2"
    assert await cache.get("a", source.loader("a")) == expected
    assert source.loads == (1 if invalidation == "put" else 2)


async def test_a_read_after_an_invalidation_does_not_join_the_load_it_overtook() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    source.gate.clear()
    before = asyncio.create_task(cache.get("a", source.loader("a")))
    await settle()
    source.version = 2
    cache.drop("a")
    after = asyncio.create_task(cache.get("a", source.loader("a")))
    await settle()
    source.gate.set()
    assert await before == "a@v1"
    assert await after == "a@v2"  # its own load, started after the change
    assert source.loads == 2
    assert await cache.get("a", source.loader("a")) == "a@v2"
    assert source.loads == 2  # and that one was stored


async def test_drop_only_overtakes_its_own_key() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    source.gate.clear()
    read = asyncio.create_task(cache.get("a", source.loader("a")))
    await settle()
    cache.drop("b")
    source.gate.set()
    await read
    assert "a" in cache


async def test_drop_where_forgets_the_entries_it_matches() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    for key in ("dev/1", "dev/2", "prod/1"):
        await cache.get(key, source.loader(key))
    cache.drop_where(lambda key, value: key.startswith("dev/") and value is not None)
    assert "dev/1" not in cache
    assert "dev/2" not in cache
    assert "prod/1" in cache


# -- refresh ahead -------------------------------------------------------------------------------


async def test_a_hit_late_in_an_entrys_life_reloads_it_in_the_background() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock, refresh_ahead=0.75)
    assert await cache.get("a", source.loader("a")) == "a@v1"
    source.version = 2
    await clock.step(44)  # before three quarters of its life: a plain hit
    assert await cache.get("a", source.loader("a")) == "a@v1"
    await settle()
    assert source.loads == 1
    await clock.step(1)  # 45 s: three quarters
    source.gate.clear()
    hits = [await cache.get("a", source.loader("a")) for _ in range(5)]
    assert hits == ["a@v1"] * 5  # answered at once from memory...
    await settle()
    assert source.loads == 2  # ...while one reload runs, however many hits asked for it
    source.gate.set()
    await settle()
    await clock.step(20)  # 65 s: past the first entry's expiry; the reload stored at 45 s answers
    assert await cache.get("a", source.loader("a")) == "a@v2"
    assert source.loads == 2


async def test_without_refresh_ahead_an_entry_in_steady_use_simply_expires() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock)
    await cache.get("a", source.loader("a"))
    await clock.step(59)
    await cache.get("a", source.loader("a"))
    await settle()
    assert source.loads == 1
    await clock.step(1)
    assert "a" not in cache


async def test_a_failed_reload_leaves_the_entry_to_expire() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock, refresh_ahead=0.75)
    await cache.get("a", source.loader("a"))
    await clock.step(50)
    source.fail = RuntimeError("database away")
    assert await cache.get("a", source.loader("a")) == "a@v1"
    await settle()
    assert source.loads == 2
    assert await cache.get("a", source.loader("a")) == "a@v1"  # still served; another reload tried
    await settle()
    assert source.loads == 3
    await clock.step(10)
    assert "a" not in cache


async def test_a_miss_joins_a_reload_in_flight() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock, refresh_ahead=0.75)
    await cache.get("a", source.loader("a"))
    await clock.step(50)
    source.version = 2
    source.gate.clear()
    await cache.get("a", source.loader("a"))  # starts the reload, which waits on the gate
    await clock.step(10)  # the entry expires before the reload lands
    miss = asyncio.create_task(cache.get("a", source.loader("a")))
    await settle()
    source.gate.set()
    assert await miss == "a@v2"
    assert source.loads == 2


# -- eviction ------------------------------------------------------------------------------------


async def test_beyond_max_entries_the_least_recently_used_goes() -> None:
    clock, source = SteppedClock(), Source()
    cache = cache_over(clock, max_entries=2)
    await cache.get("a", source.loader("a"))
    await cache.get("b", source.loader("b"))
    await cache.get("a", source.loader("a"))  # a used again: b is now the least recently used
    await cache.get("c", source.loader("c"))
    assert len(cache) == 2
    assert "a" in cache
    assert "b" not in cache
    assert "c" in cache
    cache.put("d", "d@put")
    assert "a" not in cache
    assert len(cache) == 2


def test_refresh_ahead_must_be_a_share_of_the_life() -> None:
    with pytest.raises(ValueError, match="refresh_ahead"):
        TtlCache[str, str](ttl=1, max_entries=1, refresh_ahead=1.5)
