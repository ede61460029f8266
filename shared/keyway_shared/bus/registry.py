"""Who consumes what: the one list of Keyway's consumer queues and their bindings.

The gateway declares all of them when it connects, so an event published before a consumer
service ever started still waits in that service's queue instead of being dropped by an exchange
with nothing bound to it.
"""

from __future__ import annotations

from aio_pika.abc import AbstractChannel

from .topology import ConsumerSpec, RetrySchedule, declare_consumer

__all__ = ["ACTIVITY_LOG", "TOKEN_REFRESHER", "WEBHOOK_DISPATCHER", "declare_topology", "service_consumers"]

ACTIVITY_LOG = "activity-log"
WEBHOOK_DISPATCHER = "webhook-dispatcher"
TOKEN_REFRESHER = "token-refresher"  # noqa: S105 - a service name, not a token


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
        TOKEN_REFRESHER: ConsumerSpec(
            service=TOKEN_REFRESHER,
            handler="schedule",
            bindings=("connection.*",),
            namespace=namespace,
            prefetch=64,
        ),
    }


async def declare_topology(channel: AbstractChannel, *, namespace: str, queue_type: str) -> None:
    for spec in service_consumers(namespace).values():
        await declare_consumer(channel, spec, queue_type=queue_type)
