"""A circuit breaker per webhook URL, in this replica's memory.

``failures`` failures of a URL within ``window`` seconds open its breaker: for ``cooldown`` seconds
attempts to it are not made but failed at once (and so go back on the retry schedule), then one
probe goes through; its success closes the breaker, its failure opens it again. Any success resets.

Why in memory and not in MongoDB: the breaker only spares a receiver that is down (and our workers,
which would otherwise wait out a timeout per attempt); it decides nothing about whether a webhook is
eventually sent, so losing it on restart costs a few probes, and replicas that each learn a URL is
down on their own send at most ``failures`` requests each per cooldown. Shared state would put a
database read on every attempt and a write on every failure, on the hottest path we have.
What must survive and be shared, an endpoint being disabled, lives in MongoDB (``webhook_endpoints``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CircuitBreaker"]


@dataclass
class _Circuit:
    failures: deque[float] = field(default_factory=deque)
    open_until: float = 0.0  # 0: closed
    probing: bool = False


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int = 5,
        window: float = 10.0,
        cooldown: float = 60.0,
        max_urls: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._window = window
        self._cooldown = cooldown
        self._max_urls = max_urls
        self._clock = clock
        self._circuits: OrderedDict[str, _Circuit] = OrderedDict()

    def allow(self, url: str) -> bool:
        """May an attempt to ``url`` be made now? (An open breaker past its cooldown lets one probe by.)"""
        circuit = self._circuits.get(url)
        if circuit is None or circuit.open_until == 0.0:
            return True
        if circuit.probing or self._clock() < circuit.open_until:
            return False
        circuit.probing = True
        return True

    def is_open(self, url: str) -> bool:
        circuit = self._circuits.get(url)
        return circuit is not None and circuit.open_until != 0.0

    def succeeded(self, url: str) -> None:
        self._circuits.pop(url, None)

    def failed(self, url: str) -> None:
        now = self._clock()
        circuit = self._circuits.get(url)
        if circuit is None:
            circuit = self._circuits[url] = _Circuit()
            if len(self._circuits) > self._max_urls:
                self._circuits.popitem(last=False)  # the least recently failing URL is forgotten
        else:
            self._circuits.move_to_end(url)
        if circuit.open_until != 0.0:
            if circuit.probing:  # the probe failed: another cooldown
                circuit.probing = False
                circuit.open_until = now + self._cooldown
            return
        circuit.failures.append(now)
        while circuit.failures and circuit.failures[0] <= now - self._window:
            circuit.failures.popleft()
        if len(circuit.failures) >= self._threshold:
            circuit.failures.clear()
            circuit.open_until = now + self._cooldown

    def released(self, url: str) -> None:
        """The probe let through ended without a verdict (e.g. refused before sending): allow another."""
        circuit = self._circuits.get(url)
        if circuit is not None:
            circuit.probing = False
