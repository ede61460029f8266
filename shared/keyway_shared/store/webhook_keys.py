"""Each environment's Standard Webhooks signing keys (``whsec_…``), encrypted at rest.

One document per environment in ``webhook_signing_keys``, created on first use. It holds a list of
keys so a rotation can keep the old key signing for a grace period (``expires_at``); until the
rotation API lands (issue 6) the list holds one key that never expires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from ..cipher import CredentialCipher
from ..events import utcnow
from ..webhook_signing import generate_signing_key
from .client import Database

__all__ = ["WebhookKeyStore"]


def _ad(environment: str) -> bytes:
    return f"webhook-signing-key:{environment}".encode()


class WebhookKeyStore:
    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._col = db["webhook_signing_keys"]
        self._cipher = cipher

    async def signing_keys(self, environment: str, *, at: datetime | None = None) -> list[str]:
        """The keys that sign now, newest first; the environment's first key is created here."""
        doc = await self._col.find_one({"_id": environment})
        if doc is None:
            doc = await self._create(environment)
        now = at or utcnow()
        live = [k for k in doc.get("keys", []) if k.get("expires_at") is None or k["expires_at"] > now]
        live.sort(key=lambda k: k["created_at"], reverse=True)
        return [self._cipher.decrypt(k["key_enc"], associated_data=_ad(environment)).decode() for k in live]

    async def _create(self, environment: str) -> dict[str, Any]:
        now = utcnow()
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
