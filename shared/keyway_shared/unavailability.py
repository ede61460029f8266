"""Which failures mean "the database or the broker is away or overloaded right now" (a 503, retry later).

Not a defect to report as a 500: the request may well succeed once the database answers again. A
write that failed this way may or may not have been applied (a commit whose answer was lost), which
the 503's message says.
"""

from __future__ import annotations

import aio_pika
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from .bus import PublishError

__all__ = ["is_unavailability"]

# Labels the server or the driver puts on errors that a later try may not meet.
_LABELS = ("TransientTransactionError", "UnknownTransactionCommitResult", "RetryableWriteError")
# Server error codes of an overloaded, failing-over or stopping server (MongoDB's error_codes.yml).
_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        24,  # LockTimeout
        50,  # MaxTimeMSExpired (ExecutionTimeout)
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        112,  # WriteConflict (left after the retries)
        189,  # PrimarySteppedDown
        251,  # NoSuchTransaction (aborted under us, e.g. by a failover)
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
    }
)


def _database_unavailable(exc: PyMongoError) -> bool:
    if isinstance(exc, ConnectionFailure) or exc.timeout:  # unreachable, or past the deadline (CSOT)
        return True
    if any(exc.has_error_label(label) for label in _LABELS):
        return True
    return isinstance(exc, OperationFailure) and exc.code in _CODES


def is_unavailability(exc: BaseException) -> bool:
    """The database or the broker could not be reached, or did not answer in time."""
    if isinstance(exc, PyMongoError):
        return _database_unavailable(exc)
    # A closed connection (ConnectionClosed is one) or channel, or a publish nobody confirmed.
    return isinstance(
        exc, PublishError | aio_pika.exceptions.AMQPConnectionError | aio_pika.exceptions.ChannelInvalidStateError
    )
