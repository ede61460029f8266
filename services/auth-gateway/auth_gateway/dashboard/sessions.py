"""Dashboard sign-ins kept server-side, and the lockout after repeated failures.

Sessions live in MongoDB (``dashboard_sessions``, TTL-indexed) rather than in a signed cookie: a
sign-out or an expiry ends a session on every replica at once, and the cookie is a random token
whose SHA-256 is the document id, so the collection never holds a usable cookie. Each session has
its own CSRF token, checked on every form.

Failed sign-ins are counted per client address and per user name (``dashboard_signin_failures``):
past the limit within the window the address is locked for the lockout period, even for the right
password, while the user name is only slowed down (``LockoutStore``), so that wrong passwords sent
from elsewhere never lock the admin out.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from keyway_shared.compare import secrets_equal
from keyway_shared.events import utcnow
from keyway_shared.store import Database

from ..http.client_address import client_key

__all__ = ["DashboardSession", "LockoutStore", "Refusal", "SessionStore"]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class DashboardSession:
    id: str  # the digest, never the cookie value
    user: str
    csrf_token: str
    expires_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and secrets_equal(self.csrf_token, str(presented))


class SessionStore:
    def __init__(self, db: Database, *, lifetime: timedelta) -> None:
        self._col = db["dashboard_sessions"]
        self._lifetime = lifetime

    async def ensure_indexes(self) -> None:
        await self._col.create_indexes([IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")])

    async def create(self, user: str) -> tuple[str, DashboardSession]:
        """A new session: (the cookie value, the session)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        session = DashboardSession(
            id=_digest(token), user=user, csrf_token=secrets.token_urlsafe(32), expires_at=now + self._lifetime
        )
        await self._col.insert_one(
            {
                "_id": session.id,
                "user": user,
                "csrf_token": session.csrf_token,
                "created_at": now,
                "expires_at": session.expires_at,
            }
        )
        return token, session

    async def find(self, token: str | None) -> DashboardSession | None:
        if not token:
            return None
        doc = await self._col.find_one({"_id": _digest(token)})
        # The TTL monitor runs about once a minute: an expired session is refused before it goes.
        if doc is None or doc["expires_at"] <= utcnow():
            return None
        return DashboardSession(
            id=doc["_id"], user=doc["user"], csrf_token=doc["csrf_token"], expires_at=doc["expires_at"]
        )

    async def delete(self, session_id: str) -> None:
        await self._col.delete_one({"_id": session_id})


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a sign-in attempt is not even checked, and until when."""

    reason: Literal["address_locked", "name_slowed"]
    until: datetime


class LockoutStore:
    """Sign-in attempts counted per client address (a lockout) and per user name (a slow-down).

    An address gets ``max_failures`` password checks per window (attempts are counted before the
    check, so parallel guesses cannot get more), then is locked for ``period``, right password or
    not. A user name is never locked: anyone could then lock the real admin out. Once it has had
    ``max_failures`` failures, tries at it from addresses that have failed themselves take turns,
    one per delay that doubles with each further failure up to ``max_delay``; a try from an address
    with no failure in the window is always checked, so the admin signs in from their own address
    whatever an attacker does from others.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_failures: int,
        period: timedelta,
        max_delay: timedelta = timedelta(minutes=1),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._col = db["dashboard_signin_failures"]
        self._max = max_failures
        self._period = period
        self._max_delay = max_delay
        self.clock = clock  # tests replace it

    async def ensure_indexes(self) -> None:
        await self._col.create_indexes([IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")])

    @staticmethod
    def _address_key(address: str) -> str:
        return "ip:" + client_key(address)

    @staticmethod
    def _name_key(user: str) -> str:
        # The user name is hashed: the collection should not become a list of guessed names.
        return "user:" + _digest(user.strip().lower())

    async def admit(self, user: str, address: str) -> Refusal | None:
        """Count an attempt from ``address`` at ``user``; a refusal means: do not check the password."""
        now = self.clock()
        key = self._address_key(address)
        doc = await self._count(key, "attempts", now)
        locked_until: datetime | None = doc.get("locked_until")
        if locked_until is not None and locked_until > now:
            return Refusal(reason="address_locked", until=locked_until)
        if int(doc["attempts"]) > self._max:  # failures plus tries in flight: parallel guesses stop here
            return Refusal(reason="address_locked", until=await self._lock(key, now))
        if int(doc["attempts"]) == 1:
            return None  # no failure from this address in the window: always heard
        slowed = await self._take_turn(self._name_key(user), now)
        if slowed is not None:
            await self._col.update_one({"_id": key}, {"$inc": {"attempts": -1}})  # no password was checked
        return slowed

    async def failed(self, user: str, address: str) -> Refusal | None:
        """Count a wrong password at ``user``; a refusal when it was ``address``'s last allowed one."""
        now = self.clock()
        await self._count(self._name_key(user), "failures", now, slide=True)
        key = self._address_key(address)
        doc = await self._col.find_one({"_id": key})
        if doc is not None and int(doc.get("attempts", 0)) >= self._max:
            return Refusal(reason="address_locked", until=await self._lock(key, now))
        return None

    async def succeeded(self, address: str) -> None:
        # The address starts afresh; the name's failures stay: the admin signing in does not mean
        # that whoever was guessing has stopped.
        await self._col.delete_one({"_id": self._address_key(address)})

    async def _count(self, key: str, counter: str, now: datetime, *, slide: bool = False) -> dict[str, Any]:
        """Add one to ``counter`` of ``key``'s current window (a new window when none is running)."""
        update: dict[str, Any] = {"$inc": {counter: 1}}
        if slide:
            update["$set"] = {"expires_at": now + self._period}
        for _ in range(3):
            doc: dict[str, Any] | None = await self._col.find_one_and_update(
                {"_id": key, "expires_at": {"$gt": now}}, update, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return doc
            # The first in this window: clear a finished one (the TTL monitor is slow), then start
            # one; a parallel attempt that started it first makes the insert fail, and we count in it.
            await self._col.delete_one({"_id": key, "expires_at": {"$lte": now}})
            fresh = {"_id": key, counter: 1, "locked_until": None, "next_at": None, "expires_at": now + self._period}
            try:
                await self._col.insert_one(fresh)
            except DuplicateKeyError:
                continue
            return fresh
        raise RuntimeError(f"sign-in counter {counter} could not be updated")

    async def _lock(self, key: str, now: datetime) -> datetime:
        until = now + self._period
        await self._col.update_one({"_id": key}, {"$set": {"locked_until": until, "expires_at": until}})
        return until

    async def _take_turn(self, key: str, now: datetime) -> Refusal | None:
        """None when the name is not slowed down or its next turn is free (taken now), else the wait."""
        doc = await self._col.find_one({"_id": key, "expires_at": {"$gt": now}})
        failures = int(doc.get("failures", 0)) if doc else 0
        if failures < self._max:
            return None
        delay = min(timedelta(seconds=2 ** min(failures - self._max, 30)), self._max_delay)
        taken = await self._col.find_one_and_update(
            {"_id": key, "$or": [{"next_at": None}, {"next_at": {"$lte": now}}]},
            {"$set": {"next_at": now + delay}},
        )
        if taken is not None:
            return None
        current = await self._col.find_one({"_id": key})
        next_at: datetime | None = current.get("next_at") if current else None
        return Refusal(reason="name_slowed", until=next_at or now + delay)
