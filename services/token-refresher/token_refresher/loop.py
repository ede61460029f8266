"""The refresh loop: find due connections and refresh them, a bounded number at a time, on any replica.

Each round takes as many due candidates as it has free slots (soonest first, from the due index
through :class:`~.scan.DueScanner`) and hands each to :meth:`RefreshService.refresh_due`, which
claims it with a conditional update on ``_id`` (infra-notes: candidates first, then compare-and-set;
never a sorted ``find_one_and_update``, which collapses on the embedded server). The refreshes a
round starts claim together, in one ``update_many`` and one read (``RefreshStateStore.claim_due``),
and their credential writes share transactions the same way. A round reads
four times the candidates it starts and picks at random among them, so replicas reading the same
window mostly try different ids (a lost claim costs the database a write; a candidate read, a
fraction of one). Losing a claim is normal: the winner moved the due time forward, and the
id drops out of everyone's next window. A round starts only when at least a quarter of the slots
are free, so a busy replica queries the index once per several refreshes, not once per refresh.

When nothing is due the loop sleeps until the next due time (capped), or until woken: by a
``connection.*`` event due earlier than that, or by one of its own refreshes finishing while due
work was waiting for it. Ids it could not claim although due (a gateway read holds the lease) are
skipped for a moment instead of being asked for again at once.

Its times (now, the skips, its sleeps, the scanner's full scans) come from an injected clock
(``keyway_shared.clock``), which its tests step.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pymongo.errors import PyMongoError

from keyway_shared.backoff import Backoff, is_cancellation
from keyway_shared.clock import SYSTEM_CLOCK, Clock, wait_for_event
from keyway_shared.logging import get_logger
from keyway_shared.refresh.service import DueOutcome

from .scan import DueIndex, DueScanner

__all__ = ["IN_FLIGHT", "LAG", "REFRESHES", "DueIndex", "RefreshLoop", "idle_delay"]

log = get_logger(__name__)

REFRESHES = Counter("keyway_refresher_refreshes_total", "Background refresh attempts by outcome", ["outcome"])
LAG = Histogram(
    "keyway_refresher_lag_seconds",
    "How late a refresh was claimed: claim time minus refresh_due_at",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
IN_FLIGHT = Gauge("keyway_refresher_in_flight", "Refreshes running now in this replica")

Refresh = Callable[[Any], Awaitable[DueOutcome]]


def idle_delay(
    *,
    now: datetime,
    next_due: datetime | None,
    skipped_until: float | None,
    mono: float,
    max_sleep: float,
    blocked: bool,
    blocked_poll: float,
) -> float:
    """How long an idle loop may sleep before it must look at the due index again.

    ``blocked``: due work exists that this replica cannot start now (in flight here and not yet
    claimed, or skipped). The next due time then lies in the past and says nothing, so the loop
    polls gently (``blocked_poll``) until a skip runs out or a refresh of its own finishes (which
    wakes it at once).
    """
    delay = max_sleep
    if skipped_until is not None:
        delay = min(delay, max(skipped_until - mono, 0.0))
    if blocked:
        delay = min(delay, blocked_poll)
    elif next_due is not None:
        delay = min(delay, max((next_due - now).total_seconds(), 0.0))
    return delay


class RefreshLoop:
    def __init__(
        self,
        *,
        state: DueIndex,
        refresh: Refresh,
        concurrency: int,
        batch: int,
        max_sleep: float,
        skip_seconds: float = 0.5,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._state = state
        self._refresh = refresh
        self._batch = batch
        self._max_sleep = max_sleep
        self._skip_seconds = skip_seconds
        self._clock = clock
        self._concurrency = concurrency
        self._low_water = max(1, concurrency // 4)
        self._scanner = DueScanner(state, clock=clock)
        self._progress = asyncio.Event()  # set whenever a refresh finishes
        self._inflight: dict[Any, asyncio.Task[None]] = {}
        self._skipped: dict[Any, float] = {}  # id -> monotonic time until which it is not tried again
        self._wake = asyncio.Event()
        self._sleeping_until: datetime | None = None
        self._blocked = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  # rounds that looked at the due index (tests and the benchmark read it)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def queries(self) -> int:
        return self._scanner.queries

    def wake(self, due: datetime) -> None:
        """Something is due at ``due``: look again now if the loop sleeps past it."""
        self._scanner.rewind(due)
        if self._sleeping_until is None or due < self._sleeping_until:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="refresh-loop")

    async def stop(self, *, grace: float) -> None:
        """Stop claiming, let running refreshes finish (bounded), then cancel the rest.

        A cancelled refresh releases its lease on the way out; the due time its claim moved forward
        still keeps other replicas off it until the lease would have ended.
        """
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        running = list(self._inflight.values())
        if not running:
            return
        log.info("waiting for refreshes in flight", count=len(running))
        _done, pending = await asyncio.wait(running, timeout=grace)
        if pending:
            log.warning("cancelling refreshes still running after the grace period", count=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=5.0)

    async def _run(self) -> None:
        # Ends only when stopped: whatever a round raises is logged and the round tried again after
        # a capped, jittered backoff (a loop that died here would leave every token to expire).
        backoff = Backoff(first=1.0, cap=self._max_sleep)
        while not self._stopping:
            free = self._concurrency - len(self._inflight)
            if free < self._low_water:
                self._progress.clear()
                await self._progress.wait()  # busy: let a few refreshes finish before looking again
                continue
            self._wake.clear()  # before looking, so a wake-up during the look is not lost
            self._blocked = False
            try:
                started, blocked = await self._dispatch_once(min(free, self._batch))
                backoff.reset()
                if started:
                    continue  # more may be due already: look again at once
                self._blocked = blocked
                delay = await self._idle_delay(blocked=blocked)
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                delay = backoff.next()
                if isinstance(exc, PyMongoError):
                    log.warning(
                        "cannot read the due connections", error=exc.__class__.__name__, retry_in=round(delay, 2)
                    )
                else:
                    log.exception("refresh round failed", retry_in=round(delay, 2))
            await self._sleep(delay)

    async def _dispatch_once(self, want: int) -> tuple[int, bool]:
        """Start up to ``want`` refreshes of due candidates; (how many, whether any were held back)."""
        self.rounds += 1
        batch = await self._scanner.next_batch(now=self._clock.now(), limit=4 * want)
        mono = self._clock.monotonic()
        self._skipped = {doc_id: until for doc_id, until in self._skipped.items() if until > mono}
        fresh = [(doc_id, due) for doc_id, due in batch if doc_id not in self._inflight and doc_id not in self._skipped]
        for doc_id, due in random.sample(fresh, min(want, len(fresh))):
            if self._stopping:
                break
            self._start(doc_id, due)
        return min(want, len(fresh)), len(fresh) < len(batch)

    async def _idle_delay(self, *, blocked: bool) -> float:
        now = self._clock.now()
        horizon = timedelta(seconds=self._max_sleep)
        next_due = None if blocked else await self._state.next_due(now=now, horizon=horizon)
        return idle_delay(
            now=now,
            next_due=next_due,
            skipped_until=min(self._skipped.values(), default=None),
            mono=self._clock.monotonic(),
            max_sleep=self._max_sleep,
            blocked=blocked,
            blocked_poll=self._skip_seconds,
        )

    async def _sleep(self, delay: float) -> None:
        if delay <= 0:
            return
        self._sleeping_until = self._clock.now() + timedelta(seconds=delay)
        try:
            await wait_for_event(self._clock, self._wake, delay)
        finally:
            self._sleeping_until = None

    def _start(self, doc_id: Any, due: datetime) -> None:
        task = asyncio.create_task(self._refresh_one(doc_id, due))
        self._inflight[doc_id] = task
        IN_FLIGHT.inc()

        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(doc_id, None)
            IN_FLIGHT.dec()
            self._progress.set()
            if self._blocked:
                self._wake.set()  # due work was waiting for this one

        task.add_done_callback(done)

    async def _refresh_one(self, doc_id: Any, due: datetime) -> None:
        claimed_at = self._clock.now()
        outcome: str
        try:
            outcome = await self._refresh(doc_id)
        except PyMongoError as exc:
            log.warning("refresh interrupted by the database", error=exc.__class__.__name__)
            outcome = "error"
        except Exception:
            log.exception("refresh failed unexpectedly")
            outcome = "error"
        REFRESHES.labels(outcome=outcome).inc()
        if outcome in ("not_claimed", "error"):
            # Due but not ours now (a gateway read holds it) or the database hiccuped: try it again
            # shortly, not in the very next round.
            self._skipped[doc_id] = self._clock.monotonic() + self._skip_seconds
        else:
            LAG.observe(max((claimed_at - due).total_seconds(), 0.0))
