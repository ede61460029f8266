"""Integrations: an environment's configured use of a provider (Nango's "provider config")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from ..cipher import CredentialCipher
from ..deadline import deadline_at, spawn_until
from ..events import utcnow
from ..group_commit import GroupCommit
from .client import Database, db_now

__all__ = ["DuplicateIntegrationError", "Integration", "IntegrationStore", "integration_ad"]

_Key = tuple[str, str]  # (environment, unique_key)
_MAX_READS = 256  # callers per shared read: the keys of one batch make one $in query


class DuplicateIntegrationError(Exception):
    """An integration with this unique key already exists in the environment."""


@dataclass(kw_only=True)
class Integration:
    environment: str
    unique_key: str
    provider: str
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None
    oauth_scopes: str | None = None
    app_link: str | None = None
    custom: dict[str, str] = field(default_factory=dict)
    display_name: str | None = None  # None: the provider's name is shown
    # Nango's flag: forward the provider's webhooks to the environment's URL (Keyway receives none yet).
    forward_webhooks: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None


def integration_ad(environment: str, unique_key: str) -> bytes:
    return f"integration:{environment}:{unique_key}".encode()


class IntegrationStore:
    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._col = db["integrations"]
        self._cipher = cipher
        self._reads: GroupCommit[tuple[_Key, float], dict[str, Any] | None] = GroupCommit(
            self._read_batch, max_size=_MAX_READS
        )

    def _to_doc(self, integration: Integration) -> dict[str, Any]:
        ad = integration_ad(integration.environment, integration.unique_key)
        secrets = {"oauth_client_secret": integration.oauth_client_secret, "custom": integration.custom}
        return {
            "environment": integration.environment,
            "unique_key": integration.unique_key,
            "provider": integration.provider,
            "oauth_client_id": integration.oauth_client_id,
            "oauth_scopes": integration.oauth_scopes,
            "app_link": integration.app_link,
            "display_name": integration.display_name,
            "forward_webhooks": integration.forward_webhooks,
            "secrets_enc": self._cipher.encrypt_json(secrets, associated_data=ad),
        }

    def _from_doc(self, doc: dict[str, Any]) -> Integration:
        secrets = self._cipher.decrypt_json(
            doc["secrets_enc"], associated_data=integration_ad(doc["environment"], doc["unique_key"])
        )
        return Integration(
            environment=doc["environment"],
            unique_key=doc["unique_key"],
            provider=doc["provider"],
            oauth_client_id=doc.get("oauth_client_id"),
            oauth_client_secret=secrets.get("oauth_client_secret"),
            oauth_scopes=doc.get("oauth_scopes"),
            app_link=doc.get("app_link"),
            custom=secrets.get("custom") or {},
            display_name=doc.get("display_name"),
            forward_webhooks=doc.get("forward_webhooks", True),
            created_at=doc.get("created_at"),
            updated_at=doc.get("updated_at"),
        )

    async def create(self, integration: Integration) -> Integration:
        now = db_now()
        doc = self._to_doc(integration) | {"created_at": now, "updated_at": now}
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise DuplicateIntegrationError(integration.unique_key) from exc
        integration.created_at = integration.updated_at = now
        return integration

    async def replace(self, integration: Integration, *, stored_as: str | None = None) -> bool:
        """Write ``integration`` over the one stored under its key, or under ``stored_as`` to rename it.

        A rename re-encrypts the secrets under the new key (their associated data names it) and keeps
        ``created_at``; a key another integration has raises :class:`DuplicateIntegrationError`.
        """
        doc = self._to_doc(integration) | {"updated_at": utcnow()}
        key = {"environment": integration.environment, "unique_key": stored_as or integration.unique_key}
        try:
            result = await self._col.update_one(key, {"$set": doc})
        except DuplicateKeyError as exc:
            raise DuplicateIntegrationError(integration.unique_key) from exc
        return result.matched_count == 1

    async def replace_if_unchanged(self, integration: Integration) -> bool:
        """Write ``integration`` over the stored one only if no one wrote it since it was read (its
        ``updated_at`` still the stored one): False when another write came first, to be read again."""
        doc = self._to_doc(integration) | {"updated_at": utcnow()}
        key = {
            "environment": integration.environment,
            "unique_key": integration.unique_key,
            "updated_at": integration.updated_at,
        }
        result = await self._col.update_one(key, {"$set": doc})
        return result.matched_count == 1

    async def get(self, environment: str, unique_key: str) -> Integration | None:
        """The integration as stored when this call was made or later: concurrent calls share reads
        (see :meth:`_read_batch`), but never one that began before they were made."""
        doc = await self._reads.submit(((environment, unique_key), deadline_at()))
        # Each caller gets its own object (callers edit what they get before writing it back).
        return self._from_doc(doc) if doc else None

    async def _read_batch(self, reads: list[tuple[_Key, float]]) -> list[dict[str, Any] | None]:
        """Every connection write reads its integration: at 64 concurrent imports that was one
        database command per write, the only one not shared with other writes. Reads made while
        another is out go together in the next (``GroupCommit``), one query per environment, each
        key read once; under the latest deadline of the batch's callers, as connection writes are."""
        until = max(deadline for _, deadline in reads)
        found = await spawn_until(self._find([key for key, _ in reads]), until, name="integration-reads")
        return [found.get(key) for key, _ in reads]

    async def _find(self, keys: list[_Key]) -> dict[_Key, dict[str, Any]]:
        by_environment: dict[str, set[str]] = {}
        for environment, unique_key in keys:
            by_environment.setdefault(environment, set()).add(unique_key)
        found: dict[_Key, dict[str, Any]] = {}
        for environment, names in by_environment.items():
            if len(names) == 1:  # the usual batch: one integration's many connections
                doc = await self._col.find_one({"environment": environment, "unique_key": next(iter(names))})
                docs = [doc] if doc else []
            else:
                query = {"environment": environment, "unique_key": {"$in": sorted(names)}}
                docs = await self._col.find(query).to_list(None)
            found.update({(environment, doc["unique_key"]): doc for doc in docs})
        return found

    async def list(self, environment: str) -> list[Integration]:
        cursor = self._col.find({"environment": environment}).sort("unique_key", 1)
        return [self._from_doc(doc) async for doc in cursor]

    async def delete(self, environment: str, unique_key: str) -> bool:
        result = await self._col.delete_one({"environment": environment, "unique_key": unique_key})
        return result.deleted_count == 1
