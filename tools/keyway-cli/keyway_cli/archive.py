"""The export archive: a tar.gz of JSON lines with a manifest, secrets under the operator's key.

    manifest.json         {"format": "keyway-export", "version": 1, "created_at", "counts",
                           "collections", "encryption": {"cipher", "kdf", kdf parameters, "check"}}
    environments.jsonl    one MongoDB document per line (extended JSON), then integrations,
    integrations.jsonl    connections and webhook signing keys, in the order the manifest lists
    ...

Every ciphertext in the documents is re-encrypted under the archive key (AES-256-GCM, bound to the
same associated data as in the database), which is a base64 key the operator supplies or is derived
from a passphrase with scrypt. ``check`` is a known text under that key: a wrong passphrase is told
before anything is read, never half-way through an import.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bson import json_util
from bson.json_util import JSONOptions
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from keyway_shared.cipher import CredentialCipher, DecryptionError

__all__ = [
    "FORMAT",
    "VERSION",
    "ArchiveError",
    "ArchiveKey",
    "ArchiveReader",
    "ArchiveWriter",
    "key_from_base64",
    "key_from_passphrase",
]

FORMAT = "keyway-export"
VERSION = 1
_MANIFEST = "manifest.json"
_CHECK_TEXT = b"keyway-export"
_CHECK_AD = b"keyway-export-check"
_READ_OPTIONS = JSONOptions(tz_aware=True, tzinfo=UTC)
MIN_PASSPHRASE = 12


class ArchiveError(Exception):
    """The archive is not one we can read, is damaged, or the key does not open it."""


@dataclass(frozen=True)
class ArchiveKey:
    cipher: CredentialCipher
    params: dict[str, Any]  # how the key was made, without the key: goes into the manifest


def key_from_base64(key_b64: str) -> ArchiveKey:
    try:
        cipher = CredentialCipher(current_key=key_b64.strip())
    except ValueError as exc:
        raise ArchiveError(f"the archive key: {exc}") from None
    return ArchiveKey(cipher, {"cipher": "AES-256-GCM", "kdf": "none"})


def key_from_passphrase(
    passphrase: str, *, salt: bytes | None = None, n: int = 2**17, r: int = 8, p: int = 1
) -> ArchiveKey:
    """scrypt with OWASP's parameters (128 MiB, ~0.5 s): a guessed passphrase costs an attacker as much."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise ArchiveError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    salt = salt if salt is not None else os.urandom(16)
    raw = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    params = {"cipher": "AES-256-GCM", "kdf": "scrypt", "salt": base64.b64encode(salt).decode(), "n": n, "r": r, "p": p}
    return ArchiveKey(CredentialCipher(current_key=base64.b64encode(raw).decode()), params)


def _key_for(encryption: dict[str, Any], *, passphrase: str | None, key_b64: str | None) -> ArchiveKey:
    kdf = encryption.get("kdf")
    if kdf == "scrypt":
        if passphrase is None:
            raise ArchiveError("this archive is encrypted with a passphrase: give --passphrase-env")
        try:
            salt = base64.b64decode(encryption["salt"])
            n, r, p = int(encryption["n"]), int(encryption["r"]), int(encryption["p"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError("the manifest's key derivation parameters are damaged") from exc
        return key_from_passphrase(passphrase, salt=salt, n=n, r=r, p=p)
    if kdf == "none":
        if key_b64 is None:
            raise ArchiveError("this archive is encrypted with a key: give --key-env")
        return key_from_base64(key_b64)
    raise ArchiveError(f"unknown key derivation {kdf!r}")


class ArchiveWriter:
    """Collects the JSON lines in a private temporary folder, then writes the tar.gz, manifest first."""

    def __init__(self, path: Path, key: ArchiveKey, collections: list[str]) -> None:
        self._path = path
        self.key = key
        self._collections = collections
        self._tmp = tempfile.TemporaryDirectory(prefix="keyway-export-")
        self._files: dict[str, IO[str]] = {
            name: open(Path(self._tmp.name) / f"{name}.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
            for name in collections
        }
        self.counts = dict.fromkeys(collections, 0)

    def write(self, collection: str, doc: dict[str, Any]) -> None:
        self._files[collection].write(json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS) + "\n")
        self.counts[collection] += 1

    def finish(self) -> dict[str, Any]:
        for handle in self._files.values():
            handle.close()
        check = self.key.cipher.encrypt(_CHECK_TEXT, associated_data=_CHECK_AD)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "counts": self.counts,
            "collections": self._collections,
            "encryption": self.key.params | {"check": check},
        }
        partial = self._path.with_name(self._path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            body = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(_MANIFEST)
            info.size, info.mode, info.mtime = len(body), 0o600, int(datetime.now(UTC).timestamp())
            tar.addfile(info, io.BytesIO(body))
            for name in self._collections:
                tar.add(Path(self._tmp.name) / f"{name}.jsonl", arcname=f"{name}.jsonl")
        partial.replace(self._path)
        self._tmp.cleanup()
        return manifest

    def abort(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._tmp.cleanup()


class ArchiveReader:
    """Streams an archive: the manifest, then each collection's documents in order (nothing on disk)."""

    def __init__(self, path: Path, *, passphrase: str | None, key_b64: str | None) -> None:
        self._path = path
        self.manifest = self._read_manifest()
        if self.manifest.get("format") != FORMAT:
            raise ArchiveError(f"{path} is not a Keyway export")
        if self.manifest.get("version") != VERSION:
            raise ArchiveError(f"{path} is version {self.manifest.get('version')}; this Keyway reads version {VERSION}")
        encryption = self.manifest.get("encryption") or {}
        self.key = _key_for(encryption, passphrase=passphrase, key_b64=key_b64)
        try:
            if self.key.cipher.decrypt(str(encryption.get("check")), associated_data=_CHECK_AD) != _CHECK_TEXT:
                raise DecryptionError("wrong check value")
        except DecryptionError:
            raise ArchiveError("the passphrase or key does not open this archive") from None

    def _open(self) -> tarfile.TarFile:
        try:
            return tarfile.open(self._path, mode="r|gz")
        except (OSError, tarfile.TarError) as exc:
            raise ArchiveError(f"{self._path}: not a readable tar.gz ({exc})") from None

    def _read_manifest(self) -> dict[str, Any]:
        with self._open() as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None and member.name == _MANIFEST else None
            if handle is None:
                raise ArchiveError(f"{self._path} has no manifest first")
            try:
                manifest = json.loads(handle.read())
            except ValueError as exc:
                raise ArchiveError("the manifest is not JSON") from exc
        if not isinstance(manifest, dict):
            raise ArchiveError("the manifest is not a JSON object")
        return manifest

    def documents(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every ``(collection, document)``, in archive order; damage raises ArchiveError."""
        wanted = {f"{name}.jsonl": name for name in self.manifest.get("collections", [])}
        try:
            with self._open() as tar:
                for member in tar:
                    collection = wanted.get(member.name)
                    handle = tar.extractfile(member) if collection and member.isfile() else None
                    if collection is None or handle is None:
                        continue
                    for number, line in enumerate(handle, start=1):
                        try:
                            doc = json_util.loads(line, json_options=_READ_OPTIONS)
                        except ValueError as exc:
                            raise ArchiveError(f"{member.name} line {number} is not JSON") from exc
                        if not isinstance(doc, dict):
                            raise ArchiveError(f"{member.name} line {number} is not a document")
                        yield collection, doc
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise ArchiveError(f"{self._path} is damaged ({exc})") from None
