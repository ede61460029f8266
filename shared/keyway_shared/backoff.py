"""Waiting between tries of a background loop that must never give up: capped, jittered, resettable.

Every loop that talks to the broker or the database (the broker link, the outbox sweep, the
refresh loop…) catches whatever a try raised, except cancellation, logs it and sleeps
``Backoff.next()`` before the next try. The jitter spreads the replicas of a service that lost the
broker together, so they do not all knock at the same instant when it comes back.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "is_cancellation"]


@dataclass(kw_only=True)
class Backoff:
    """Exponential from ``first`` up to ``cap`` seconds, each wait drawn in [half, whole] ("equal
    jitter": never a hot loop, never a herd). ``reset()`` after a success starts over."""

    first: float = 0.2
    cap: float = 5.0
    factor: float = 2.0
    failures: int = field(default=0, init=False)

    def next(self) -> float:
        ceiling = min(self.cap, self.first * self.factor ** min(self.failures, 64))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def is_cancellation(exc: BaseException) -> bool:
    """The one exception a never-give-up loop lets through: it is how the loop is told to stop."""
    return isinstance(exc, asyncio.CancelledError)
