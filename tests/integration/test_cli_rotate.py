"""``keyway keys rotate`` / ``keyway keys status`` against the real MongoDB-wire server, with writers running."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from auth_gateway.operations.flow_sessions import OAuthSessionStore
from keyway_cli.main import run_cli
from keyway_cli.rotate import Rotator, key_usage
from keyway_shared.cipher import CredentialCipher, DecryptionError, generate_key
from keyway_shared.store import (
    ConnectionStore,
    Database,
    EnvironmentStore,
    IntegrationStore,
    RefreshStateStore,
    WebhookKeyStore,
)
from keyway_shared.store.encrypted_fields import ENCRYPTED_COLLECTIONS

from .cli_seed import Seeded, connection_event, oauth2, seed, settings_for

pytestmark = pytest.mark.mongo

CONNECTIONS = ENCRYPTED_COLLECTIONS[2]
assert CONNECTIONS.name == "connections"


@pytest.fixture
def old_key() -> str:
    return generate_key()


@pytest.fixture
def new_key() -> str:
    return generate_key()


async def _assert_everything_reads_with_only(
    key: str, client: AsyncMongoClient[dict[str, Any]], db: Database, seeded: Seeded, latest: dict[Any, Any]
) -> None:
    """Each secret decrypts with the new key alone and holds its last written value."""
    only_new = CredentialCipher(current_key=key)
    envs = EnvironmentStore(db, only_new)
    for name, expected in seeded.environments.items():
        env = await envs.get(name)
        assert env is not None
        assert env.secret_key == expected["secret_key"]
        assert env.pending_secret_key == expected["pending_secret_key"]
        assert env.hmac_key == expected["hmac_key"]
        assert await WebhookKeyStore(db, only_new).signing_keys(name) == seeded.signing_keys[name]
    integrations = IntegrationStore(db, only_new)
    for (env_name, unique_key), expected_integration in seeded.integrations.items():
        found = await integrations.get(env_name, unique_key)
        assert found is not None
        assert found.oauth_client_secret == expected_integration.oauth_client_secret
        assert found.custom == expected_integration.custom
    store = ConnectionStore(client, db, only_new)
    assert await db["connections"].count_documents({}) == len(latest)
    for (env_name, pck, cid), credentials in latest.items():
        conn = await store.get(env_name, pck, cid)
        assert conn is not None, cid
        assert conn.credentials.dump() == credentials, cid
    session, state = await OAuthSessionStore(db, only_new).take(seeded.oauth_session_id)
    assert state == "ok"
    assert session is not None
    assert session.secrets == {"code_verifier": "verifier-0123456789"}


async def test_rotation_under_load_loses_nothing(
    mongo_client: AsyncMongoClient[dict[str, Any]], db: Database, old_key: str, new_key: str
) -> None:
    """Connections are created, re-authorized, refreshed and read while the rotation runs; afterwards
    every secret reads with the new key alone and equals its last written value."""
    before = CredentialCipher(current_key=old_key)
    seeded = await seed(mongo_client, db, before, connections=240)
    latest: dict[tuple[str, str, str], dict[str, Any]] = {
        k: c.credentials.dump() for k, c in seeded.connections.items()
    }
    # The services were restarted with the new key first: they write with it and still read the old one.
    during = CredentialCipher(current_key=new_key, old_keys=[old_key])
    store = ConnectionStore(mongo_client, db, during)
    refresh_state = RefreshStateStore(mongo_client, db, during)
    keys = sorted(latest)
    reauthorized, refreshed = keys[:60], keys[60:120]  # disjoint: a refresh may only lose to a reconnect
    stop = asyncio.Event()
    work: dict[str, int] = {"created": 0, "reauthorized": 0, "refreshed": 0, "refresh_lost": 0, "read": 0}

    async def creator() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 2:
                conn = oauth2(f"new-{n}", f"gho_new_{n}")
                work["created"] += 1
            else:
                env_name, _, cid = random.choice(reauthorized)
                conn = oauth2(cid, f"gho_reauth_{n}", env=env_name)
                work["reauthorized"] += 1
            await store.save_with_event(conn, lambda created, c=conn: connection_event(c, created))
            latest[(conn.environment, conn.provider_config_key, conn.connection_id)] = conn.credentials.dump()
            await asyncio.sleep(0)

    async def refresher() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            env_name, pck, cid = random.choice(refreshed)
            key = {"environment": env_name, "provider_config_key": pck, "connection_id": cid}
            if not await refresh_state.acquire(key, owner="test-refresher", lease=timedelta(seconds=30)):
                continue
            try:
                found = await refresh_state.read(key)
                assert found is not None
                conn, state = found
                await asyncio.sleep(0.005)  # the provider's token endpoint
                credentials = conn.credentials.with_fields(access_token=f"gho_refreshed_{n}")
                row = await refresh_state.save_refreshed(
                    key,
                    conn,
                    expected_ciphertext=state.ciphertext,
                    credentials=credentials,
                    expires_at=conn.credentials_expires_at,
                    due=None,
                    event=connection_event(conn, False),
                )
                if row is None:
                    work["refresh_lost"] += 1
                else:
                    latest[(env_name, pck, cid)] = credentials.dump()
                    work["refreshed"] += 1
            finally:
                await refresh_state.release(key, owner="test-refresher")

    async def reader() -> None:
        while not stop.is_set():
            env_name, pck, cid = random.choice(keys)
            conn = await store.get(env_name, pck, cid)  # raises if a ciphertext were ever unreadable
            assert conn is not None
            assert conn.credentials.dump()["type"] == "OAUTH2"
            work["read"] += 1
            await asyncio.sleep(0)

    workers = [asyncio.create_task(w()) for w in (creator, refresher, reader, reader)]
    await asyncio.sleep(0.2)
    out = io.StringIO()
    rotator = Rotator(db, during, out=out, batch_size=40, concurrency=8)
    status = await rotator.run(max_wait=60, retry_interval=0.2)
    stop.set()
    await asyncio.gather(*workers)

    assert status == 0, out.getvalue()
    assert work["refresh_lost"] == 0, "a refresh lost its compare-and-swap to the rotation"
    assert min(work["created"], work["reauthorized"], work["refreshed"], work["read"]) > 3, work
    usage = await key_usage(db, during)
    assert usage.not_current() == 0, usage
    assert {kid for counts in usage.collections.values() for kid in counts} == {during.current_key_id}
    await _assert_everything_reads_with_only(new_key, mongo_client, db, seeded, latest)
    assert "re-encrypted" in out.getvalue()
    assert "done: every stored secret uses key" in out.getvalue()


async def test_a_write_underneath_is_read_again_not_overwritten(
    mongo_client: AsyncMongoClient[dict[str, Any]], db: Database, old_key: str, new_key: str
) -> None:
    stale_replica = CredentialCipher(current_key=old_key)
    store = ConnectionStore(mongo_client, db, stale_replica)
    first = oauth2("user-1", "gho_first")
    await store.save_with_event(first, lambda created: connection_event(first, created))
    read = await db["connections"].find_one({"connection_id": "user-1"}, CONNECTIONS.projection())
    assert read is not None
    # A replica still on the old key re-authorizes between the rotation's read and its swap.
    second = oauth2("user-1", "gho_second")
    await store.save_with_event(second, lambda created: connection_event(second, created))
    rotator = Rotator(db, CredentialCipher(current_key=new_key, old_keys=[old_key]), out=io.StringIO())
    assert await rotator.rotate_document(CONNECTIONS, read) == "rotated"
    assert rotator.retries == 1
    conn = await ConnectionStore(mongo_client, db, CredentialCipher(current_key=new_key)).get("dev", "github", "user-1")
    assert conn is not None
    assert conn.credentials.dump()["access_token"] == "gho_second"


async def test_a_leased_connection_waits_for_its_refresh(
    mongo_client: AsyncMongoClient[dict[str, Any]], db: Database, old_key: str, new_key: str
) -> None:
    during = CredentialCipher(current_key=new_key, old_keys=[old_key])
    conn = oauth2("user-1", "gho_before")
    await ConnectionStore(mongo_client, db, CredentialCipher(current_key=old_key)).save_with_event(
        conn, lambda created: connection_event(conn, created)
    )
    state_store = RefreshStateStore(mongo_client, db, during)
    key = {"environment": "dev", "provider_config_key": "github", "connection_id": "user-1"}
    assert await state_store.acquire(key, owner="refresher-1", lease=timedelta(seconds=30))
    found = await state_store.read(key)
    assert found is not None
    read_conn, state = found
    rotator = Rotator(db, during, out=io.StringIO())
    doc = await db["connections"].find_one(key, CONNECTIONS.projection())
    assert doc is not None
    assert await rotator.rotate_document(CONNECTIONS, doc) == "busy"
    # The refresher's swap, against what it read before the rotation looked, still wins.
    refreshed = read_conn.credentials.with_fields(access_token="gho_after")
    row = await state_store.save_refreshed(
        key,
        read_conn,
        expected_ciphertext=state.ciphertext,
        credentials=refreshed,
        expires_at=None,
        due=None,
        event=connection_event(read_conn, False),
    )
    assert row is not None
    await state_store.release(key, owner="refresher-1")
    assert await rotator.run(max_wait=5) == 0
    only_new = ConnectionStore(mongo_client, db, CredentialCipher(current_key=new_key))
    got = await only_new.get("dev", "github", "user-1")
    assert got is not None
    assert got.credentials.dump()["access_token"] == "gho_after"


async def test_rotation_resumes_and_status_reports_per_key(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    old_key: str,
    new_key: str,
) -> None:
    await seed(mongo_client, db, CredentialCipher(current_key=old_key), connections=30)
    during = CredentialCipher(current_key=new_key, old_keys=[old_key])
    old_id = CredentialCipher(current_key=old_key).current_key_id
    settings = settings_for(mongo_url, db_name, new_key, old_key)

    out = io.StringIO()
    assert await run_cli(["keys", "status", "--check"], settings, out=out) == 1
    assert f"connections            {old_id}" in out.getvalue()
    assert "keep the old keys" in out.getvalue()

    # An interrupted rotation: one batch of connections done, then the process died.
    rotator = Rotator(db, during, out=io.StringIO(), batch_size=10)
    docs = await db["connections"].find({}, CONNECTIONS.projection()).sort("_id", 1).limit(10).to_list()
    for doc in docs:
        assert await rotator.rotate_document(CONNECTIONS, doc) == "rotated"
    usage = await key_usage(db, during)
    assert usage.collections["connections"] == {old_id: 20, during.current_key_id: 10}

    out = io.StringIO()
    assert await run_cli(["keys", "rotate", "--batch-size", "7"], settings, out=out) == 0, out.getvalue()
    assert "re-encrypting" in out.getvalue()
    out = io.StringIO()
    assert await run_cli(["keys", "status", "--json", "--check"], settings, out=out) == 0
    report = json.loads(out.getvalue())
    assert report["not_current"] == 0
    assert set(report["collections"]) == {spec.name for spec in ENCRYPTED_COLLECTIONS}
    assert report["collections"]["connections"] == {during.current_key_id: 30}
    # secret, HMAC, pending secret and webhook signing key, for each of the two environments
    assert report["collections"]["environments"] == {during.current_key_id: 8}


async def test_refuses_when_a_key_in_use_is_not_configured(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    old_key: str,
    new_key: str,
) -> None:
    await seed(mongo_client, db, CredentialCipher(current_key=old_key), connections=3)
    before = [doc async for doc in db["connections"].find({}).sort("_id", 1)]
    out = io.StringIO()
    assert await run_cli(["keys", "rotate"], settings_for(mongo_url, db_name, new_key), out=out) == 2
    assert "not configured" in out.getvalue()
    assert "KEYWAY_ENCRYPTION_KEYS_OLD" in out.getvalue()
    assert [doc async for doc in db["connections"].find({}).sort("_id", 1)] == before
    with pytest.raises(DecryptionError):
        CredentialCipher(current_key=new_key).decrypt(before[0]["credentials_enc"])


def test_the_console_script_runs(mongo_url: str, db_name: str, db: Database, new_key: str) -> None:
    """`keyway` is installed by `uv sync` and reads its settings from the environment like the services."""
    script = Path(sys.executable).with_name("keyway")
    env = {**os.environ, "MONGODB_URL": mongo_url, "MONGODB_DATABASE": db_name, "KEYWAY_ENCRYPTION_KEY": new_key}
    done = subprocess.run(
        [str(script), "keys", "status", "--json"], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["current_key_id"] == CredentialCipher(current_key=new_key).current_key_id
    assert report["not_current"] == 0
