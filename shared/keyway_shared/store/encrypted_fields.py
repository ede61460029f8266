"""Where Keyway keeps ciphertexts: every encrypted field of every collection, with its associated data.

``keyway keys rotate``, ``keyway keys status``, ``keyway export`` and ``keyway import`` all walk this
one table, so a new encrypted field is one entry here (a test fails for a collection a rotation
leaves unreadable). A location is a dotted path: ``secrets_enc``, or ``keys.0.key_enc`` for an item
of a list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .connections import credentials_ad
from .environments import SECRET_FIELDS, secret_ad_of
from .integrations import integration_ad
from .request_outcomes import outcome_ad
from .webhook_keys import _ad as webhook_key_ad  # the store's own binding, so the two cannot drift

__all__ = ["ENCRYPTED_COLLECTIONS", "EncryptedCollection", "get_path", "set_path"]


@dataclass(frozen=True, kw_only=True)
class EncryptedCollection:
    name: str
    identity: tuple[str, ...]  # the fields that name a document (its natural key)
    ad: Callable[[dict[str, Any], str], bytes]  # the associated data of a document's ciphertext at a location
    fields: tuple[str, ...] = ()  # top-level fields holding one ciphertext (or nothing)
    array: tuple[str, str] | None = None  # (list field, item field) for a list of encrypted items
    key_id_field: str | None = None  # an indexed field naming the key of the ciphertext
    leased: bool = False  # refreshers lease these documents: a rotation leaves a leased one for later
    ad_fields: tuple[str, ...] = ()  # other fields ``ad`` reads (besides the identity)
    environment_field: str = "environment"  # the field naming the document's environment
    exported: bool = True  # part of `keyway export` (short-lived state is not)

    def projection(self) -> dict[str, int]:
        names = {*self.identity, *self.fields, *self.ad_fields}
        if self.array:
            names.add(self.array[0])
        if self.key_id_field:
            names.add(self.key_id_field)
        if self.leased:
            names.add("refresh_lease_until")
        return dict.fromkeys(sorted(names), 1)

    def locations(self, doc: dict[str, Any]) -> list[tuple[str, str]]:
        """Every ciphertext of the document, with where it lives."""
        found = [(name, doc[name]) for name in self.fields if isinstance(doc.get(name), str) and doc[name]]
        if self.array:
            list_field, item_field = self.array
            for index, item in enumerate(doc.get(list_field) or []):
                value = item.get(item_field) if isinstance(item, dict) else None
                if isinstance(value, str) and value:
                    found.append((f"{list_field}.{index}.{item_field}", value))
        return found


def get_path(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def set_path(doc: dict[str, Any], path: str, new: Any) -> None:
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = new
    else:
        target[last] = new


ENCRYPTED_COLLECTIONS: tuple[EncryptedCollection, ...] = (
    EncryptedCollection(
        name="environments",
        identity=("_id",),
        environment_field="_id",
        fields=SECRET_FIELDS,
        ad_fields=("secrets_ad",),  # a legacy document (no mark) is under one constant, until the gateway binds it
        ad=secret_ad_of,
    ),
    EncryptedCollection(
        name="integrations",
        identity=("environment", "unique_key"),
        fields=("secrets_enc",),
        ad=lambda doc, _at: integration_ad(doc["environment"], doc["unique_key"]),
    ),
    EncryptedCollection(
        name="connections",
        identity=("environment", "provider_config_key", "connection_id"),
        fields=("credentials_enc",),
        key_id_field="credentials_key_id",
        leased=True,
        ad=lambda doc, _at: credentials_ad(doc["environment"], doc["provider_config_key"], doc["connection_id"]),
    ),
    EncryptedCollection(
        name="webhook_signing_keys",
        identity=("_id",),
        environment_field="_id",
        array=("keys", "key_enc"),
        ad=lambda doc, _at: webhook_key_ad(doc["_id"]),
    ),
    # The gateway's OAuth sessions (auth_gateway/oauth/sessions.py): bound to the session id, gone
    # after ten minutes, so never exported, but re-encrypted so that no flow in progress breaks.
    EncryptedCollection(
        name="oauth_sessions",
        identity=("_id",),
        fields=("secrets_enc",),
        ad=lambda doc, _at: str(doc["_id"]).encode(),
        exported=False,
    ),
    # What a request with an Idempotency-Key answered (request_outcomes.py): kept 24 h, never
    # exported, but re-encrypted so that a retry after a rotation still reads its first answer.
    EncryptedCollection(
        name="request_outcomes",
        identity=("_id",),
        fields=("fingerprint_enc", "answer_enc"),
        ad_fields=("environment", "key"),
        ad=lambda doc, at: outcome_ad(doc["environment"], doc["key"], at),
        exported=False,
    ),
)
