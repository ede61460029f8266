"""Opening MongoDB through PyMongo's async API (``AsyncMongoClient``, Motor's official successor).

How long anything waits on a database that is away:

- A gateway request: its deadline (``KEYWAY_REQUEST_DEADLINE_SECONDS``, ``keyway_shared.deadline``),
  PyMongo's client-side operation timeout, which also ends a wait on a blackholed socket.
- Anything else (background loops, the other services, the CLI): server selection gives up after
  ``timeout_ms`` (5 s) when no server answers; a new connection after ``timeout_ms`` too; an
  operation already sent on a socket that went silent is interrupted when the driver's monitor
  misses the server (measured: about 20 s with the 10 s heartbeat), and the loop that made it backs
  off and tries again. No socket timeout is set: an index build or a large query may take longer.
- Back: the first operation (or readiness ping) that selects a server makes the monitor check it at
  once instead of at its next heartbeat.

What an acknowledged write means: written to the journal of a majority of the replica set
(``w=majority, journal=true``) unless the URL says otherwise. With less, a database that crashes
loses the writes of its last tens of milliseconds, and a deletion already answered 200 comes back
(measured on the embedded server: 20-140 acknowledged writes lost per SIGKILL without it, none with).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.uri_parser import parse_uri

from ..events import utcnow

__all__ = ["Database", "db_now", "open_client"]

Database = AsyncDatabase[dict[str, Any]]


def open_client(url: str, *, app_name: str, timeout_ms: int = 5000) -> AsyncMongoClient[dict[str, Any]]:
    """A client whose datetimes come back timezone-aware (UTC), failing fast when the server is gone
    (``serverSelectionTimeoutMS`` and ``connectTimeoutMS``: PyMongo's default selection waits 30 s),
    whose writes are durable once acknowledged (see above) unless the URL sets ``w`` or ``journal``."""
    return AsyncMongoClient(url, tz_aware=True, appname=app_name, **_connection_options(url, timeout_ms))


def _connection_options(url: str, timeout_ms: int) -> dict[str, Any]:
    given = parse_uri(url)["options"]  # case-folded names; a keyword would override the URL
    options: dict[str, Any] = {"serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms}
    if "w" not in given:
        options["w"] = "majority"
    if "journal" not in given:
        options["journal"] = True
    return options


def db_now() -> datetime:
    """Now, in UTC, cut to the millisecond a BSON date keeps, so what we return is what a read gives back."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
