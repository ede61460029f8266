"""Keep-alive refreshes (issue 18): refresh tokens that a provider revokes when left unused.

The provider here revokes a refresh token unused for 90 days (as Microsoft does, AADSTS700082) and
its template says so (``refresh_token_idle_days: 90``). A connection nobody reads, whose access
token has no expiry, is refreshed by the token-refresher before that deadline (76 days after it
was obtained) and not again until the next one; a refresher started afresh finds the schedule in
MongoDB. The refresher runs on a stepped clock (so does the provider's idle rule): months pass
without waiting; the gateway, the database and the broker are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from keyway_shared.events import utcnow
from token_refresher.app import REFRESHER
from token_refresher.app import create_app as create_refresher_app

from ..support.clock import SteppedClock
from ..support.inproc import running
from ..support.polling import eventually
from .refresher_world import StartRefresherWorld, World

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

IDLE = timedelta(days=90)
KEEP_ALIVE = timedelta(days=76)  # 90 days less the 14-day margin (refresh/policy.py)
DAY = timedelta(days=1)
TICK = 30.0  # the refresher's longest idle sleep (refresh_max_sleep_seconds)


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(start=utcnow())


async def step_to(clock: SteppedClock, moment: datetime) -> None:
    await clock.step((moment - clock.now()).total_seconds())


async def time_passes(clock: SteppedClock, probe: Callable[[], Awaitable[bool]], what: str) -> None:
    """Let the refresher's time run on, one idle sleep per poll, until ``probe`` holds.

    A step is a jump: a refresher mid-round when it happens decides its next sleep from a time the
    jump has already passed, and then sleeps on, as it would for those seconds in real time.
    """

    async def ticking() -> bool:
        await clock.step(TICK)
        return await probe()

    await eventually(ticking, what=what)


async def scheduled(world: World, connection_id: str, due: datetime) -> dict[str, Any]:
    """The connection once its ``refresh_due_at`` is ``due`` (to the millisecond MongoDB keeps)."""

    async def probe() -> dict[str, Any] | None:
        doc = await world.doc(connection_id)
        stored = doc.get("refresh_due_at")
        return doc if stored is not None and abs(stored - due) < timedelta(milliseconds=1) else None

    return await eventually(probe, what=f"{connection_id} due at {due}")


async def refreshed(world: World, clock: SteppedClock, connection_id: str, count: int) -> None:
    async def probe() -> bool:
        return world.refreshes_of(connection_id) == count

    await time_passes(clock, probe, f"{connection_id} refreshed {count} times")


async def looked(world: World, clock: SteppedClock) -> None:
    """Until the refresh loop has been through two more rounds: one wholly at the current time."""
    loop = world.refresher[REFRESHER].loop
    rounds = loop.rounds + 2

    async def probe() -> bool:
        return loop.rounds >= rounds

    await time_passes(clock, probe, "the refresh loop to look again")


@pytest.fixture
async def world(start_refresher_world: StartRefresherWorld, clock: SteppedClock) -> AsyncIterator[World]:
    async with start_refresher_world(clock=clock, idle_days=90) as the_world:
        the_world.provider.expiring = False  # access tokens without expires_in, before and after refreshes
        yield the_world


async def test_a_connection_nobody_reads_is_refreshed_before_its_idle_deadline(
    world: World, clock: SteppedClock
) -> None:
    await world.import_connection("quiet", expires_in=None)
    doc = await world.doc("quiet")
    assert doc["credentials_expires_at"] is None
    obtained: datetime = doc["credentials_obtained_at"]
    await scheduled(world, "quiet", obtained + KEEP_ALIVE)  # by the connection.created event

    # A day before the keep-alive falls due: nothing is due, nothing refreshed.
    await step_to(clock, obtained + KEEP_ALIVE - DAY)
    await looked(world, clock)
    assert (await world.doc("quiet"))["refresh_due_at"] > clock.now()
    assert world.refreshes_of("quiet") == 0

    # Two days later (day 77 of 90) it has been refreshed once, and the next keep-alive counts from then.
    await clock.step(2 * DAY.total_seconds())
    await refreshed(world, clock, "quiet", 1)

    async def renewed() -> dict[str, Any] | None:
        current = await world.doc("quiet")
        return current if current["credentials_obtained_at"] > obtained else None

    doc = await eventually(renewed, what="the refresh's write")
    second: datetime = doc["credentials_obtained_at"]
    assert obtained + KEEP_ALIVE <= second + timedelta(milliseconds=1)
    assert second < obtained + IDLE  # the provider would have refused it from here on
    await scheduled(world, "quiet", second + KEEP_ALIVE)
    assert doc["credentials_expires_at"] is None
    assert doc["refresh_failed"] is False

    # Not again until the next keep-alive: none in the 75 days after it, the second one after 76.
    await step_to(clock, second + KEEP_ALIVE - DAY)
    await looked(world, clock)
    assert world.refreshes_of("quiet") == 1
    await clock.step(2 * DAY.total_seconds())
    await refreshed(world, clock, "quiet", 2)
    assert world.provider.reuse_detected == 0
    doc = await world.doc("quiet")
    assert doc["refresh_failed"] is False
    assert doc["refresh_attempt"] == 0


async def test_a_restarted_refresher_finds_the_keep_alive_in_mongodb(
    start_refresher_world: StartRefresherWorld, clock: SteppedClock
) -> None:
    # This world's refresher only keeps due times (no loop): it schedules, then months pass with no
    # refresher running, and a refresher started afterwards refreshes from the stored schedule.
    async with start_refresher_world(clock=clock, idle_days=90, refresh_loop=False) as world:
        world.provider.expiring = False
        await world.import_connection("restarted", expires_in=None)
        obtained: datetime = (await world.doc("restarted"))["credentials_obtained_at"]
        await scheduled(world, "restarted", obtained + KEEP_ALIVE)
        await step_to(clock, obtained + KEEP_ALIVE + DAY)
        assert world.refreshes_of("restarted") == 0
        settings = world.refresher_settings.model_copy(update={"refresh_loop": True})
        async with running(create_refresher_app(settings, clock=clock)):
            await refreshed(world, clock, "restarted", 1)
        doc = await world.doc("restarted")
        assert doc["credentials_obtained_at"] > obtained + KEEP_ALIVE
        assert doc["refresh_failed"] is False
