"""One attempt of one delivery: claim it, check the endpoint, sign, POST, record, announce, decide.

The claim (an insert keyed by delivery, run and attempt number, before the POST) is what keeps a
webhook from going out twice when the bus hands the same work over twice. When the claim exists:

    no record yet, and our message is a redelivery (its consumer died) or the lease ran out → take over
    no record yet otherwise             → someone is making this attempt right now: skip
    failed with attempts left, and ours is a redelivery → make sure the next attempt is scheduled
    anything else                       → this attempt was made: skip

A failure while writing the outcome is logged and the outcome still acted on: the POST happened,
and the retry it calls for matters more than the record of it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from prometheus_client import Counter, Histogram
from pymongo.errors import PyMongoError

from keyway_shared.events import ErrorInfo
from keyway_shared.logging import get_logger, redact, redact_url
from keyway_shared.store.client import db_now
from keyway_shared.store.webhook_deliveries import Claim, DeliveryLog, attempt_key

from .announce import Announcer
from .breaker import CircuitBreaker
from .caches import EndpointCache, Snapshot, SnapshotCache
from .messages import WebhookDelivery
from .policy import RetryPolicy, parse_retry_after
from .sender import Attempt, WebhookSender, signed_headers

__all__ = ["Attempter", "Outcome"]

log = get_logger(__name__)
ATTEMPTS = Counter("keyway_webhook_attempts_total", "Webhook delivery attempts by result", ["result"])
DURATION = Histogram(
    "keyway_webhook_attempt_seconds",
    "How long a receiver took to answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)

# Bound once: labelling a counter on every attempt costs more than the increment.
_SKIPPED, _DROPPED, _DELIVERED = (ATTEMPTS.labels(result=r) for r in ("skipped", "dropped", "delivered"))
_FAILED, _RETRY = ATTEMPTS.labels(result="failed"), ATTEMPTS.labels(result="retry")

# Failures no retry can mend: the target is refused, or not a URL at all.
_PERMANENT_ERRORS = frozenset({"EgressRefused", "InvalidURL", "InvalidUrlClientError", "NonHttpUrlClientError"})


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """``delivered``; ``retry`` after ``delay`` s; ``failed`` for good (dead-letter it); ``dropped``
    (given up without dead-lettering: the endpoint is gone from the settings or disabled);
    ``skipped`` (someone else has or had this attempt)."""

    kind: Literal["delivered", "retry", "failed", "dropped", "skipped"]
    reason: str
    delay: float | None = None


@dataclass(frozen=True, kw_only=True)
class _Attempt:
    claim: Claim
    delivery: WebhookDelivery
    environment: str
    number: int


@dataclass(frozen=True, kw_only=True)
class Limits:
    lease: timedelta  # how long a claimed attempt is presumed alive: the timeout and a margin
    disable_after: timedelta  # exhausted deliveries this long → the endpoint is disabled
    forget_after: timedelta  # a first exhausted delivery older than this starts the clock afresh


class Attempter:
    def __init__(
        self,
        *,
        environments: SnapshotCache,
        endpoints: EndpointCache,
        log: DeliveryLog,
        sender: WebhookSender,
        breaker: CircuitBreaker,
        policy: RetryPolicy,
        announcer: Announcer,
        limits: Limits,
    ) -> None:
        self._environments = environments
        self._endpoints = endpoints
        self._log = log
        self._sender = sender
        self._breaker = breaker
        self._policy = policy
        self._announcer = announcer
        self._limits = limits

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    async def attempt(
        self,
        delivery: WebhookDelivery,
        *,
        environment: str,
        number: int,
        resumed: bool,
        snapshot: Snapshot | None = None,
    ) -> Outcome:
        """Make attempt ``number`` of ``delivery``. Raises PyMongoError only before anything was sent.

        ``snapshot``: the environment as the caller just read it from the cache (a first attempt, made
        in the same turn as the event was read); read here when not given."""
        if snapshot is None:
            snapshot = await self._environments.get(environment)
        settings = snapshot.environment.webhooks if snapshot is not None else None
        target = None
        if settings is not None:
            target = (
                delivery.url  # the connection's own URL, not one of the environment's
                if delivery.slot == "override"
                else settings.primary_url
                if delivery.slot == "primary"
                else settings.secondary_url
            )
        if target and target != delivery.url:
            # The endpoint's URL changed since the delivery was made (a typo fixed): follow it.
            delivery = delivery.model_copy(update={"url": target})
        claim = await self._log.claim(attempt_key(delivery.delivery_id, delivery.run, number), lease=self._limits.lease)
        if not claim.fresh:
            resumption = await self._resume(claim, resumed=resumed, number=number)
            if resumption is not None:
                _SKIPPED.inc()
                return resumption
        attempt = _Attempt(claim=claim, delivery=delivery, environment=environment, number=number)
        if snapshot is None or not target:
            error = ErrorInfo(type="endpoint_removed", description=f"no {delivery.slot} URL in the webhook settings")
            return await self._drop(attempt, error)
        endpoint = await self._endpoints.get(environment, delivery.url)
        if endpoint.disabled:
            error = ErrorInfo(
                type="endpoint_disabled", description=f"the endpoint is disabled ({endpoint.disabled_reason})"
            )
            return await self._drop(attempt, error)

        url = delivery.url
        if self._breaker.allow(url):
            body = delivery.body.encode()
            headers = signed_headers(
                secret_key=snapshot.environment.secret_key,
                # read on every attempt: a retry after a rotation is signed with the new key
                webhook_signing_key=snapshot.environment.webhook_signing_key,
                signing_keys=snapshot.signing_keys,
                msg_id=delivery.webhook_id,
                body=body,
                timestamp=int(time.time()),  # fresh on every attempt; the id stays
            )
            try:
                result = await self._sender.post(url, body=body, headers=headers)
            except BaseException:
                self._breaker.released(url)  # no verdict (e.g. shutdown): let the next probe by
                raise
            DURATION.observe(result.duration_ms / 1000)
            if result.receiver_unwell:
                self._breaker.failed(url)
            elif result.status is not None:
                self._breaker.succeeded(url)  # it answered: whatever it said, it is up
            else:
                self._breaker.released(url)
        else:
            error = ErrorInfo(type="circuit_open", description="the receiver kept failing; not called this time")
            result = Attempt(
                url=url, status=None, duration_ms=0.0, error=error, error_class="CircuitOpen", response_body=None
            )
        return await self._settle(attempt, result, failing=endpoint.failing_since)

    async def _resume(self, claim: Claim, *, resumed: bool, number: int) -> Outcome | None:
        record = claim.record
        if record is None:  # claimed and not finished: in flight, or its consumer died mid-attempt
            assert claim.lease_until is not None
            if (resumed or claim.lease_until <= db_now()) and await self._log.take_over(
                claim, lease=self._limits.lease
            ):
                log.info("taking over an attempt its consumer did not finish", attempt=number)
                return None
            return Outcome(kind="skipped", reason="another consumer is making this attempt")
        state = record.get("state")
        if state == "failed" and not record.get("final") and resumed:
            delay = record.get("retry_delay") or self._policy.delay(number)
            return Outcome(kind="retry", reason="attempt made earlier; scheduling the next one", delay=float(delay))
        return Outcome(kind="skipped", reason=f"attempt already made ({state})")

    async def _drop(self, attempt: _Attempt, error: ErrorInfo) -> Outcome:
        _DROPPED.inc()
        log.info("webhook delivery dropped", url=redact_url(attempt.delivery.url), reason=error.type)
        fields = {"state": "discarded", "success": False, "final": True, "error": error.model_dump(), "status": None}
        await self._record(attempt, fields)
        await self._announcer.failed(
            attempt.delivery,
            environment=attempt.environment,
            attempt=attempt.number,
            status=None,
            error=error,
            final=True,
            next_attempt_at=None,
        )
        return Outcome(kind="dropped", reason=error.description)

    async def _settle(self, attempt: _Attempt, result: Attempt, *, failing: datetime | None) -> Outcome:
        delivery, environment, number = attempt.delivery, attempt.environment, attempt.number
        fields: dict[str, Any] = {
            "status": result.status,
            "duration_ms": result.duration_ms,
            "error_class": result.error_class,
            "error": result.error.model_dump() if result.error else None,
            "response_body": redact(result.response_body) if result.response_body else None,
        }
        if result.ok:
            assert result.status is not None
            _DELIVERED.inc()  # no log line: the record and the webhook.delivered notice tell it
            await self._record(attempt, fields | {"state": "succeeded", "success": True, "final": True})
            if failing is not None:
                await self._quietly(self._endpoints.store.succeeded(environment, delivery.url))
                self._endpoints.drop(environment)
            await self._announcer.delivered(
                delivery,
                environment=environment,
                attempt=number,
                status=result.status,
                duration_ms=result.duration_ms,
            )
            return Outcome(kind="delivered", reason=f"HTTP {result.status}")

        assert result.error is not None
        gone = result.status == 410
        permanent = gone or result.error_class in _PERMANENT_ERRORS
        final = permanent or number >= self._policy.max_attempts
        delay = None
        if not final:
            delay = self._policy.delay(
                number,
                status=result.status,
                timed_out=result.timed_out,
                retry_after=parse_retry_after(result.retry_after),
            )
        next_at = db_now() + timedelta(seconds=delay) if delay is not None else None
        (_FAILED if final else _RETRY).inc()
        log.warning(
            "webhook attempt failed",
            url=redact_url(delivery.url),
            status=result.status,
            error_type=result.error.type,
            final=final,
            retry_in=delay,
        )
        await self._record(
            attempt,
            fields
            | {
                "state": "failed",
                "success": False,
                "final": final,
                "next_attempt_at": next_at,
                "retry_delay": delay,
            },
        )
        await self._announcer.failed(
            delivery,
            environment=environment,
            attempt=number,
            status=result.status,
            error=result.error,
            final=final,
            next_attempt_at=next_at,
        )
        if gone:
            await self._disable(environment, delivery, gone=True)
        elif final and not permanent:
            await self._disable(environment, delivery, gone=False)
        if final:
            return Outcome(kind="failed", reason=result.error.description)
        return Outcome(kind="retry", reason=result.error.description, delay=delay)

    async def _disable(self, environment: str, delivery: WebhookDelivery, *, gone: bool) -> None:
        store = self._endpoints.store
        try:
            if gone:
                state = await store.gone(environment, delivery.url)
            else:
                state = await store.exhausted(
                    environment,
                    delivery.url,
                    disable_after=self._limits.disable_after,
                    forget_after=self._limits.forget_after,
                )
        except PyMongoError as exc:
            log.error(
                "could not update the endpoint's health", url=redact_url(delivery.url), error=exc.__class__.__name__
            )
            return
        self._endpoints.drop(environment)
        if state is not None:
            log.warning("webhook endpoint disabled", url=redact_url(delivery.url), reason=state.disabled_reason)
            self._endpoints.put(state)
            await self._announcer.endpoint_disabled(state, delivery=delivery)

    async def _record(self, attempt: _Attempt, outcome: dict[str, Any]) -> None:
        fields = attempt.delivery.model_dump() | {
            "environment": attempt.environment,
            "attempt": attempt.number,
            **outcome,
        }
        await self._quietly(self._log.record(attempt.claim, fields))

    @staticmethod
    async def _quietly(write: Awaitable[None]) -> None:
        try:
            await write
        except PyMongoError as exc:
            log.error("could not record a webhook attempt's outcome", error=exc.__class__.__name__)
