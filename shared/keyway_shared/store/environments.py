"""Environments (``dev``, ``prod``): their keys and their webhook, callback, HMAC and public-key settings.

The secret key is looked up by its SHA-256 (indexed), and kept encrypted because the webhook
dispatcher signs with it. Public keys are identifiers, not secrets, and are stored plainly.

Each ciphertext (secret key, pending secret key, HMAC key, webhook signing key) is bound, as associated
data, to its environment and its field, so one copied into another environment or field fails to decrypt.
Documents written before that binding used one constant for all (``LEGACY_SECRET_AD``) and carry no
``secrets_ad`` mark: they are read as they are, re-encrypted by ``bind_legacy_secrets`` (the gateway
runs it at start) and before any write to them, so a document never mixes the two.

``public_key_connect`` says what the public key may do in the connect routes: ``allowed`` (Nango's
2024 protocol as it was), ``hmac`` (only with a valid ``hmac`` parameter) or ``refused`` (connect
sessions only, as Nango answers accounts created since it deprecated public-key authentication).
An environment stored before the setting existed keeps what it allowed: ``hmac`` if HMAC was on,
else ``allowed``.

The webhook signing key keys ``X-Nango-Hmac-Sha256`` on the webhooks the dispatcher sends, as Nango
signs them since it gave each environment its own key (a UUID v4, rotated by
``POST /environment/webhook-signing-key/rotate``): a receiver then needs no API secret to check them.
A new environment gets a random one. An environment stored before the key existed signs with a copy
of its secret key, which is what Nango's own backfill gave its environments of that time, so that no
receiver stops verifying: the copy is read in its place until it is written, which happens with the
legacy binding (at the gateway's start, and before any write to the document).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from pymongo.errors import DuplicateKeyError

from ..cipher import CredentialCipher
from ..events import utcnow
from .client import Database

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "LEGACY_SECRET_AD",
    "PUBLIC_KEY_CONNECT_MODES",
    "SECRET_FIELDS",
    "Environment",
    "EnvironmentStore",
    "PublicKeyConnect",
    "WebhookSettings",
    "environment_secret_ad",
    "hash_secret_key",
    "secret_ad_of",
]

DEFAULT_ENVIRONMENTS = ("dev", "prod")
PublicKeyConnect = Literal["allowed", "hmac", "refused"]
PUBLIC_KEY_CONNECT_MODES: tuple[PublicKeyConnect, ...] = get_args(PublicKeyConnect)

SECRET_FIELDS = ("secret_key_enc", "hmac_key_enc", "pending_secret_key_enc", "webhook_signing_key_enc")
LEGACY_SECRET_AD = b"environment-secret"
_BOUND_MARK = "secrets_ad"  # present (= _BOUND) once every ciphertext of the document is bound to its place
_BOUND = 2


def environment_secret_ad(environment: str, field_name: str) -> bytes:
    return f"environment:{environment}:{field_name}".encode()


def secret_ad_of(doc: dict[str, Any], field_name: str) -> bytes:
    """The associated data of the ciphertext in ``field_name`` of a stored environment document."""
    if doc.get(_BOUND_MARK) == _BOUND:
        return environment_secret_ad(doc["_id"], field_name)
    return LEGACY_SECRET_AD


def _stored_mode(doc: dict[str, Any]) -> PublicKeyConnect:
    mode = doc.get("public_key_connect")
    if mode in PUBLIC_KEY_CONNECT_MODES:
        return mode  # type: ignore[no-any-return]
    return "hmac" if doc.get("hmac_enabled") else "allowed"  # stored before the setting: as it was


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
    public_key_connect: PublicKeyConnect = "allowed"
    hmac_key: str = ""
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    allowed_return_urls: list[str] = field(default_factory=list)  # connect links may send the browser back here
    pending_public_key: str | None = None
    pending_secret_key: str | None = None
    webhook_signing_key: str = ""  # keys X-Nango-Hmac-Sha256 (the store always fills it)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def hmac_enabled(self) -> bool:
        """The setting before ``public_key_connect``: HMAC required on public-key connects."""
        return self.public_key_connect == "hmac"


class EnvironmentStore:
    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._col = db["environments"]
        self._cipher = cipher

    def _decrypt(self, doc: dict[str, Any], field_name: str) -> str | None:
        token = doc.get(field_name)
        if not token:
            return None
        return self._cipher.decrypt(token, associated_data=secret_ad_of(doc, field_name)).decode()

    def _encrypt(self, name: str, field_name: str, value: str) -> str:
        """A ciphertext for a bound document (every write goes to one: see ``_bound``)."""
        return self._cipher.encrypt(value.encode(), associated_data=environment_secret_ad(name, field_name))

    def _from_doc(self, doc: dict[str, Any]) -> Environment:
        secret_key = self._decrypt(doc, "secret_key_enc") or ""
        return Environment(
            name=doc["_id"],
            public_key=doc["public_key"],
            secret_key=secret_key,
            callback_url=doc.get("callback_url"),
            public_key_connect=_stored_mode(doc),
            hmac_key=self._decrypt(doc, "hmac_key_enc") or "",
            webhooks=WebhookSettings.from_doc(doc.get("webhooks")),
            allowed_return_urls=list(doc.get("allowed_return_urls") or []),
            pending_public_key=doc.get("pending_public_key"),
            pending_secret_key=self._decrypt(doc, "pending_secret_key_enc"),
            # Stored before the key existed: its copy of the secret key, until written (see the module's doc).
            webhook_signing_key=self._decrypt(doc, "webhook_signing_key_enc") or secret_key,
            created_at=doc.get("created_at"),
            updated_at=doc.get("updated_at"),
        )

    @staticmethod
    def _complete(doc: dict[str, Any]) -> bool:
        """Bound, and holding every secret an environment of this version has."""
        return doc.get(_BOUND_MARK) == _BOUND and bool(doc.get("webhook_signing_key_enc"))

    async def _bind(self, doc: dict[str, Any]) -> bool:
        """Re-encrypt a legacy document's ciphertexts bound to their place, and write the signing key of
        a document stored before it (a copy of the secret key), all at once (a compare-and-swap on them
        as read); False when the document changed meanwhile."""
        swap: dict[str, Any] = {"_id": doc["_id"], _BOUND_MARK: doc.get(_BOUND_MARK)}
        update: dict[str, Any] = {_BOUND_MARK: _BOUND}
        for field_name in SECRET_FIELDS:
            swap[field_name] = doc.get(field_name)  # None also matches a field that is absent
            plaintext = self._decrypt(doc, field_name)
            if plaintext is not None:
                update[field_name] = self._encrypt(doc["_id"], field_name, plaintext)
        if "webhook_signing_key_enc" not in update:
            copy = self._decrypt(doc, "secret_key_enc") or ""
            update["webhook_signing_key_enc"] = self._encrypt(doc["_id"], "webhook_signing_key_enc", copy)
        result = await self._col.update_one(swap, {"$set": update})
        return result.modified_count == 1

    async def _bound(self, name: str) -> dict[str, Any] | None:
        """The document, bound (and given its signing key) first if it is an older one, so that a write
        never mixes the two bindings nor moves the signing key a receiver verifies with."""
        for _ in range(5):
            doc = await self._col.find_one({"_id": name})
            if doc is None or self._complete(doc) or await self._bind(doc):
                return doc
        raise RuntimeError(f"the environment {name!r} kept changing while its secrets were being bound")

    async def bind_legacy_secrets(self) -> int:
        """Bind every legacy document's ciphertexts to their environment and field, and write the signing
        key of every document stored before it; how many legacy documents were bound."""
        legacy = [doc["_id"] async for doc in self._col.find({_BOUND_MARK: {"$exists": False}}, {"_id": 1})]
        keyless = [doc["_id"] async for doc in self._col.find({"webhook_signing_key_enc": None}, {"_id": 1})]
        for name in dict.fromkeys(legacy + keyless):
            await self._bound(name)
        return len(legacy)

    async def ensure(
        self,
        name: str,
        *,
        public_key: str | None = None,
        secret_key: str | None = None,
        public_key_connect: PublicKeyConnect = "refused",
    ) -> Environment:
        """Create the environment on first start; keys pinned by settings win, else random UUID v4s.

        ``public_key_connect`` applies only then (``hmac`` comes with a random HMAC key, to read with
        ``GET /environment``): later the environment's own setting is the truth.
        """
        existing = await self._col.find_one({"_id": name})
        if existing is None:
            now = utcnow()
            secret = (secret_key or str(uuid.uuid4())).lower()
            hmac_key = secrets.token_hex(32) if public_key_connect == "hmac" else None
            signing_key = str(uuid.uuid4())  # Nango's shape: a UUID v4, never the secret key
            doc = {
                "_id": name,
                "public_key": (public_key or str(uuid.uuid4())).lower(),
                "secret_key_hash": hash_secret_key(secret),
                "secret_key_enc": self._encrypt(name, "secret_key_enc", secret),
                "callback_url": None,
                "public_key_connect": public_key_connect,
                "hmac_enabled": public_key_connect == "hmac",  # for a gateway of a version before the setting
                "hmac_key_enc": self._encrypt(name, "hmac_key_enc", hmac_key) if hmac_key else None,
                "webhook_signing_key_enc": self._encrypt(name, "webhook_signing_key_enc", signing_key),
                "webhooks": WebhookSettings().to_doc(),
                _BOUND_MARK: _BOUND,
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
        await self._bound(name)
        update: dict[str, Any] = {"updated_at": utcnow()}
        if public_key:
            update["public_key"] = public_key.lower()
        if secret_key:
            update["secret_key_hash"] = hash_secret_key(secret_key)
            update["secret_key_enc"] = self._encrypt(name, "secret_key_enc", secret_key.lower())
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
        await self._bound(name)
        if kind == "secret":
            update = {
                "pending_secret_key_hash": hash_secret_key(key),
                "pending_secret_key_enc": self._encrypt(name, "pending_secret_key_enc", key),
            }
        else:
            update = {"pending_public_key": key}
        await self._col.update_one({"_id": name}, {"$set": update | {"updated_at": utcnow()}})
        return key

    async def activate_rotation(self, name: str, kind: str) -> bool:
        """The pending key becomes the key; the old one stops working. False when none is pending."""
        doc = await self._bound(name)
        if doc is None:
            return False
        if kind == "secret":
            if not doc.get("pending_secret_key_hash"):
                return False
            pending = self._decrypt(doc, "pending_secret_key_enc") or ""  # re-encrypted: bound to its new field
            update: dict[str, Any] = {
                "$set": {
                    "secret_key_hash": doc["pending_secret_key_hash"],
                    "secret_key_enc": self._encrypt(name, "secret_key_enc", pending),
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
        await self._bound(name)
        update: dict[str, Any] = {"updated_at": utcnow()}
        if public_key:
            update["pending_public_key"] = public_key.lower()
        if secret_key:
            update["pending_secret_key_hash"] = hash_secret_key(secret_key)
            update["pending_secret_key_enc"] = self._encrypt(name, "pending_secret_key_enc", secret_key.lower())
        await self._col.update_one({"_id": name}, {"$set": update})

    async def rotate_webhook_signing_key(self, name: str) -> str | None:
        """A new signing key (UUID v4) that replaces the current one at once, as Nango rotates it (no
        grace: the old key stops signing); None when there is no such environment."""
        key = str(uuid.uuid4())
        if await self._bound(name) is None:
            return None
        update = {
            "webhook_signing_key_enc": self._encrypt(name, "webhook_signing_key_enc", key),
            "updated_at": utcnow(),
        }
        result = await self._col.update_one({"_id": name}, {"$set": update})
        return key if result.matched_count == 1 else None

    async def set_webhook_signing_key(self, name: str, key: str) -> None:
        """A signing key chosen elsewhere (a migration keeps the key its receivers verify with)."""
        await self._bound(name)
        update = {
            "webhook_signing_key_enc": self._encrypt(name, "webhook_signing_key_enc", key),
            "updated_at": utcnow(),
        }
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
        public_key_connect: PublicKeyConnect | None = None,
        hmac_enabled: bool | None = None,
        hmac_key: str | None = None,
        webhooks: WebhookSettings | None = None,
        allowed_return_urls: list[str] | None = None,
    ) -> Environment | None:
        """Change the given settings. ``hmac_enabled`` (for callers from before ``public_key_connect``):
        true means ``hmac``; false turns ``hmac`` into ``allowed`` and leaves the other two as they are."""
        doc = await self._bound(name)
        if doc is None:
            return None
        update: dict[str, Any] = {"updated_at": utcnow()}
        if callback_url is not ...:
            update["callback_url"] = callback_url
        if public_key_connect is None and hmac_enabled is not None:
            current = _stored_mode(doc)
            public_key_connect = "hmac" if hmac_enabled else "allowed" if current == "hmac" else current
        if public_key_connect is not None:
            update["public_key_connect"] = public_key_connect
            update["hmac_enabled"] = public_key_connect == "hmac"  # for a gateway of a version before the setting
        if hmac_key is not None:
            update["hmac_key_enc"] = self._encrypt(name, "hmac_key_enc", hmac_key) if hmac_key else None
        if webhooks is not None:
            update["webhooks"] = webhooks.to_doc()
        if allowed_return_urls is not None:
            update["allowed_return_urls"] = allowed_return_urls
        await self._col.update_one({"_id": name}, {"$set": update})
        return await self.get(name)
