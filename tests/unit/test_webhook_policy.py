"""The retry policy (schedule, jitter, overload, Retry-After clamping) and the per-URL circuit breaker."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from keyway_shared.bus import WEBHOOK_SEND_SCHEDULE
from webhook_dispatcher.app import retry_policy
from webhook_dispatcher.breaker import CircuitBreaker
from webhook_dispatcher.policy import RetryPolicy, parse_retry_after
from webhook_dispatcher.settings import DispatcherSettings

SVIX = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def test_the_default_schedule_is_svixs_with_jitter_and_scales_for_tests() -> None:
    assert WEBHOOK_SEND_SCHEDULE.delays == SVIX
    assert WEBHOOK_SEND_SCHEDULE.max_attempts == 8
    policy = retry_policy(DispatcherSettings())
    assert (policy.schedule, policy.jitter, policy.overload_minimum) == (SVIX, 0.2, 60.0)
    fast = retry_policy(DispatcherSettings(KEYWAY_WEBHOOK_RETRY_SCALE="0.001"))
    assert fast.schedule == pytest.approx(tuple(d / 1000 for d in SVIX))
    assert fast.overload_minimum == pytest.approx(0.06)
    custom = DispatcherSettings(KEYWAY_WEBHOOK_RETRY_SCHEDULE="1, 2.5,10")
    assert custom.retry_schedule == (1.0, 2.5, 10.0)
    with pytest.raises(ValueError, match="positive"):
        DispatcherSettings(KEYWAY_WEBHOOK_RETRY_SCHEDULE="1,0")


def test_jitter_stays_within_twenty_percent_on_a_coarse_grid() -> None:
    policy = RetryPolicy(schedule=SVIX, jitter=0.2)
    rng = random.Random(7)
    for attempt, scheduled in enumerate(SVIX, start=1):
        waits = sorted({round(policy.delay(attempt, rng=rng), 6) for _ in range(300)})
        assert waits == pytest.approx([scheduled * f for f in (0.8, 0.9, 1.0, 1.1, 1.2)])
    assert RetryPolicy(schedule=(5.0,), jitter=0.0).delay(1) == 5.0


def test_overload_and_retry_after_follow_svixs_bounds() -> None:
    policy = RetryPolicy(schedule=(5.0, 300.0), jitter=0.0, overload_minimum=60.0)
    assert policy.delay(1, status=500) == 5.0
    assert policy.delay(1, status=429) == 60.0  # a 429 waits at least the overload minimum
    assert policy.delay(1, timed_out=True) == 60.0
    assert policy.delay(2, status=429) == 300.0  # the schedule is longer already
    # Retry-After is clamped between the wait and twice it, and rounded up to a quarter of the wait.
    assert policy.delay(1, status=503, retry_after=6) == 6.25
    assert policy.delay(1, status=503, retry_after=7) == 7.5
    assert policy.delay(1, status=503, retry_after=1) == 5.0
    assert policy.delay(1, status=503, retry_after=86400) == 10.0
    assert policy.delay(1, status=429, retry_after=100) == 105.0
    assert policy.delay(2, status=429, retry_after=400) == 450.0
    assert policy.delay(1, status=500, retry_after=100) == 5.0  # honoured on 429 and 503 only
    # The last attempt's wait is reused if asked past the end.
    assert policy.delay(5) == 300.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(bad, now=now) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_failures_in_the_window_then_lets_one_probe_by() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, window=10, cooldown=60, clock=clock)
    url = "https://app.example/hook"
    for _ in range(2):
        breaker.failed(url)
    assert breaker.allow(url)
    clock.now += 11  # the first two fell out of the window
    breaker.failed(url)
    assert breaker.allow(url)
    breaker.failed(url)
    breaker.failed(url)
    assert not breaker.allow(url)  # three within ten seconds: open
    assert breaker.allow("https://other.example/hook")  # per URL
    clock.now += 59
    assert not breaker.allow(url)
    clock.now += 2
    assert breaker.allow(url)  # the probe
    assert not breaker.allow(url)  # only one at a time
    breaker.failed(url)  # the probe failed: another cooldown
    clock.now += 30
    assert not breaker.allow(url)
    clock.now += 31
    assert breaker.allow(url)
    breaker.succeeded(url)  # any success closes it and forgets the failures
    assert breaker.allow(url)
    assert breaker.allow(url)
    assert not breaker.is_open(url)


def test_a_probe_without_a_verdict_lets_the_next_one_by() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, window=10, cooldown=5, clock=clock)
    breaker.failed("u")
    clock.now += 6
    assert breaker.allow("u")
    breaker.released("u")
    assert breaker.allow("u")


def test_the_breaker_forgets_the_oldest_urls_beyond_its_bound() -> None:
    breaker = CircuitBreaker(failures=1, window=10, cooldown=60, max_urls=2)
    for url in ("a", "b", "c"):
        breaker.failed(url)
    assert breaker.allow("a")  # forgotten
    assert not breaker.allow("b")
    assert not breaker.allow("c")
