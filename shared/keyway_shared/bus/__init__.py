"""The bus: topology, publishing with confirms, and the consumer runner with its ack policy.

Exceptions::

    PublishError   the broker did not confirm a publish
    Retry          raised by a handler: try this message again later, through the broker
    DeadLetter     raised by a handler: give up on this message now (dead-letter it)
"""

from .connection import connect
from .consumer import (
    ATTEMPT_HEADER,
    RESUMED_HEADER,
    Claim,
    ConsumerRunner,
    DeadLetter,
    Handler,
    IdempotencyGuard,
    MessageContext,
    Retry,
    attempt_of,
    retry_copy,
)
from .publisher import EventPublisher, PublishError, build_message
from .registry import (
    ACTIVITY_LOG,
    TOKEN_REFRESHER,
    WEBHOOK_DISPATCHER,
    WEBHOOK_REPLAY,
    WEBHOOK_SEND,
    WEBHOOK_SEND_SCHEDULE,
    declare_topology,
    environment_changes_exchange,
    service_consumers,
)
from .topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    ConsumerSpec,
    HeaderFilter,
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
    "RESUMED_HEADER",
    "TOKEN_REFRESHER",
    "WEBHOOK_DISPATCHER",
    "WEBHOOK_REPLAY",
    "WEBHOOK_SEND",
    "WEBHOOK_SEND_SCHEDULE",
    "Claim",
    "ConsumerRunner",
    "ConsumerSpec",
    "DeadLetter",
    "EventPublisher",
    "Handler",
    "HeaderFilter",
    "IdempotencyGuard",
    "MessageContext",
    "PublishError",
    "Retry",
    "RetrySchedule",
    "attempt_of",
    "build_message",
    "connect",
    "declare_consumer",
    "declare_events_exchange",
    "declare_topology",
    "delete_consumer_queues",
    "environment_changes_exchange",
    "retry_copy",
    "service_consumers",
]
