"""The refresh loop's scheduling, against an in-memory due index: how long it sleeps, bounded
concurrency, skipping ids it could not claim, being woken, and draining on stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from keyway_shared.refresh.service import DueOutcome
from token_refresher.loop import RefreshLoop, idle_delay

from ..support.clock import SteppedClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_idle_sleeps_until_the_next_due_time() -> None:
    delay = idle_delay(
        now=NOW, next_due=NOW + timedelta(seconds=7), skipped_until=None, mono=0, max_sleep=30, blocked=False,
        blocked_poll=0.5,
    )  # fmt: skip
    assert delay == 7


def test_idle_sleep_is_capped_and_never_negative() -> None:
    kwargs: dict[str, Any] = {"now": NOW, "skipped_until": None, "mono": 0, "max_sleep": 30, "blocked_poll": 0.5}
    assert idle_delay(next_due=None, blocked=False, **kwargs) == 30
    assert idle_delay(next_due=NOW + timedelta(hours=1), blocked=False, **kwargs) == 30
    assert idle_delay(next_due=NOW - timedelta(seconds=3), blocked=False, **kwargs) == 0


def test_blocked_work_is_polled_gently_and_skips_run_out() -> None:
    # Due work exists but cannot be started: the past due time must not make the loop spin.
    delay = idle_delay(
        now=NOW, next_due=NOW - timedelta(seconds=1), skipped_until=None, mono=10, max_sleep=30, blocked=True,
        blocked_poll=0.5,
    )  # fmt: skip
    assert delay == 0.5
    delay = idle_delay(
        now=NOW, next_due=NOW + timedelta(seconds=9), skipped_until=10.2, mono=10, max_sleep=30, blocked=False,
        blocked_poll=0.5,
    )  # fmt: skip
    assert abs(delay - 0.2) < 1e-9


class FakeIndex:
    """Connections with due times; a claim (through ``refresh``) moves the due time forward."""

    def __init__(self) -> None:
        self.due: dict[Any, datetime] = {}
        self.batches = 0
        self.next_due_calls = 0

    async def due_batch(
        self, *, now: datetime, limit: int, since: datetime | None = None
    ) -> list[tuple[Any, datetime]]:
        self.batches += 1
        ready = sorted((d, i) for i, d in self.due.items() if d <= now and (since is None or d >= since))
        return [(i, d) for d, i in ready[:limit]]

    async def next_due(self, *, now: datetime, horizon: timedelta) -> datetime | None:
        self.next_due_calls += 1
        later = [d for d in self.due.values() if d <= now + horizon]
        return min(later, default=None)


def utc() -> datetime:
    return datetime.now(UTC)


async def test_runs_at_most_concurrency_refreshes_and_each_due_id_once() -> None:
    index = FakeIndex()
    for i in range(20):
        index.due[i] = utc() - timedelta(seconds=1)
    running = peak = 0
    seen: list[Any] = []

    async def refresh(doc_id: Any) -> DueOutcome:
        nonlocal running, peak
        index.due[doc_id] = utc() + timedelta(hours=1)  # the claim moves it out of the due range
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        seen.append(doc_id)
        return "refreshed"

    loop = RefreshLoop(state=index, refresh=refresh, concurrency=4, batch=8, max_sleep=5)
    loop.start()
    for _ in range(200):
        if len(seen) == 20:
            break
        await asyncio.sleep(0.01)
    await loop.stop(grace=1)
    assert sorted(seen) == list(range(20))
    assert peak == 4


async def test_an_id_it_could_not_claim_is_skipped_for_a_while_not_asked_for_in_a_tight_loop() -> None:
    clock = SteppedClock()
    index = FakeIndex()
    index.due["held"] = clock.now() - timedelta(seconds=1)  # a gateway read holds its lease: never claimable
    attempts: list[float] = []

    async def refresh(doc_id: Any) -> DueOutcome:
        attempts.append(round(clock.monotonic() - 1000.0, 3))
        return "not_claimed"

    loop = RefreshLoop(state=index, refresh=refresh, concurrency=4, batch=8, max_sleep=5, skip_seconds=0.2, clock=clock)
    loop.start()
    await clock.step(0.5)
    await loop.stop(grace=1)
    assert attempts == [0, 0.2, 0.4]  # once per skip period, not once per round
    assert index.batches <= 4 * len(attempts)  # a few looks per attempt, not a tight loop


async def test_sleeps_until_woken_by_an_earlier_due_time() -> None:
    clock = SteppedClock()
    index = FakeIndex()
    done = asyncio.Event()

    async def refresh(doc_id: Any) -> DueOutcome:
        index.due.pop(doc_id)
        done.set()
        return "refreshed"

    loop = RefreshLoop(state=index, refresh=refresh, concurrency=4, batch=8, max_sleep=30, clock=clock)
    loop.start()
    await clock.step(0)
    looks = index.batches
    assert looks == 1
    await clock.step(29.9)
    assert index.batches == looks  # nothing due: asleep, not polling
    index.due["new"] = clock.now()
    loop.wake(index.due["new"] + timedelta(seconds=60))  # later than the sleep ends: no need to wake
    await clock.step(0)
    assert index.batches == looks
    loop.wake(index.due["new"])
    await clock.step(0)
    assert done.is_set()
    looks = index.batches
    await clock.step(29.9)  # nothing due again: the capped sleep, one look per max_sleep
    assert index.batches == looks
    await clock.step(0.1)
    assert index.batches == looks + 1
    await loop.stop(grace=1)


async def test_stop_waits_for_refreshes_in_flight_then_cancels_stragglers() -> None:
    index = FakeIndex()
    index.due["quick"] = index.due["stuck"] = utc() - timedelta(seconds=1)
    finished: list[Any] = []
    cancelled: list[Any] = []
    both_started = asyncio.Event()

    async def refresh(doc_id: Any) -> DueOutcome:
        index.due[doc_id] = utc() + timedelta(hours=1)
        if all(d > utc() for d in index.due.values()):
            both_started.set()
        try:
            await asyncio.sleep(0.1 if doc_id == "quick" else 60)
        except asyncio.CancelledError:
            cancelled.append(doc_id)  # where RefreshService releases its lease
            raise
        finished.append(doc_id)
        return "refreshed"

    loop = RefreshLoop(state=index, refresh=refresh, concurrency=4, batch=8, max_sleep=5)
    loop.start()
    await asyncio.wait_for(both_started.wait(), timeout=2)
    await loop.stop(grace=0.5)
    assert finished == ["quick"]
    assert cancelled == ["stuck"]
    assert loop.in_flight == 0


class CountingIndex(FakeIndex):
    """Counts the documents each query's range holds: what the embedded server reads per query."""

    def __init__(self) -> None:
        super().__init__()
        self.examined: list[int] = []

    async def due_batch(
        self, *, now: datetime, limit: int, since: datetime | None = None
    ) -> list[tuple[Any, datetime]]:
        self.examined.append(sum(1 for d in self.due.values() if d <= now and (since is None or d >= since)))
        return await super().due_batch(now=now, limit=limit, since=since)


