"""``kept_lease``: extensions every third of the lease while the block runs, none for a short block,
none after the lease is lost, and none landing after the block has ended."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from keyway_shared.refresh.lease import kept_lease

LEASE = timedelta(seconds=0.3)  # an extension every 0.1 s


class Extensions:
    def __init__(self, *, held: bool = True, takes: float = 0.0) -> None:
        self.held = held
        self.takes = takes
        self.started = 0
        self.finished = 0

    async def __call__(self) -> bool:
        self.started += 1
        await asyncio.sleep(self.takes)
        self.finished += 1
        return self.held


async def test_a_long_block_extends_every_third_of_the_lease() -> None:
    extend = Extensions()
    async with kept_lease(extend, LEASE):
        await asyncio.sleep(0.55)
    assert 4 <= extend.finished <= 5  # at 0.1, 0.2, 0.3, 0.4, 0.5 s, give or take the timers


async def test_a_block_shorter_than_a_third_writes_nothing() -> None:
    extend = Extensions()
    async with kept_lease(extend, LEASE):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert extend.started == 0


async def test_a_lost_lease_is_not_extended_again() -> None:
    extend = Extensions(held=False)
    async with kept_lease(extend, LEASE):
        await asyncio.sleep(0.45)
    assert extend.started == 1


async def test_the_block_ends_only_after_an_extension_in_flight_has_landed() -> None:
    extend = Extensions(takes=0.2)
    async with kept_lease(extend, LEASE):
        await asyncio.sleep(0.15)  # the first extension started at 0.1 s and lands at 0.3 s
    assert extend.started == 1
    assert extend.finished == 1  # so the caller's release cannot be overtaken by it
    await asyncio.sleep(0.2)
    assert extend.started == 1
