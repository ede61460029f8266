"""Each webhook URL's health (``webhook_endpoints``): disabled or not, and since when it keeps failing.

One document per (environment, URL), made when there is something to remember. An endpoint is
disabled when it answers 410 Gone, or, as Svix does, when deliveries to it have been exhausting
their retries for a while (5 days by default): the clock starts at the first exhausted delivery,
any success stops it, and a first failure older than twice the period is forgotten rather than
counted. Enabling an endpoint again (the API) clears both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo.errors import DuplicateKeyError

from .client import Database, db_now

__all__ = ["DisableReason", "EndpointState", "EndpointStore"]

DisableReason = Literal["gone", "failing"]


@dataclass(frozen=True, kw_only=True)
class EndpointState:
    environment: str
    url: str
    disabled: bool = False
    disabled_reason: DisableReason | None = None
    disabled_at: datetime | None = None
    failing_since: datetime | None = None  # the first exhausted delivery of the current streak

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "disabled": self.disabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": self.disabled_at,
            "failing_since": self.failing_since,
        }


def _key(environment: str, url: str) -> str:
    return f"{environment}|{url}"


def _state(environment: str, url: str, doc: dict[str, Any] | None) -> EndpointState:
    if doc is None:
        return EndpointState(environment=environment, url=url)
    return EndpointState(
        environment=environment,
        url=url,
        disabled=bool(doc.get("disabled")),
        disabled_reason=doc.get("disabled_reason"),
        disabled_at=doc.get("disabled_at"),
        failing_since=doc.get("failing_since"),
    )


class EndpointStore:
    def __init__(self, db: Database) -> None:
        self._col = db["webhook_endpoints"]

    async def get(self, environment: str, url: str) -> EndpointState:
        return _state(environment, url, await self._col.find_one({"_id": _key(environment, url)}))

    async def in_environment(self, environment: str) -> dict[str, EndpointState]:
        docs = self._col.find({"environment": environment})
        return {doc["url"]: _state(environment, doc["url"], doc) async for doc in docs}

    async def succeeded(self, environment: str, url: str) -> None:
        """A delivery got through: the failing streak is over."""
        await self._col.update_one(
            {"_id": _key(environment, url), "failing_since": {"$ne": None}},
            {"$set": {"failing_since": None, "updated_at": db_now()}},
        )

    async def exhausted(
        self, environment: str, url: str, *, disable_after: timedelta, forget_after: timedelta
    ) -> EndpointState | None:
        """A delivery gave up. Returns the endpoint's state when this disabled it, else None."""
        key = _key(environment, url)
        now = db_now()
        doc = await self._col.find_one({"_id": key})
        if doc is not None and doc.get("disabled"):
            return None
        since = doc.get("failing_since") if doc else None
        if since is None or now - since > forget_after:
            # The first exhausted delivery of a streak (or the old one is forgiven): start the clock.
            await self._col.update_one(
                {"_id": key},
                {
                    "$set": {"failing_since": now, "updated_at": now},
                    "$setOnInsert": {"environment": environment, "url": url, "disabled": False},
                },
                upsert=True,
            )
            return None
        if now - since < disable_after:
            return None
        return await self._disable(environment, url, reason="failing", now=now)

    async def gone(self, environment: str, url: str) -> EndpointState | None:
        """The receiver answered 410: disable at once. Returns the state when this call disabled it."""
        return await self._disable(environment, url, reason="gone", now=db_now())

    async def _disable(
        self, environment: str, url: str, *, reason: DisableReason, now: datetime
    ) -> EndpointState | None:
        key = _key(environment, url)
        try:
            result = await self._col.update_one(
                {"_id": key, "disabled": {"$ne": True}},
                {
                    "$set": {"disabled": True, "disabled_reason": reason, "disabled_at": now, "updated_at": now},
                    "$setOnInsert": {"environment": environment, "url": url},
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return None  # it exists and is disabled already: someone else got here first
        if result.modified_count == 0 and result.upserted_id is None:
            return None
        return await self.get(environment, url)

    async def enable(self, environment: str, url: str) -> bool:
        """Send to this URL again; True when it was disabled."""
        result = await self._col.update_one(
            {"_id": _key(environment, url), "disabled": True},
            {"$set": {"disabled": False, "disabled_reason": None, "disabled_at": None, "failing_since": None}},
        )
        return result.modified_count == 1
