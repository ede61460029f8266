"""``keyway export`` / ``keyway import``: one deployment's data moved into another through an archive."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from keyway_cli.main import run_cli
from keyway_cli.rotate import key_usage
from keyway_shared.cipher import CredentialCipher, generate_key
from keyway_shared.store import (
    ConnectionStore,
    Database,
    EnvironmentStore,
    IntegrationStore,
    WebhookKeyStore,
    ensure_indexes,
)

from .cli_seed import Seeded, seed, settings_for

pytestmark = pytest.mark.mongo

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
async def target(mongo_client: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[tuple[str, Database]]:
    """A second deployment's database, dropped afterwards."""
    name = f"kwtest_{uuid.uuid4().hex[:12]}"
    database = mongo_client[name]
    await ensure_indexes(database)
    yield name, database
    await mongo_client.drop_database(name)


async def _source(client: AsyncMongoClient[dict[str, Any]], db: Database, key: str) -> Seeded:
    cipher = CredentialCipher(current_key=key)
    seeded = await seed(client, db, cipher, connections=12)
    # One connection without metadata, one with metadata set later: both must survive as they are.
    ConnectionStore(client, db, cipher)
    conn = next(iter(seeded.connections.values()))
    await db["connections"].update_one({"connection_id": conn.connection_id}, {"$set": {"metadata": None}})
    conn.metadata = None
    return seeded


def _archive_text(path: Path) -> str:
    with tarfile.open(path, "r:gz") as tar:
        return "".join((tar.extractfile(m) or io.BytesIO()).read().decode() for m in tar.getmembers() if m.isfile())


async def _assert_same_deployment(
    client: AsyncMongoClient[dict[str, Any]], db: Database, key: str, seeded: Seeded
) -> None:
    cipher = CredentialCipher(current_key=key)  # the target's own key, nothing else
    envs = EnvironmentStore(db, cipher)
    for name, expected in seeded.environments.items():
        env = await envs.get(name)
        assert env is not None
        assert {
            "public_key": env.public_key,
            "secret_key": env.secret_key,
            "pending_secret_key": env.pending_secret_key,
            "hmac_key": env.hmac_key,
            "hmac_enabled": env.hmac_enabled,
            "callback_url": env.callback_url,
            "webhooks": env.webhooks,
        } == expected
        found = await envs.by_secret_key(expected["secret_key"])  # the hash the gateway authenticates by
        assert found is not None
        assert found.name == name
        assert await WebhookKeyStore(db, cipher).signing_keys(name) == seeded.signing_keys[name]
    integrations = IntegrationStore(db, cipher)
    for (env_name, unique_key), expected_integration in seeded.integrations.items():
        got = await integrations.get(env_name, unique_key)
        assert got is not None
        for attr in ("provider", "oauth_client_id", "oauth_client_secret", "oauth_scopes", "app_link", "custom"):
            assert getattr(got, attr) == getattr(expected_integration, attr), attr
    store = ConnectionStore(client, db, cipher)
    assert await db["connections"].count_documents({}) == len(seeded.connections)
    for (env_name, pck, cid), expected_conn in seeded.connections.items():
        got_conn = await store.get(env_name, pck, cid)
        assert got_conn is not None
        assert got_conn.credentials.dump() == expected_conn.credentials.dump()
        assert got_conn.connection_config == expected_conn.connection_config
        assert got_conn.metadata == expected_conn.metadata
        assert got_conn.provider == expected_conn.provider
        assert got_conn.auth_mode == expected_conn.auth_mode
        assert got_conn.credentials_expires_at is not None
        assert got_conn.refresh_due_at is not None
    usage = await key_usage(db, cipher)
    assert usage.not_current() == 0


