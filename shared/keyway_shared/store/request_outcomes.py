"""What a request sent with an ``Idempotency-Key`` answered, kept 24 h so that its retry gets the same answer.

One document per (environment, key) in ``request_outcomes``. The first attempt claims the key by
inserting the document: its ``_id`` is unique, so two replicas racing on the same key agree on one
winner, and the loser learns that the request is in flight. The claim holds a lease: a claim left
by a replica that died lapses after ``lease`` and the next attempt takes it over (a compare-and-swap
on the holder, so only one does). The answer, once stored, stays until the TTL index removes the
document ``retention`` after it was written.

The request's fingerprint and the answer are encrypted with the credential cipher, bound to the
document's environment and key: an answer may carry credentials (an imported connection is echoed,
a key rotation returns the new key) and a fingerprint is a hash of a body that may hold a password.

A deletion can leave a marker in the document, in the deletion's own transaction (``mark_removal``):
the attempt that takes over a lapsed claim then knows that the connection is gone because this key
removed it, not because it never existed.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from ..cipher import CredentialCipher, DecryptionError
from ..logging import get_logger
from .client import Database, db_now

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_RETENTION",
    "ClaimResult",
    "KeyClaim",
    "RequestOutcomeStore",
    "StoredAnswer",
    "outcome_ad",
]

log = get_logger(__name__)

COLLECTION = "request_outcomes"
DEFAULT_LEASE = timedelta(seconds=60)  # far beyond any request's deadline: a live attempt never loses its claim
DEFAULT_RETENTION = timedelta(hours=24)  # Stripe's, and what the README promises
_ATTEMPTS = 4  # insert, read, take over: each round loses only to another attempt's progress


def outcome_ad(environment: str, key: str, field_name: str) -> bytes:
    """The associated data of a ciphertext in ``field_name`` of the document of ``key`` in ``environment``."""
    return f"request-outcome:{environment}:{key}:{field_name}".encode()


def _doc_id(environment: str, key: str) -> str:
    # Environment names are the fixed DEFAULT_ENVIRONMENTS, never holding '|': the id is unambiguous.
    return f"{environment}|{key}"


@dataclass(frozen=True, kw_only=True)
class StoredAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "headers": self.headers, "body": base64.b64encode(self.body).decode()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> StoredAnswer:
        return cls(status=int(value["status"]), headers=dict(value["headers"]), body=base64.b64decode(value["body"]))


class ClaimResult(Enum):
    CLAIMED = "claimed"  # run the request; the claim is ours
    IN_FLIGHT = "in_flight"  # another attempt holds the claim now
    DONE = "done"  # answered before: ``answer`` is that answer
    MISMATCH = "mismatch"  # the key was used with another request


@dataclass(frozen=True, kw_only=True)
class KeyClaim:
    result: ClaimResult
    holder: str | None = None  # ours when CLAIMED: completing or releasing needs it
    answer: StoredAnswer | None = None
    removal: dict[str, Any] | None = field(default=None)  # an earlier attempt's deletion marker


class RequestOutcomeStore:
    def __init__(
        self,
        db: Database,
        cipher: CredentialCipher,
        *,
        lease: timedelta = DEFAULT_LEASE,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._col = db[COLLECTION]
        self._cipher = cipher
        self._lease = lease
        self._retention = retention

    async def claim(self, environment: str, key: str, fingerprint: str, *, holder: str | None = None) -> KeyClaim:
        """Claim ``key`` for the request ``fingerprint`` names, or say why not.

        ``holder`` names the claim in advance, so a caller whose claim failed without an answer (a
        timeout: the insert may still land) can release whatever of it lands.
        """
        doc_id = _doc_id(environment, key)
        holder = holder or uuid.uuid4().hex
        for _ in range(_ATTEMPTS):
            now = db_now()
            try:
                await self._col.insert_one(
                    {
                        "_id": doc_id,
                        "environment": environment,
                        "key": key,
                        "state": "running",
                        "holder": holder,
                        "fingerprint_enc": self._encrypt(environment, key, "fingerprint_enc", fingerprint.encode()),
                        "created_at": now,
                        "lease_until": now + self._lease,
                        "expires_at": now + self._retention,
                    }
                )
                return KeyClaim(result=ClaimResult.CLAIMED, holder=holder)
            except DuplicateKeyError:
                pass
            doc = await self._col.find_one({"_id": doc_id})
            if doc is None:  # expired or dropped since our insert: claim it afresh
                continue
            try:
                same = self._decrypt(doc, "fingerprint_enc") == fingerprint.encode()
                answer = self._answer(doc)
            except DecryptionError:
                # Under a key no longer configured: as good as expired (logged, never the ciphertext).
                log.warning("dropping an unreadable request outcome", environment=environment)
                await self._col.delete_one({"_id": doc_id, "holder": doc.get("holder")})
                continue
            if not same:
                return KeyClaim(result=ClaimResult.MISMATCH)
            if answer is not None:
                return KeyClaim(result=ClaimResult.DONE, answer=answer)
            if doc.get("lease_until") is not None and doc["lease_until"] > now:
                return KeyClaim(result=ClaimResult.IN_FLIGHT)
            taken = await self._col.find_one_and_update(
                {"_id": doc_id, "state": "running", "holder": doc.get("holder")},
                {"$set": {"holder": holder, "lease_until": now + self._lease}},
                return_document=ReturnDocument.AFTER,
            )
            if taken is not None:
                return KeyClaim(result=ClaimResult.CLAIMED, holder=holder, removal=taken.get("removal"))
        return KeyClaim(result=ClaimResult.IN_FLIGHT)  # other attempts kept winning: one of them is running

    async def complete(self, environment: str, key: str, holder: str, answer: StoredAnswer) -> bool:
        """Store the answer of the claim ``holder`` holds; False when the claim was lost meanwhile."""
        now = db_now()
        result = await self._col.update_one(
            {"_id": _doc_id(environment, key), "state": "running", "holder": holder},
            {
                "$set": {
                    "state": "done",
                    "status": answer.status,  # in clear for operators; the rest is in answer_enc
                    "answer_enc": self._cipher.encrypt_json(
                        answer.as_json(), associated_data=outcome_ad(environment, key, "answer_enc")
                    ),
                    "completed_at": now,
                    "expires_at": now + self._retention,
                },
                "$unset": {"lease_until": ""},
            },
        )
        return result.matched_count == 1

    async def release(self, environment: str, key: str, holder: str) -> bool:
        """Give the claim up without an answer: the next attempt with the same request runs at once.

        The document stays (fingerprint and any deletion marker): the key still names this request.
        False when no running claim of ``holder`` was found (not written, or not yet: see the caller).
        """
        result = await self._col.update_one(
            {"_id": _doc_id(environment, key), "state": "running", "holder": holder},
            {"$set": {"lease_until": db_now()}},
        )
        return result.matched_count == 1

    async def mark_removal(
        self, environment: str, key: str, marker: dict[str, Any], *, session: AsyncClientSession
    ) -> None:
        """Record, inside the deletion's transaction, what this key's request removed."""
        await self._col.update_one({"_id": _doc_id(environment, key)}, {"$set": {"removal": marker}}, session=session)

    def _answer(self, doc: dict[str, Any]) -> StoredAnswer | None:
        if doc.get("state") != "done" or not doc.get("answer_enc"):
            return None
        value = json.loads(self._decrypt(doc, "answer_enc"))
        if not isinstance(value, dict):
            raise DecryptionError("a stored answer is not an object")
        return StoredAnswer.from_json(value)

    def _encrypt(self, environment: str, key: str, field_name: str, plaintext: bytes) -> str:
        return self._cipher.encrypt(plaintext, associated_data=outcome_ad(environment, key, field_name))

    def _decrypt(self, doc: dict[str, Any], field_name: str) -> bytes:
        ad = outcome_ad(doc["environment"], doc["key"], field_name)
        return self._cipher.decrypt(str(doc[field_name]), associated_data=ad)
