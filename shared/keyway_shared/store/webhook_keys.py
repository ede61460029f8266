"""Each environment's Standard Webhooks signing keys (``whsec_…``), encrypted at rest.

One document per environment in ``webhook_signing_keys``, created on first use. It holds a list of
keys so a rotation keeps the old key signing for a grace period (``expires_at``, 24 h by default, as
Svix does): during it every live key signs, and a receiver may switch to the new key at leisure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from ..cipher import CredentialCipher
from ..webhook_signing import generate_signing_key
from .client import Database, db_now

__all__ = ["DEFAULT_ROTATION_GRACE", "MAX_OLD_KEYS", "SigningKey", "WebhookKeyStore"]

DEFAULT_ROTATION_GRACE = timedelta(hours=24)
MAX_OLD_KEYS = 10  # Svix's bound too: a receiver never has to try more than a handful of keys


def _ad(environment: str) -> bytes:
    return f"webhook-signing-key:{environment}".encode()


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    key: str
    created_at: datetime
    expires_at: datetime | None  # None: signs until the next rotation


class WebhookKeyStore:
    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._col = db["webhook_signing_keys"]
        self._cipher = cipher

    async def keys(self, environment: str, *, at: datetime | None = None) -> list[SigningKey]:
        """The keys that sign now, newest first; the environment's first key is created here."""
        doc = await self._col.find_one({"_id": environment})
        if doc is None:
            doc = await self._create(environment)
        now = at or db_now()
        live = [k for k in doc.get("keys", []) if k.get("expires_at") is None or k["expires_at"] > now]
        live.sort(key=lambda k: k["created_at"], reverse=True)
        return [
            SigningKey(
                key=self._cipher.decrypt(k["key_enc"], associated_data=_ad(environment)).decode(),
                created_at=k["created_at"],
                expires_at=k.get("expires_at"),
            )
            for k in live
        ]

    async def signing_keys(self, environment: str, *, at: datetime | None = None) -> list[str]:
        """The key strings that sign now, newest first."""
        return [k.key for k in await self.keys(environment, at=at)]

    async def rotate(self, environment: str, *, grace: timedelta = DEFAULT_ROTATION_GRACE) -> SigningKey:
        """A new key that signs from now on; the current keys keep signing for ``grace`` (at most)."""
        while True:
            doc = await self._col.find_one({"_id": environment}) or await self._create(environment)
            now = db_now()
            ends = now + grace
            old = []
            for k in doc.get("keys", []):
                expires = k.get("expires_at")
                if expires is not None and expires <= now:
                    continue  # already out of its grace: forget it
                old.append(k | {"expires_at": ends if expires is None or expires > ends else expires})
            old.sort(key=lambda k: k["created_at"], reverse=True)
            key = generate_signing_key()
            fresh = {"key_enc": self._cipher.encrypt(key.encode(), associated_data=_ad(environment)), "created_at": now}
            keys = [fresh | {"expires_at": None}, *old[:MAX_OLD_KEYS]]
            # Compare-and-set on a version (None matches a document from before versions existed):
            # two rotations at once must not lose one of the keys.
            version = doc.get("version")
            result = await self._col.update_one(
                {"_id": environment, "version": version},
                {"$set": {"keys": keys, "updated_at": now, "version": (version or 0) + 1}},
            )
            if result.modified_count == 1:
                return SigningKey(key=key, created_at=now, expires_at=None)

    async def _create(self, environment: str) -> dict[str, Any]:
        now = db_now()
        key = generate_signing_key()
        doc = {
            "_id": environment,
            "keys": [
                {
                    "key_enc": self._cipher.encrypt(key.encode(), associated_data=_ad(environment)),
                    "created_at": now,
                    "expires_at": None,
                }
            ],
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            # Another replica created the first key at the same moment: everyone signs with theirs.
            existing = await self._col.find_one({"_id": environment})
            assert existing is not None
            return existing
        return doc
