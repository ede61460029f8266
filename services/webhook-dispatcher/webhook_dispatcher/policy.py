"""When the next attempt of a failed delivery is due: the schedule, jitter, overload and ``Retry-After``.

As Svix does it: the wait after attempt *n* is the *n*-th entry of the schedule, ±20 % jitter; after
a 429 or a timeout it is at least the overload minimum (60 s); a ``Retry-After`` on a 429 or 503 is
honoured but clamped between that wait and twice it, so a receiver can slow us down, not stall a
delivery for a week.

Every wait is a delay queue (one TTL per queue), so waits are rounded to a coarse grid: jitter in
10 % steps, ``Retry-After`` up to the next quarter of the wait. A handful of queues per step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from keyway_shared.events import utcnow

__all__ = ["RetryPolicy", "parse_retry_after"]

_HONOURED_FOR = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or utcnow())).total_seconds())


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    schedule: tuple[float, ...]  # seconds after attempt 1, 2, …; already scaled
    jitter: float = 0.2
    overload_minimum: float = 60.0

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def delay(
        self,
        attempt: int,
        *,
        status: int | None = None,
        timed_out: bool = False,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """The wait before attempt ``attempt + 1``, given how attempt ``attempt`` failed."""
        scheduled = self.schedule[min(attempt, len(self.schedule)) - 1]
        floor = max(scheduled, self.overload_minimum) if (status == 429 or timed_out) else scheduled
        if retry_after is not None and status in _HONOURED_FOR:
            wanted = min(max(retry_after, floor), 2 * floor)
            quarters = -(-(wanted - floor) * 4 // floor)  # ceil: never sooner than asked, within the bound
            return floor * (1 + min(quarters, 4) / 4)
        steps = int(self.jitter * 10)
        if steps == 0:
            return floor
        return floor * (1 + (rng or random).randint(-steps, steps) / 10)
