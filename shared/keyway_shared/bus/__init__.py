"""The bus: topology, publishing with confirms, and the consumer runner with its ack policy.

Exceptions::

    PublishError   the broker did not confirm a publish
    Retry          raised by a handler: try this message again later, through the broker
"""

from .connection import connect
from .consumer import ATTEMPT_HEADER, Claim, ConsumerRunner, Handler, IdempotencyGuard, MessageContext, Retry
from .publisher import EventPublisher, PublishError, build_message
from .registry import ACTIVITY_LOG, TOKEN_REFRESHER, WEBHOOK_DISPATCHER, declare_topology, service_consumers
from .topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    ConsumerSpec,
    RetrySchedule,
    declare_consumer,
    declare_events_exchange,
    delete_consumer_queues,
)

__all__ = [
    "ACTIVITY_LOG",
    "ATTEMPT_HEADER",
    "DEAD_LETTER_EXCHANGE",
    "EVENTS_EXCHANGE",
    "TOKEN_REFRESHER",
    "WEBHOOK_DISPATCHER",
    "Claim",
    "ConsumerRunner",
    "ConsumerSpec",
    "EventPublisher",
    "Handler",
    "IdempotencyGuard",
    "MessageContext",
    "PublishError",
    "Retry",
    "RetrySchedule",
    "build_message",
    "connect",
    "declare_consumer",
    "declare_events_exchange",
    "declare_topology",
    "delete_consumer_queues",
    "service_consumers",
]
