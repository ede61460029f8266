"""``keyway export`` and ``keyway import``: a deployment's environments, integrations, connections and
webhook signing keys, moved through an archive whose secrets are under the operator's key.

Documents travel whole (every field, the ones added later too); only their ciphertexts change key:
the deployment's key on one side, the archive key in between, the other deployment's key after. An
import reads the archive through once to check it (the key, every ciphertext, the counts) before it
writes anything, so a wrong passphrase or a damaged file leaves the deployment as it was.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from keyway_shared.cipher import CredentialCipher, DecryptionError
from keyway_shared.store import EPOCH, Database
from keyway_shared.store.encrypted_fields import ENCRYPTED_COLLECTIONS, EncryptedCollection, set_path

from .archive import ArchiveError, ArchiveKey, ArchiveReader, ArchiveWriter

__all__ = ["export_deployment", "import_deployment", "occupied"]

_EXPORTED = [spec for spec in ENCRYPTED_COLLECTIONS if spec.exported]
_BY_NAME = {spec.name: spec for spec in _EXPORTED}
# Where an import refuses to write over existing data, unless forced.
_GUARDED = ("integrations", "connections")


def _identity(spec: EncryptedCollection, doc: dict[str, Any]) -> str:
    return "/".join(str(doc.get(name)) for name in spec.identity)


def _rekey(spec: EncryptedCollection, doc: dict[str, Any], source: CredentialCipher, target: CredentialCipher) -> None:
    for location, token in spec.locations(doc):
        ad = spec.ad(doc, location)
        set_path(doc, location, target.encrypt(source.decrypt(token, associated_data=ad), associated_data=ad))


async def export_deployment(
    db: Database, cipher: CredentialCipher, path: Path, key: ArchiveKey, *, environments: list[str], out: TextIO
) -> dict[str, Any]:
    """Write the archive; the whole deployment, or only the named environments."""
    writer = ArchiveWriter(path, key, [spec.name for spec in _EXPORTED])
    try:
        for spec in _EXPORTED:
            query = {spec.environment_field: {"$in": environments}} if environments else {}
            async for doc in db[spec.name].find(query).sort("_id", 1):
                try:
                    _rekey(spec, doc, cipher, key.cipher)
                except DecryptionError as exc:
                    raise ArchiveError(f"{spec.name} {_identity(spec, doc)} cannot be read: {exc}") from None
                if spec.key_id_field:
                    doc.pop(spec.key_id_field, None)
                writer.write(spec.name, doc)
            print(f"exported {writer.counts[spec.name]} {spec.name}", file=out, flush=True)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


async def occupied(db: Database, environments: set[str]) -> dict[str, int]:
    """How many integrations and connections the named environments already have."""
    found = {}
    for name in _GUARDED:
        n = await db[name].count_documents({"environment": {"$in": sorted(environments)}})
        if n:
            found[name] = n
    return found


def _verify(reader: ArchiveReader) -> tuple[Counter[str], set[str], int]:
    counts: Counter[str] = Counter()
    environments: set[str] = set()
    max_id = 0
    for name, doc in reader.documents():
        spec = _BY_NAME.get(name)
        if spec is None:
            raise ArchiveError(f"the archive holds an unknown collection {name!r}")
        if any(field not in doc for field in spec.identity):
            raise ArchiveError(f"a document of {name} lacks its identity ({', '.join(spec.identity)})")
        for location, token in spec.locations(doc):
            try:
                reader.key.cipher.decrypt(token, associated_data=spec.ad(doc, location))
            except DecryptionError:
                raise ArchiveError(f"{name} {_identity(spec, doc)}: {location} is damaged") from None
        counts[name] += 1
        environments.add(str(doc[spec.environment_field]))
        if name == "connections" and isinstance(doc.get("id"), int):
            max_id = max(max_id, doc["id"])
    expected = reader.manifest.get("counts") or {}
    for name in _BY_NAME:
        if int(expected.get(name, 0)) != counts[name]:
            raise ArchiveError(f"the manifest counts {expected.get(name, 0)} {name}, the archive holds {counts[name]}")
    return counts, environments, max_id


async def _put(db: Database, spec: EncryptedCollection, doc: dict[str, Any]) -> None:
    """Replace the document with the same identity, or insert it (keeping its ``_id`` when free)."""
    col = db[spec.name]
    if spec.identity == ("_id",):
        await col.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        return
    where = {name: doc[name] for name in spec.identity}
    body = {k: v for k, v in doc.items() if k != "_id"}
    for _ in range(3):
        try:
            if (await col.replace_one(where, body)).matched_count == 1:
                return
            await col.insert_one(dict(doc))
            return
        except DuplicateKeyError:
            # Merging (--force) into a deployment with its own data: the numeric id or the ``_id`` is taken.
            doc.pop("_id", None)
            if spec.name == "connections":
                counter = await db["counters"].find_one_and_update(
                    {"_id": "connections"}, {"$inc": {"value": 1}}, upsert=True, return_document=ReturnDocument.AFTER
                )
                doc["id"] = body["id"] = int((counter or {}).get("value", 0))
    raise ArchiveError(f"{spec.name} {_identity(spec, doc)} could not be written")


async def import_deployment(
    db: Database, cipher: CredentialCipher, reader: ArchiveReader, *, force: bool, out: TextIO
) -> int:
    counts, environments, max_id = _verify(reader)
    print(f"archive of {reader.manifest.get('created_at')}: {dict(counts)} (checked)", file=out, flush=True)
    taken = await occupied(db, environments)
    if taken and not force:
        held = ", ".join(f"{n} {name}" for name, n in taken.items())
        print(f"refusing to import: environments {', '.join(sorted(environments))} already hold {held}.", file=out)
        print("Import into an empty deployment, or give --force to replace what has the same names.", file=out)
        return 1
    # Ids handed out later (and to any colliding document below) stay clear of the imported ones.
    await db["counters"].update_one({"_id": "connections"}, {"$max": {"value": max_id}}, upsert=True)
    written: Counter[str] = Counter()
    for name, doc in reader.documents():
        spec = _BY_NAME[name]
        _rekey(spec, doc, reader.key.cipher, cipher)
        if spec.key_id_field:
            doc[spec.key_id_field] = cipher.current_key_id
        if spec.leased:
            doc["refresh_lease_until"], doc["refresh_lease_owner"] = EPOCH, None
        await _put(db, spec, doc)
        written[name] += 1
        if written[name] % 1000 == 0:
            print(f"  {name}: {written[name]} of {counts[name]}", file=out, flush=True)
    print(f"imported {', '.join(f'{n} {name}' for name, n in written.items()) or 'nothing'}", file=out)
    print("Restart the services so that they read the imported environments.", file=out)
    return 0
