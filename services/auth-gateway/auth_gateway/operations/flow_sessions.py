"""OAuth sessions: what the gateway remembers between redirecting to a provider and its callback.

The session id is the ``state`` parameter: 256 random bits, single use (the callback claims it
atomically), valid for ten minutes, then removed by a TTL index. Secrets it
holds — the PKCE verifier, client overrides, an OAuth 1 request-token secret — are encrypted. It
keeps the digest of the nonce given to the browser that started the flow (``connect/protocol/browser_binding``), so
only that browser can finish it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel

from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import utcnow
from keyway_shared.store import Database

__all__ = ["SESSION_INDEXES", "SESSION_TTL", "OAuthSession", "OAuthSessionStore"]

SESSION_TTL = timedelta(minutes=10)
SESSION_INDEXES = [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")]


@dataclass(kw_only=True)
class OAuthSession:
    environment: str
    provider_config_key: str
    provider: str
    auth_mode: str
    connection_id: str
    callback_url: str
    operation_id: str
    connection_config: dict[str, Any] = field(default_factory=dict)
    ws_client_id: str | None = None
    return_url: str | None = None  # a redirect flow (connect link) ends there instead of closing a popup
    secrets: dict[str, str] = field(default_factory=dict)  # code_verifier, client overrides, token secret
    browser_binding: str | None = None  # SHA-256 of the starting browser's cookie nonce
    id: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created_at: datetime = field(default_factory=utcnow)


class OAuthSessionStore:
    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._col = db["oauth_sessions"]
        self._cipher = cipher

    async def ensure_indexes(self) -> None:
        await self._col.create_indexes(SESSION_INDEXES)

    async def create(self, session: OAuthSession) -> OAuthSession:
        await self._col.insert_one(
            {
                "_id": session.id,
                "environment": session.environment,
                "provider_config_key": session.provider_config_key,
                "provider": session.provider,
                "auth_mode": session.auth_mode,
                "connection_id": session.connection_id,
                "callback_url": session.callback_url,
                "operation_id": session.operation_id,
                "connection_config": session.connection_config,
                "ws_client_id": session.ws_client_id,
                "return_url": session.return_url,
                "browser_binding": session.browser_binding,
                "secrets_enc": self._cipher.encrypt_json(session.secrets, associated_data=session.id.encode()),
                "created_at": session.created_at,
                "expires_at": session.created_at + SESSION_TTL,
                "used_at": None,
            }
        )
        return session

    async def take(self, state: str) -> tuple[OAuthSession | None, str]:
        """Claim the session for ``state`` once: ``(session, "ok")``, or ``(stale, reason)``.

        A claimed session stays behind, marked used, until its TTL: a second callback with the same
        state is then told "already used" (and its socket notified) rather than "unknown".
        Reasons: ``ok``, ``unknown``, ``used``, ``expired``.
        """
        now = utcnow()
        doc = await self._col.find_one_and_update({"_id": state, "used_at": None}, {"$set": {"used_at": now}})
        if doc is None:
            stale = await self._col.find_one({"_id": state})
            if stale is None:
                return None, "unknown"
            return self._from_doc(stale, with_secrets=False), "used"
        session = self._from_doc(doc, with_secrets=True)
        if doc["expires_at"] <= now:  # the TTL sweep runs only every minute
            return session, "expired"
        return session, "ok"

    def _from_doc(self, doc: dict[str, Any], *, with_secrets: bool) -> OAuthSession:
        return OAuthSession(
            id=doc["_id"],
            environment=doc["environment"],
            provider_config_key=doc["provider_config_key"],
            provider=doc["provider"],
            auth_mode=doc["auth_mode"],
            connection_id=doc["connection_id"],
            callback_url=doc["callback_url"],
            operation_id=doc["operation_id"],
            connection_config=doc.get("connection_config") or {},
            ws_client_id=doc.get("ws_client_id"),
            return_url=doc.get("return_url"),
            browser_binding=doc.get("browser_binding"),
            secrets=self._cipher.decrypt_json(doc["secrets_enc"], associated_data=doc["_id"].encode())
            if with_secrets
            else {},
            created_at=doc["created_at"],
        )
