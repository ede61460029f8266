"""A backend that writes through the gateway as a careful client would during an outage: every write
carries an ``Idempotency-Key`` and is sent again, with the same key, until it gets an answer that is
not "later" (a 503, a 409 ``idempotency_key_in_use``, a timeout or a refused connection).

Every attempt is kept (gateway, when it was sent, how long its answer took, status, ``Retry-After``,
error code), so a test can say what each failure looked like and how each write ended.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["Attempt", "IdempotentWriter", "Write"]

_LATER_CODES = frozenset({"idempotency_key_in_use"})  # a 409 that means "the first attempt still holds the key"
_PAUSE_WITHOUT_RETRY_AFTER = 0.5
_LONGEST_PAUSE = 2.0  # a test cannot wait for a Retry-After of minutes


@dataclass(frozen=True)
class Attempt:
    gateway: str
    sent: float  # time.monotonic()
    elapsed: float  # until the answer, the timeout or the error
    status: int | None  # None: no answer (``failure`` says why)
    retry_after: str | None = None
    code: str | None = None  # the error envelope's ``error.code``
    failure: str | None = None  # the client-side exception's name

    @property
    def later(self) -> bool:
        """An answer (or none) that asks for the same request again."""
        return self.status is None or self.status == 503 or (self.status == 409 and self.code in _LATER_CODES)


@dataclass
class Write:
    kind: str  # create, update, delete (or anything the caller names)
    connection_id: str
    key: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> Attempt | None:
        """The answer the write ended with (None while it has none, or if the writer gave up)."""
        last = self.attempts[-1] if self.attempts else None
        return None if last is None or last.later else last

    def timeline(self) -> str:
        """Each attempt's answer, at seconds after the first was sent: for a failure message."""
        first = self.attempts[0].sent if self.attempts else 0.0
        steps = [
            f"+{a.sent - first:.1f}s {a.status or a.failure}{f' {a.code}' if a.code else ''} ({a.elapsed:.2f}s)"
            for a in self.attempts
        ]
        return f"{self.kind} {self.connection_id}: " + ", ".join(steps)

    @property
    def succeeded(self) -> bool:
        final = self.final
        return final is not None and final.status is not None and 200 <= final.status < 300


class IdempotentWriter:
    """Sends writes to ``gateways`` (in turn, the next one after a failure) with the secret key."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        gateways: Sequence[str],
        secret_key: str,
        *,
        attempt_timeout: float = 15.0,
        give_up_after: float = 120.0,
    ) -> None:
        self._http = http
        self.gateways = list(gateways)  # the test may drop one it killed
        self._auth = {"Authorization": f"Bearer {secret_key}"}
        self._attempt_timeout = attempt_timeout
        self._give_up_after = give_up_after
        self._turn = 0
        self.writes: list[Write] = []

    async def write(
        self, kind: str, method: str, path: str, *, connection_id: str, body: dict[str, Any] | None = None
    ) -> Write:
        write = Write(kind, connection_id, key=str(uuid.uuid4()))
        self.writes.append(write)
        started = time.monotonic()
        while True:
            attempt = await self._send(method, path, body, write.key)
            write.attempts.append(attempt)
            if not attempt.later or time.monotonic() - started > self._give_up_after:
                return write
            await asyncio.sleep(_pause(attempt))

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, key: str) -> Attempt:
        gateway = self.gateways[self._turn % len(self.gateways)]
        self._turn += 1
        headers = {**self._auth, "Idempotency-Key": key}
        sent = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self._attempt_timeout)
        try:
            async with self._http.request(
                method, f"{gateway}{path}", json=body, headers=headers, timeout=timeout
            ) as resp:
                raw = await resp.read()
                return Attempt(
                    gateway,
                    sent,
                    time.monotonic() - sent,
                    resp.status,
                    retry_after=resp.headers.get("Retry-After"),
                    code=_error_code(raw) if resp.status >= 400 else None,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Attempt(gateway, sent, time.monotonic() - sent, None, failure=type(exc).__name__)


def _error_code(raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) and error.get("code") is not None else None


def _pause(attempt: Attempt) -> float:
    if attempt.retry_after and attempt.retry_after.isdigit():
        return min(float(attempt.retry_after), _LONGEST_PAUSE)
    return _PAUSE_WITHOUT_RETRY_AFTER
