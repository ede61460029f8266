"""Database calls made off a request are bounded by the driver's own deadline (CSOT), never by
cancelling them.

On Python 3.11, PyMongo's async server selection waits on its topology condition through
``asyncio.wait_for``; a cancellation that lands while that wait is timing out leaves the topology
lock released by the wrong task. Every later operation of that client then fails with
``RuntimeError: Lock is not acquired`` (a 500) or waits forever (a replica whose ``/readyz`` never
comes back after the database does). Seen in the fault runs, from the idempotency bookkeeping's
``asyncio.timeout`` around its release. These tests hold the two places that bound a database call
off a request to the driver's deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import _csot
from pymongo.errors import NetworkTimeout

from auth_gateway.http.idempotency import claims
from auth_gateway.http.idempotency.claims import ActiveClaim, Outcomes
from keyway_shared.service.health import mongo_check


class SlowStore:
    """A ``RequestOutcomeStore`` whose release takes ``delay`` seconds, fails ``failures`` times
    (as the driver does when its deadline passes), then finds the claim."""

    def __init__(self, *, delay: float, failures: int) -> None:
        self.delay = delay
        self.failures = failures
        self.deadlines: list[float | None] = []  # what the driver would see as time left, per call
        self.cancelled = 0

    async def release(self, environment: str, key: str, holder: str) -> bool:
        self.deadlines.append(_csot.remaining())
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.failures > 0:
            self.failures -= 1
            raise NetworkTimeout("timed out")
        return True


def _claim(store: SlowStore) -> ActiveClaim:
    return ActiveClaim(
        store=store,  # type: ignore[arg-type]
        environment="dev",
        key="k",
        holder="h",
        method="POST",
        connection_id=None,
        removal=None,
    )


async def test_a_release_try_is_bounded_by_the_drivers_deadline_not_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(claims, "_RELEASE_TRY_SECONDS", 0.05)
    # Each try outlasts its budget: cancelling it would have been the old way of ending it.
    store = SlowStore(delay=0.1, failures=2)
    task = Outcomes().release_soon(_claim(store))
    await asyncio.wait_for(task, timeout=10)

    assert store.cancelled == 0
    assert len(store.deadlines) == 3  # two failed tries, then the one that found the claim
    assert all(left is not None and 0 < left <= 0.05 for left in store.deadlines), store.deadlines


async def test_the_bookkeeping_task_carries_no_request_deadline_but_its_own() -> None:
    store = SlowStore(delay=0.0, failures=0)
    await asyncio.wait_for(Outcomes().release_soon(_claim(store)), timeout=10)
    (left,) = store.deadlines
    assert left is not None
    assert left <= claims._RELEASE_TRY_SECONDS


class SlowDatabase:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.deadline: float | None = None
        self.cancelled = False

    async def command(self, name: str) -> dict[str, Any]:
        self.deadline = _csot.remaining()
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise NetworkTimeout(f"{name} timed out")


async def test_the_readiness_ping_is_ended_by_the_driver_not_cancelled() -> None:
    # Longer than the check's timeout plus the one-second backstop it used to cancel the ping with.
    db = SlowDatabase(delay=1.3)
    assert await mongo_check(db, timeout=0.1)() is False  # type: ignore[arg-type]
    assert db.cancelled is False
    assert db.deadline is not None
    assert 0 < db.deadline <= 0.1
