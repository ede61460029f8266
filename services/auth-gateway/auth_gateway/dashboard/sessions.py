"""Dashboard sign-ins kept server-side, and the lockout after repeated failures.

Sessions live in MongoDB (``dashboard_sessions``, TTL-indexed) rather than in a signed cookie: a
sign-out or an expiry ends a session on every replica at once, and the cookie is a random token
whose SHA-256 is the document id, so the collection never holds a usable cookie. Each session has
its own CSRF token, checked on every form.

Failed sign-ins are counted per user name and per client address (``dashboard_signin_failures``);
past the limit within the window both keys are locked for the lockout period, even for the right
password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument

from keyway_shared.events import utcnow
from keyway_shared.store import Database

__all__ = ["DashboardSession", "LockoutStore", "SessionStore"]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class DashboardSession:
    id: str  # the digest, never the cookie value
    user: str
    csrf_token: str
    expires_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_token, str(presented))


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
class Lockout:
    locked: bool
    until: datetime | None = None


class LockoutStore:
    def __init__(self, db: Database, *, max_failures: int, period: timedelta) -> None:
        self._col = db["dashboard_signin_failures"]
        self._max = max_failures
        self._period = period

    async def ensure_indexes(self) -> None:
        await self._col.create_indexes([IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")])

    @staticmethod
    def keys(user: str, address: str) -> list[str]:
        # The user name is hashed: the collection should not become a list of guessed names.
        return ["user:" + _digest(user.strip().lower()), "ip:" + address]

    async def check(self, keys: list[str]) -> Lockout:
        now = utcnow()
        until = [
            doc["locked_until"]
            async for doc in self._col.find({"_id": {"$in": keys}})
            if doc.get("locked_until") is not None and doc["locked_until"] > now
        ]
        return Lockout(locked=True, until=max(until)) if until else Lockout(locked=False)

    async def failed(self, keys: list[str]) -> Lockout:
        """Count a failure against every key; lock the keys that reached the limit."""
        now = utcnow()
        window_end = now + self._period
        result = Lockout(locked=False)
        for key in keys:
            doc: dict[str, Any] | None = await self._col.find_one_and_update(
                {"_id": key, "expires_at": {"$gt": now}},
                {"$inc": {"failures": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:  # first failure in the window (or the last window ran out)
                doc = {"failures": 1}
                await self._col.replace_one(
                    {"_id": key}, {"failures": 1, "locked_until": None, "expires_at": window_end}, upsert=True
                )
            if int(doc["failures"]) >= self._max:
                await self._col.update_one(
                    {"_id": key}, {"$set": {"locked_until": window_end, "expires_at": window_end}}
                )
                result = Lockout(locked=True, until=window_end)
        return result

    async def succeeded(self, keys: list[str]) -> None:
        await self._col.delete_many({"_id": {"$in": keys}})
