"""Environments (``dev``, ``prod``): their keys and their webhook, callback and HMAC settings.

The secret key is looked up by its SHA-256 (indexed), and kept encrypted because the webhook
dispatcher signs with it. Public keys are identifiers, not secrets, and are stored plainly.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from ..cipher import CredentialCipher
from ..events import utcnow
from .client import Database

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "ENVIRONMENT_SECRET_AD",
    "Environment",
    "EnvironmentStore",
    "WebhookSettings",
    "hash_secret_key",
]

DEFAULT_ENVIRONMENTS = ("dev", "prod")
ENVIRONMENT_SECRET_AD = b"environment-secret"
_AD = ENVIRONMENT_SECRET_AD


def hash_secret_key(secret_key: str) -> str:
    return hashlib.sha256(secret_key.strip().lower().encode()).hexdigest()


@dataclass(kw_only=True)
class WebhookSettings:
    primary_url: str | None = None
    secondary_url: str | None = None
    on_auth_creation: bool = True
    on_auth_refresh_error: bool = True

    def urls(self) -> list[str]:
        return [u for u in (self.primary_url, self.secondary_url) if u]

    def to_doc(self) -> dict[str, Any]:
        return {
            "primary_url": self.primary_url,
            "secondary_url": self.secondary_url,
            "on_auth_creation": self.on_auth_creation,
            "on_auth_refresh_error": self.on_auth_refresh_error,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> WebhookSettings:
        doc = doc or {}
        return cls(
            primary_url=doc.get("primary_url"),
            secondary_url=doc.get("secondary_url"),
            on_auth_creation=bool(doc.get("on_auth_creation", True)),
            on_auth_refresh_error=bool(doc.get("on_auth_refresh_error", True)),
        )


@dataclass(kw_only=True)
class Environment:
    name: str
    public_key: str
    secret_key: str
    callback_url: str | None = None
    hmac_enabled: bool = False
    hmac_key: str = ""
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    allowed_return_urls: list[str] = field(default_factory=list)  # connect links may send the browser back here
    pending_public_key: str | None = None
    pending_secret_key: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class EnvironmentStore:
    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._col = db["environments"]
        self._cipher = cipher

    def _from_doc(self, doc: dict[str, Any]) -> Environment:
        return Environment(
            name=doc["_id"],
            public_key=doc["public_key"],
            secret_key=self._cipher.decrypt(doc["secret_key_enc"], associated_data=_AD).decode(),
            callback_url=doc.get("callback_url"),
            hmac_enabled=bool(doc.get("hmac_enabled", False)),
            hmac_key=self._cipher.decrypt(doc["hmac_key_enc"], associated_data=_AD).decode()
            if doc.get("hmac_key_enc")
            else "",
            webhooks=WebhookSettings.from_doc(doc.get("webhooks")),
            allowed_return_urls=list(doc.get("allowed_return_urls") or []),
            pending_public_key=doc.get("pending_public_key"),
            pending_secret_key=self._cipher.decrypt(doc["pending_secret_key_enc"], associated_data=_AD).decode()
            if doc.get("pending_secret_key_enc")
            else None,
            created_at=doc.get("created_at"),
            updated_at=doc.get("updated_at"),
        )

    async def ensure(self, name: str, *, public_key: str | None = None, secret_key: str | None = None) -> Environment:
        """Create the environment on first start; keys pinned by settings win, else random UUID v4s."""
        existing = await self._col.find_one({"_id": name})
        if existing is None:
            now = utcnow()
            secret = (secret_key or str(uuid.uuid4())).lower()
            doc = {
                "_id": name,
                "public_key": (public_key or str(uuid.uuid4())).lower(),
                "secret_key_hash": hash_secret_key(secret),
                "secret_key_enc": self._cipher.encrypt(secret.encode(), associated_data=_AD),
                "callback_url": None,
                "hmac_enabled": False,
                "hmac_key_enc": None,
                "webhooks": WebhookSettings().to_doc(),
                "created_at": now,
                "updated_at": now,
            }
            with contextlib.suppress(DuplicateKeyError):  # another replica created it first: read theirs
                await self._col.insert_one(doc)
            existing = await self._col.find_one({"_id": name})
            assert existing is not None
        env = self._from_doc(existing)
        # Keys pinned in settings are the source of truth: apply a change made since the last start.
        if (public_key and public_key.lower() != env.public_key) or (
            secret_key and secret_key.lower() != env.secret_key
        ):
            await self.set_keys(name, public_key=public_key, secret_key=secret_key)
            return await self.get(name)  # type: ignore[return-value]
        return env

    async def set_keys(self, name: str, *, public_key: str | None = None, secret_key: str | None = None) -> None:
        update: dict[str, Any] = {"updated_at": utcnow()}
        if public_key:
            update["public_key"] = public_key.lower()
        if secret_key:
            update["secret_key_hash"] = hash_secret_key(secret_key)
            update["secret_key_enc"] = self._cipher.encrypt(secret_key.lower().encode(), associated_data=_AD)
        await self._col.update_one({"_id": name}, {"$set": update})

    async def get(self, name: str) -> Environment | None:
        doc = await self._col.find_one({"_id": name})
        return self._from_doc(doc) if doc else None

    async def by_secret_key(self, secret_key: str) -> Environment | None:
        """The environment whose secret key (or pending secret key, during a rotation) this is."""
        digest = hash_secret_key(secret_key)
        doc = await self._col.find_one({"secret_key_hash": digest}) or await self._col.find_one(
            {"pending_secret_key_hash": digest}
        )
        return self._from_doc(doc) if doc else None

    async def by_public_key(self, public_key: str) -> Environment | None:
        key = public_key.strip().lower()
        doc = await self._col.find_one({"public_key": key}) or await self._col.find_one({"pending_public_key": key})
        return self._from_doc(doc) if doc else None

    async def start_rotation(self, name: str, kind: str) -> str:
        """A new pending key (UUID v4) that works beside the current one until activated or reverted."""
        key = str(uuid.uuid4())
        if kind == "secret":
            update = {
                "pending_secret_key_hash": hash_secret_key(key),
                "pending_secret_key_enc": self._cipher.encrypt(key.encode(), associated_data=_AD),
            }
        else:
            update = {"pending_public_key": key}
        await self._col.update_one({"_id": name}, {"$set": update | {"updated_at": utcnow()}})
        return key

    async def activate_rotation(self, name: str, kind: str) -> bool:
        """The pending key becomes the key; the old one stops working. False when none is pending."""
        doc = await self._col.find_one({"_id": name})
        if doc is None:
            return False
        if kind == "secret":
            if not doc.get("pending_secret_key_hash"):
                return False
            update: dict[str, Any] = {
                "$set": {
                    "secret_key_hash": doc["pending_secret_key_hash"],
                    "secret_key_enc": doc["pending_secret_key_enc"],
                    "updated_at": utcnow(),
                },
                "$unset": {"pending_secret_key_hash": "", "pending_secret_key_enc": ""},
            }
            matched = {"pending_secret_key_hash": doc["pending_secret_key_hash"]}
        else:
            if not doc.get("pending_public_key"):
                return False
            update = {
                "$set": {"public_key": doc["pending_public_key"], "updated_at": utcnow()},
                "$unset": {"pending_public_key": ""},
            }
            matched = {"pending_public_key": doc["pending_public_key"]}
        result = await self._col.update_one({"_id": name} | matched, update)
        return result.modified_count == 1

    async def set_pending_keys(self, name: str, *, public_key: str | None, secret_key: str | None) -> None:
        """Pending keys chosen elsewhere (a migration brings a rotation that was under way there)."""
        update: dict[str, Any] = {"updated_at": utcnow()}
        if public_key:
            update["pending_public_key"] = public_key.lower()
        if secret_key:
            update["pending_secret_key_hash"] = hash_secret_key(secret_key)
            update["pending_secret_key_enc"] = self._cipher.encrypt(secret_key.lower().encode(), associated_data=_AD)
        await self._col.update_one({"_id": name}, {"$set": update})

    async def revert_rotation(self, name: str, kind: str) -> bool:
        fields = ["pending_secret_key_hash", "pending_secret_key_enc"] if kind == "secret" else ["pending_public_key"]
        result = await self._col.update_one(
            {"_id": name, fields[0]: {"$exists": True}}, {"$unset": dict.fromkeys(fields, "")}
        )
        return result.modified_count == 1

    async def update_settings(
        self,
        name: str,
        *,
        callback_url: str | object | None = ...,
        hmac_enabled: bool | None = None,
        hmac_key: str | None = None,
        webhooks: WebhookSettings | None = None,
        allowed_return_urls: list[str] | None = None,
    ) -> Environment | None:
        update: dict[str, Any] = {"updated_at": utcnow()}
        if callback_url is not ...:
            update["callback_url"] = callback_url
        if hmac_enabled is not None:
            update["hmac_enabled"] = hmac_enabled
        if hmac_key is not None:
            update["hmac_key_enc"] = self._cipher.encrypt(hmac_key.encode(), associated_data=_AD) if hmac_key else None
        if webhooks is not None:
            update["webhooks"] = webhooks.to_doc()
        if allowed_return_urls is not None:
            update["allowed_return_urls"] = allowed_return_urls
        await self._col.update_one({"_id": name}, {"$set": update})
        return await self.get(name)
