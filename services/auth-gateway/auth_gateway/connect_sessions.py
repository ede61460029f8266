"""Connect sessions (spec §10): a backend mints a short-lived token; the browser sends it instead
of the public key, so no long-lived key or HMAC secret has to reach the page.

A token is 256 random bits shown once; only its SHA-256 is stored. It lives 30 minutes and is
spent by the first connection it creates (a failed attempt leaves it usable, so a user who mistypes
an API key can try again). It may restrict which integrations the browser can connect.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel

from keyway_shared.events import utcnow
from keyway_shared.store import Database

__all__ = ["SESSION_LIFETIME", "TOKEN_PREFIX", "ConnectSession", "ConnectSessionStore"]

TOKEN_PREFIX = "nango_connect_session_"  # noqa: S105 - a public prefix, as Nango names its tokens
SESSION_LIFETIME = timedelta(minutes=30)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(kw_only=True)
class ConnectSession:
    id: str
    environment: str
    end_user: dict[str, Any]
    organization: dict[str, Any] | None = None
    allowed_integrations: list[str] | None = None
    return_url: str | None = None  # set for a connect link: the flow ends by redirecting there
    expires_at: datetime
    created_at: datetime = field(default_factory=utcnow)


class ConnectSessionStore:
    def __init__(self, db: Database) -> None:
        self._col = db["connect_sessions"]

    async def ensure_indexes(self) -> None:
        await self._col.create_indexes([IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")])

    async def create(self, session: ConnectSession) -> str:
        token = TOKEN_PREFIX + secrets.token_hex(32)
        await self._col.insert_one(
            {
                "_id": _hash(token),
                "environment": session.environment,
                "end_user": session.end_user,
                "organization": session.organization,
                "allowed_integrations": session.allowed_integrations,
                "return_url": session.return_url,
                "created_at": session.created_at,
                "expires_at": session.expires_at,
                "used_at": None,
            }
        )
        session.id = _hash(token)
        return token

    async def find(self, token: str) -> ConnectSession | None:
        """The live, unspent session for ``token``."""
        doc = await self._col.find_one({"_id": _hash(token.strip()), "used_at": None})
        if doc is None or doc["expires_at"] <= utcnow():
            return None
        return ConnectSession(
            id=doc["_id"],
            environment=doc["environment"],
            end_user=doc.get("end_user") or {},
            organization=doc.get("organization"),
            allowed_integrations=doc.get("allowed_integrations"),
            return_url=doc.get("return_url"),
            expires_at=doc["expires_at"],
            created_at=doc["created_at"],
        )

    async def spend(self, session_id: str) -> None:
        await self._col.update_one({"_id": session_id, "used_at": None}, {"$set": {"used_at": utcnow()}})

    async def delete(self, token: str) -> bool:
        result = await self._col.delete_one({"_id": _hash(token.strip())})
        return result.deleted_count == 1
