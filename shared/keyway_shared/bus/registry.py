"""Who consumes what: the one list of Keyway's consumer queues and their bindings.

The gateway declares all of them when it connects, so an event published before a consumer
service ever started still waits in that service's queue instead of being dropped by an exchange
with nothing bound to it.
"""

from __future__ import annotations

from aio_pika.abc import AbstractChannel

from ..auth_modes import modes_where
from ..events import AUTH_MODE_HEADER
from .topology import ConsumerSpec, HeaderFilter, RetrySchedule, declare_consumer

__all__ = [
    "ACTIVITY_LOG",
    "TOKEN_REFRESHER",
    "WEBHOOK_DISPATCHER",
    "WEBHOOK_REPLAY",
    "WEBHOOK_SEND",
    "WEBHOOK_SEND_SCHEDULE",
    "declare_topology",
    "environment_changes_exchange",
    "service_consumers",
]

ACTIVITY_LOG = "activity-log"
WEBHOOK_DISPATCHER = "webhook-dispatcher"
WEBHOOK_SEND = "webhook-dispatcher/send"  # one message per (event, URL) delivery and its retries
WEBHOOK_REPLAY = "webhook-dispatcher/replay"  # replay requests from the API
TOKEN_REFRESHER = "token-refresher"  # noqa: S105 - a service name, not a token

# Svix's schedule: 8 attempts over about 27 h 35 min; the dispatcher's settings may scale or replace it.
WEBHOOK_SEND_SCHEDULE = RetrySchedule(delays=(5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0), jitter=0.2)


# The modes whose connections the refresher schedules (``ModeFacts.never_refreshed`` says the others).
REFRESHED_MODES: tuple[str, ...] = tuple(sorted(modes_where(lambda facts: not facts.never_refreshed)))


def environment_changes_exchange(namespace: str = "keyway") -> str:
    """The fanout exchange an environment's name is broadcast on after its settings or keys change."""
    return f"{namespace}.auth-gateway.invalidate"


def service_consumers(namespace: str = "keyway") -> dict[str, ConsumerSpec]:
    return {
        ACTIVITY_LOG: ConsumerSpec(
            service=ACTIVITY_LOG,
            handler="record",
            bindings=("#",),
            namespace=namespace,
            prefetch=500,  # batched inserts: the prefetch is the largest batch
            retry=RetrySchedule(delays=(1.0, 5.0, 30.0, 120.0)),
        ),
        WEBHOOK_DISPATCHER: ConsumerSpec(
            service=WEBHOOK_DISPATCHER,
            handler="deliver",
            bindings=("connection.*", "auth.*", "token.*"),
            namespace=namespace,
            prefetch=64,
        ),
        WEBHOOK_SEND: ConsumerSpec(
            service=WEBHOOK_DISPATCHER,
            handler="send",
            bindings=(),  # the dispatcher publishes deliveries straight to the queue
            namespace=namespace,
            prefetch=64,
            retry=WEBHOOK_SEND_SCHEDULE,
            at_least_once=True,  # a waiting retry is a webhook someone expects: never drop it
            # Deliveries that gave up wait here for a person; MongoDB keeps their record (and
            # replays read it), so the queue need not grow for ever.
            dead_letter_ttl=14 * 24 * 3600.0,
        ),
        WEBHOOK_REPLAY: ConsumerSpec(
            service=WEBHOOK_DISPATCHER,
            handler="replay",
            bindings=("webhook.replay_requested",),
            namespace=namespace,
            prefetch=4,
        ),
        TOKEN_REFRESHER: ConsumerSpec(
            service=TOKEN_REFRESHER,
            handler="schedule",
            bindings=("connection.*",),
            namespace=namespace,
            prefetch=64,
            # The refresher has nothing to do for a connection whose credentials never expire (API
            # key, Basic…): those events stay out of its queue, which saves the broker a stored copy
            # and the refresher a delivery per such write. Every connection event names its mode.
            header_filter=HeaderFilter(header=AUTH_MODE_HEADER, values=REFRESHED_MODES),
        ),
    }


async def declare_topology(channel: AbstractChannel, *, namespace: str, queue_type: str) -> None:
    for spec in service_consumers(namespace).values():
        await declare_consumer(channel, spec, queue_type=queue_type)