async def test_the_scanner_walks_a_backlog_soonest_first_reading_windows_not_the_whole_range() -> None:
    from token_refresher.scan import DueScanner

    index = CountingIndex()
    now = utc()
    for i in range(2000):  # a backlog: 2,000 connections due over the last 100 s
        index.due[i] = now - timedelta(seconds=100) + timedelta(milliseconds=50 * i)
    scanner = DueScanner(index, full_scan_every=3600)
    taken: list[Any] = []
    while len(taken) < 2000:
        batch = await scanner.next_batch(now=now, limit=40)
        assert batch
        for doc_id, _due in batch[:20]:  # claimed: out of the due range
            index.due[doc_id] = now + timedelta(hours=1)
            taken.append(doc_id)
    assert taken[:20] == list(range(20))  # soonest first
    assert sorted(taken) == list(range(2000))
    assert index.examined[0] == 2000  # the first look is a full one
    # Afterwards, windows: a few times the batch, never the backlog.
    assert sum(index.examined[1:]) / len(index.examined[1:]) < 200


async def test_the_scanner_rewinds_for_work_due_behind_its_floor() -> None:
    from token_refresher.scan import DueScanner

    index = FakeIndex()
    now = utc()
    index.due["a"] = now
    scanner = DueScanner(index, full_scan_every=3600)
    assert [i for i, _ in await scanner.next_batch(now=now, limit=10)] == ["a"]
    index.due["a"] = now + timedelta(hours=1)
    index.due["old"] = now - timedelta(minutes=5)  # written with a due time in the past
    scanner.rewind(index.due["old"])
    assert [i for i, _ in await scanner.next_batch(now=now, limit=10)] == ["old"]