async def test_round_trip_through_a_passphrase_archive(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    target: tuple[str, Database],
    tmp_path: Path,
) -> None:
    source_key, target_key = generate_key(), generate_key()
    seeded = await _source(mongo_client, db, source_key)
    ids_before = {doc["connection_id"]: doc["id"] async for doc in db["connections"].find({})}
    archive = tmp_path / "keyway.tar.gz"
    environ = {"KW_PASSPHRASE": PASSPHRASE}

    out = io.StringIO()
    code = await run_cli(
        ["export", "--out", str(archive), "--passphrase-env", "KW_PASSPHRASE"],
        settings_for(mongo_url, db_name, source_key),
        environ=environ,
        out=out,
    )
    assert code == 0, out.getvalue()
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        manifest = json.loads((tar.extractfile("manifest.json") or io.BytesIO()).read())
    assert names[0] == "manifest.json"
    assert manifest["format"] == "keyway-export"
    assert manifest["version"] == 1
    assert manifest["counts"] == {"environments": 2, "integrations": 4, "connections": 12, "webhook_signing_keys": 2}
    assert manifest["encryption"]["kdf"] == "scrypt"
    assert manifest["encryption"]["n"] >= 2**15
    # Never a secret in clear: not in the archive bytes, not in its decompressed text.
    text = _archive_text(archive)
    secrets = [c.credentials.dump()["access_token"] for c in seeded.connections.values()]
    secrets += [c.credentials.dump()["refresh_token"] for c in seeded.connections.values()]
    secrets += [i.oauth_client_secret or "" for i in seeded.integrations.values()]
    secrets += [e["secret_key"] for e in seeded.environments.values()] + [
        e["hmac_key"] for e in seeded.environments.values()
    ]
    secrets += [k for keys in seeded.signing_keys.values() for k in keys] + ["LS0tLS1CRUdJTg=="]
    leaked = [s for s in secrets if s in text]
    assert not leaked
    assert "sub-user-3" in text  # connection config and metadata travel readable, as stored

    target_name, target_db = target
    # The target was started once (its gateway created dev and prod): that is still empty.
    await EnvironmentStore(target_db, CredentialCipher(current_key=target_key)).ensure("dev")
    out = io.StringIO()
    code = await run_cli(
        ["import", "--in", str(archive), "--passphrase-env", "KW_PASSPHRASE"],
        settings_for(mongo_url, target_name, target_key),
        environ=environ,
        out=out,
    )
    assert code == 0, out.getvalue()
    await _assert_same_deployment(mongo_client, target_db, target_key, seeded)
    assert {doc["connection_id"]: doc["id"] async for doc in target_db["connections"].find({})} == ids_before
    counter = await target_db["counters"].find_one({"_id": "connections"})
    assert counter is not None
    assert counter["value"] >= max(ids_before.values())


async def test_wrong_key_damage_and_a_full_target_write_nothing(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    target: tuple[str, Database],
    tmp_path: Path,
) -> None:
    source_key, target_key, archive_key = generate_key(), generate_key(), generate_key()
    seeded = await _source(mongo_client, db, source_key)
    archive = tmp_path / "keyway.tar.gz"
    environ = {"KW_KEY": archive_key, "KW_OTHER": generate_key(), "KW_PASSPHRASE": PASSPHRASE}
    code = await run_cli(
        ["export", "--out", str(archive), "--key-env", "KW_KEY"],
        settings_for(mongo_url, db_name, source_key),
        environ=environ,
        out=io.StringIO(),
    )
    assert code == 0
    target_name, target_db = target
    settings = settings_for(mongo_url, target_name, target_key)

    async def run_import(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = await run_cli(["import", "--in", str(archive), *argv], settings, environ=environ, out=out)
        return code, out.getvalue()

    code, text = await run_import("--key-env", "KW_OTHER")
    assert code == 2
    assert "does not open this archive" in text
    code, text = await run_import("--passphrase-env", "KW_PASSPHRASE")
    assert code == 2
    assert "encrypted with a key" in text

    # One ciphertext altered inside the archive: caught in the checking pass, before any write.
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            body = (src.extractfile(member) or io.BytesIO()).read()
            if member.name == "connections.jsonl":
                lines = body.decode().splitlines()
                doc = json.loads(lines[5])
                enc = doc["credentials_enc"]
                doc["credentials_enc"] = enc[:-6] + ("AAAA" if enc[-6:-2] != "AAAA" else "BBBB") + enc[-2:]
                lines[5] = json.dumps(doc)
                body = ("\n".join(lines) + "\n").encode()
                member.size = len(body)
            dst.addfile(member, io.BytesIO(body))
    out = io.StringIO()
    code = await run_cli(["import", "--in", str(damaged), "--key-env", "KW_KEY"], settings, environ=environ, out=out)
    assert code == 2, out.getvalue()
    assert "is damaged" in out.getvalue()
    assert await target_db["connections"].count_documents({}) == 0
    assert await target_db["integrations"].count_documents({}) == 0
    not_gzip = tmp_path / "plain.tar.gz"
    not_gzip.write_bytes(gzip.compress(b"not a tar"))
    out = io.StringIO()
    code = await run_cli(["import", "--in", str(not_gzip), "--key-env", "KW_KEY"], settings, environ=environ, out=out)
    assert code == 2

    # A deployment that already holds data is refused, then merged into with --force.
    code, _ = await run_import("--key-env", "KW_KEY")
    assert code == 0
    code, text = await run_import("--key-env", "KW_KEY")
    assert code == 1
    assert "refusing to import" in text
    assert "--force" in text
    code, text = await run_import("--key-env", "KW_KEY", "--force")
    assert code == 0, text
    await _assert_same_deployment(mongo_client, target_db, target_key, seeded)


def test_a_short_passphrase_is_refused(tmp_path: Path) -> None:
    from keyway_cli.archive import ArchiveError, key_from_passphrase

    with pytest.raises(ArchiveError, match="at least 12"):
        key_from_passphrase("short")
