"""``keyway keys rotate`` and ``keyway keys status``: every ciphertext re-encrypted with the current key.

Safe while the services run. Each document is rewritten by a compare-and-swap on the ciphertexts it
was read with, so a re-authorization or a refresh written meanwhile is never overwritten: the swap
misses, the document is read again and re-encrypted from its new value. A connection whose refresh
lease is held is left for a later pass, so a refresher never loses the swap of credentials it has
just obtained from the provider (which may have spent the old refresh token). Progress lives in the
data itself, since each ciphertext names its key: an interrupted rotation resumes by running again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from keyway_shared.cipher import CredentialCipher, DecryptionError
from keyway_shared.store import Database
from keyway_shared.store.encrypted_fields import ENCRYPTED_COLLECTIONS, EncryptedCollection

__all__ = ["KeyUsage", "Rotator", "key_usage", "print_usage"]

Outcome = Literal["current", "rotated", "busy", "gone", "unreadable", "contended"]
_UNKNOWN = "(not kw1)"


@dataclass
class KeyUsage:
    """How many ciphertexts of each collection use each key id."""

    current_key_id: str
    collections: dict[str, Counter[str]]

    def not_current(self) -> int:
        return sum(n for counts in self.collections.values() for kid, n in counts.items() if kid != self.current_key_id)

    def key_ids(self) -> set[str]:
        return {kid for counts in self.collections.values() for kid in counts}

    def as_json(self) -> dict[str, Any]:
        return {
            "current_key_id": self.current_key_id,
            "collections": {name: dict(counts) for name, counts in self.collections.items()},
            "not_current": self.not_current(),
        }


async def _scan(
    db: Database, spec: EncryptedCollection, query: dict[str, Any], cipher: CredentialCipher
) -> Counter[str]:
    counts: Counter[str] = Counter()
    async for doc in db[spec.name].find(query, spec.projection()):
        for _, token in spec.locations(doc):
            counts[cipher.key_id_of(token) or _UNKNOWN] += 1
    return counts


async def key_usage(db: Database, cipher: CredentialCipher) -> KeyUsage:
    """Counted through the key-id index where a collection has one; the small ones are scanned."""
    usage = KeyUsage(current_key_id=cipher.current_key_id, collections={})
    for spec in ENCRYPTED_COLLECTIONS:
        col = db[spec.name]
        if spec.key_id_field is None:
            usage.collections[spec.name] = await _scan(db, spec, {}, cipher)
            continue
        counts: Counter[str] = Counter()
        for kid in await col.distinct(spec.key_id_field):
            if isinstance(kid, str):
                counts[kid] += await col.count_documents({spec.key_id_field: kid})
        # Documents that do not say which key they use (none are written so today) are read.
        counts.update(await _scan(db, spec, {spec.key_id_field: None}, cipher))
        usage.collections[spec.name] = counts
    return usage


def print_usage(usage: KeyUsage, cipher: CredentialCipher, out: TextIO) -> None:
    old = sorted(cipher.key_ids - {usage.current_key_id})
    print(f"current key id: {usage.current_key_id}; old key ids configured: {', '.join(old) or 'none'}", file=out)
    print(f"{'collection':<22} {'key id':<10} {'values':>8}", file=out)
    for name, counts in usage.collections.items():
        if not counts:
            print(f"{name:<22} {'-':<10} {0:>8}", file=out)
        for kid, n in sorted(counts.items()):
            label = "current" if kid == usage.current_key_id else "old" if kid in cipher.key_ids else "NOT CONFIGURED"
            print(f"{name:<22} {kid:<10} {n:>8}  {label}", file=out)
    pending = usage.not_current()
    if pending:
        print(f"{pending} values still use another key than the current one: keep the old keys in", file=out)
        print("KEYWAY_ENCRYPTION_KEYS_OLD and run `keyway keys rotate`.", file=out)
    else:
        print("Every stored secret uses the current key: the old keys can be dropped.", file=out)


@dataclass
class PassResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    rotated: Counter[str] = field(default_factory=Counter)


class Rotator:
    """Re-encrypts in batches of ``batch_size`` documents, ``concurrency`` swaps in flight at once."""

    def __init__(
        self, db: Database, cipher: CredentialCipher, *, out: TextIO, batch_size: int = 200, concurrency: int = 16
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._out = out
        self._batch = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self.unreadable: dict[tuple[str, Any], str] = {}
        self.retries = 0

    async def run(self, *, max_wait: float = 300.0, retry_interval: float = 1.0) -> int:
        """0: everything uses the current key; 1: some documents stayed busy or kept being written
        with an old key past ``max_wait``; 2: some ciphertexts cannot be read with any configured key."""
        usage = await key_usage(self._db, self._cipher)
        unknown = usage.key_ids() - self._cipher.key_ids
        if unknown:
            print(
                f"refusing to rotate: key ids {', '.join(sorted(unknown))} are in use but not configured;",
                file=self._out,
            )
            print("add those keys to KEYWAY_ENCRYPTION_KEYS_OLD and run again.", file=self._out)
            return 2
        print(f"re-encrypting {usage.not_current()} values with key {self._cipher.current_key_id}", file=self._out)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        passes = 0
        while True:
            passes += 1
            result = await self.one_pass()
            left = (await key_usage(self._db, self._cipher)).not_current() - len(self.unreadable)
            summary = ", ".join(f"{name} {n}" for name, n in result.rotated.items() if n) or "nothing"
            print(f"pass {passes}: re-encrypted {summary}; {left} left", file=self._out, flush=True)
            if left <= 0:
                break
            if loop.time() > deadline:
                print(
                    f"stopped after {max_wait:.0f} s with {left} values under old keys: documents kept busy",
                    file=self._out,
                )
                print("(held refresh leases) or a service still writes with an old key; run again.", file=self._out)
                return 1
            await asyncio.sleep(retry_interval)
        for (name, doc_id), reason in sorted(self.unreadable.items(), key=str):
            print(f"unreadable: {name} {doc_id}: {reason}", file=self._out)
        if self.unreadable:
            return 2
        print(f"done: every stored secret uses key {self._cipher.current_key_id}", file=self._out)
        return 0

    async def one_pass(self) -> PassResult:
        result = PassResult()
        for spec in ENCRYPTED_COLLECTIONS:
            for query in await self._queries(spec):
                await self._walk(spec, query, result)
        return result

    async def _queries(self, spec: EncryptedCollection) -> list[dict[str, Any]]:
        if spec.key_id_field is None:
            return [{}]
        kids = await self._db[spec.name].distinct(spec.key_id_field)
        old = sorted(k for k in kids if isinstance(k, str) and k != self._cipher.current_key_id)
        return [{spec.key_id_field: kid} for kid in old] + [{spec.key_id_field: None}]

    async def _walk(self, spec: EncryptedCollection, query: dict[str, Any], result: PassResult) -> None:
        """Pages by ``_id``, so documents left behind (busy, unreadable) are not met again in this pass."""
        col = self._db[spec.name]
        last: Any = None
        while True:
            page = query if last is None else query | {"_id": {"$gt": last}}
            docs = await col.find(page, spec.projection()).sort("_id", 1).limit(self._batch).to_list()
            if not docs:
                return
            outcomes = await asyncio.gather(*(self._guarded(spec, doc) for doc in docs))
            result.outcomes.update(outcomes)
            rotated = outcomes.count("rotated")
            result.rotated[spec.name] += rotated
            if rotated:
                print(f"  {spec.name}: {result.rotated[spec.name]} re-encrypted", file=self._out, flush=True)
            last = docs[-1]["_id"]

    async def _guarded(self, spec: EncryptedCollection, doc: dict[str, Any]) -> Outcome:
        async with self._slots:
            return await self.rotate_document(spec, doc)

    async def rotate_document(self, spec: EncryptedCollection, doc: dict[str, Any], *, attempts: int = 5) -> Outcome:
        """Compare-and-swap every old ciphertext of ``doc`` (as read) for one under the current key."""
        col = self._db[spec.name]
        current = self._cipher.current_key_id
        for _ in range(attempts):
            swap: dict[str, Any] = {"_id": doc["_id"]}
            update: dict[str, Any] = {}
            try:
                for location, token in spec.locations(doc):
                    swap[location] = token  # every ciphertext as read: the swap is on all of them
                    if self._cipher.key_id_of(token) != current:
                        ad = spec.ad(doc, location)
                        plaintext = self._cipher.decrypt(token, associated_data=ad)
                        update[location] = self._cipher.encrypt(plaintext, associated_data=ad)
            except DecryptionError as exc:
                self.unreadable[(spec.name, doc["_id"])] = str(exc)
                return "unreadable"
            if spec.key_id_field and doc.get(spec.key_id_field) != current and len(swap) > 1:
                update[spec.key_id_field] = current
            if not update:
                return "current"
            if spec.leased:
                swap["refresh_lease_until"] = {"$not": {"$gt": datetime.now(UTC)}}
            if (await col.update_one(swap, {"$set": update})).matched_count == 1:
                return "rotated"
            fresh = await col.find_one({"_id": doc["_id"]}, spec.projection())
            if fresh is None:
                return "gone"
            lease = fresh.get("refresh_lease_until") if spec.leased else None
            if lease is not None and lease > datetime.now(UTC):
                return "busy"  # a refresh is under way: its swap must win; a later pass comes back
            self.retries += 1
            doc = fresh
        return "contended"
