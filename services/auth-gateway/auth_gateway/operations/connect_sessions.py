"""Connect sessions (spec §10): a backend mints a short-lived token; the browser sends it instead
of the public key, so no long-lived key or HMAC secret has to reach the page.

A token is 256 random bits shown once; only its SHA-256 is stored. It lives 30 minutes and may
restrict which integrations the browser can connect. The browser never names the connection: the
gateway does (a new UUID), unless the backend fixed one at mint time (a reconnect session).

A session is single use. The connection write claims it first (``claim``: one atomic update, so of
many parallel attempts exactly one goes on) and gives the claim back when the write then fails; a
failed attempt before that (a mistyped API key) never claims it, so the user can try again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument

from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import utcnow
from keyway_shared.store import Database

__all__ = ["SESSION_LIFETIME", "TOKEN_PREFIX", "ConnectSession", "ConnectSessionStore", "SessionClaim"]

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
    connection_id: str | None = None  # set by the backend for a reconnect: the connection this session re-authorizes
    # Nango's per-integration defaults (authorization_params, connection_config with client overrides,
    # user_scopes): what the backend fixes or lets the browser choose in an OAuth flow. Stored encrypted.
    integrations_config_defaults: dict[str, dict[str, Any]] | None = None
    # What the connection this session writes gets (None: a reconnect leaves the connection's as they are):
    # its tags (Nango's connection tags, end user's fields included) and the URL its webhooks go to
    # instead of the environment's ("": back to the environment's).
    tags: dict[str, str] | None = None
    webhook_url_override: str | None = None
    overrides: dict[str, dict[str, Any]] | None = None  # per integration: docs_connect, for the Connect UI
    expires_at: datetime
    created_at: datetime = field(default_factory=utcnow)

    def owner(self) -> dict[str, Any] | None:
        """The end user (with their organization) a connection made through this session belongs to."""
        if not self.end_user.get("id"):
            return None
        owner = dict(self.end_user)
        if self.organization:
            owner["organization"] = dict(self.organization)
        return owner


@dataclass(frozen=True, kw_only=True)
class SessionClaim:
    """A session taken by one connection write: given back with ``release`` if that write fails."""

    session: ConnectSession
    claimed_at: datetime


def _from_doc(doc: dict[str, Any], cipher: CredentialCipher) -> ConnectSession:
    defaults_enc = doc.get("integrations_config_defaults_enc")
    return ConnectSession(
        id=doc["_id"],
        environment=doc["environment"],
        end_user=doc.get("end_user") or {},
        organization=doc.get("organization"),
        allowed_integrations=doc.get("allowed_integrations"),
        return_url=doc.get("return_url"),
        connection_id=doc.get("connection_id"),
        integrations_config_defaults=cipher.decrypt_json(defaults_enc, associated_data=doc["_id"].encode())
        if defaults_enc
        else None,
        tags=doc.get("tags"),
        webhook_url_override=doc.get("webhook_url_override"),
        overrides=doc.get("overrides"),
        expires_at=doc["expires_at"],
        created_at=doc["created_at"],
    )


class ConnectSessionStore:
    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._col = db["connect_sessions"]
        self._cipher = cipher

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
                "connection_id": session.connection_id,
                "integrations_config_defaults_enc": self._cipher.encrypt_json(
                    session.integrations_config_defaults, associated_data=_hash(token).encode()
                )
                if session.integrations_config_defaults
                else None,
                "tags": session.tags,
                "webhook_url_override": session.webhook_url_override,
                "overrides": session.overrides,
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
        return _from_doc(doc, self._cipher)

    async def unspent(self, session_id: str) -> bool:
        """Whether the session still exists and no connection has spent it.

        Its expiry is checked where its token is presented: a flow started in time may finish a
        little after it (until the TTL monitor removes the session, within a minute).
        """
        return await self._col.find_one({"_id": session_id, "used_at": None}, {"_id": 1}) is not None

    async def claim(self, session_id: str) -> SessionClaim | None:
        """Spend the session for one connection write; None when it is gone or already spent."""
        now = utcnow()
        doc = await self._col.find_one_and_update(
            {"_id": session_id, "used_at": None},
            {"$set": {"used_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        return SessionClaim(session=_from_doc(doc, self._cipher), claimed_at=doc["used_at"])

    async def release(self, claim: SessionClaim) -> None:
        """Give a claim back (its write failed): the session is usable again, unless deleted meanwhile."""
        await self._col.update_one({"_id": claim.session.id, "used_at": claim.claimed_at}, {"$set": {"used_at": None}})

    async def delete(self, token: str) -> bool:
        result = await self._col.delete_one({"_id": _hash(token.strip())})
        return result.deleted_count == 1
