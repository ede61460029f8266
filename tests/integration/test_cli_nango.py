"""``keyway import-nango`` against a Nango-shaped database the test builds in the local PostgreSQL.

Rows are encrypted exactly as Nango's encryption manager does (AES-256-GCM, 12-byte IV, ciphertext
and tag as separate base64 strings), in a schema of its own that is dropped afterwards. Two schema
generations: Nango 0.39 to 0.42 (keys on the environments; built here) and v0.71 (keys in
``api_secrets`` and ``customer_keys``, end users, tags, webhook URL overrides; ``nango_db.py``), and
the one between them (``api_secrets`` only, the override still in ``connection_config``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from pymongo import AsyncMongoClient

from auth_gateway.api.connection_shape import full_connection_json
from auth_gateway.http.serialize import connection_json
from keyway_cli.main import run_cli
from keyway_shared.cipher import CredentialCipher, generate_key
from keyway_shared.store import ConnectionStore, Database, EnvironmentStore, IntegrationStore, WebhookSettings
from keyway_shared.store.connection_labels import ConnectionListQuery, list_connection_documents

from .cli_seed import settings_for
from .gateway_app import StartGateway
from .nango_db import CURRENT_DDL, FUTURE, NANGO_KEY, PG_URL, CurrentSeed, fill_current, insert, nango_encrypt
from .nango_db import OAUTH2 as CURRENT_OAUTH2

pytestmark = [pytest.mark.mongo, pytest.mark.postgres]

DDL = """
CREATE TABLE {s}._nango_environments (
  id serial PRIMARY KEY, uuid uuid, name varchar(255) NOT NULL, account_id integer NOT NULL,
  secret_key varchar(255) NOT NULL, public_key varchar(255), secret_key_iv varchar(255), secret_key_tag varchar(255),
  secret_key_hashed varchar(255), callback_url varchar(255), webhook_url varchar(255), webhook_url_secondary varchar(255),
  websockets_path varchar(255), hmac_enabled boolean DEFAULT false, hmac_key varchar(255),
  always_send_webhook boolean DEFAULT false, send_auth_webhook boolean DEFAULT false,
  slack_notifications boolean DEFAULT false, pending_secret_key varchar(255), pending_secret_key_iv varchar(255),
  pending_secret_key_tag varchar(255), pending_public_key varchar(255),
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE {s}._nango_external_webhooks (
  id serial PRIMARY KEY, environment_id integer NOT NULL UNIQUE, primary_url varchar(255), secondary_url varchar(255),
  on_sync_completion_always boolean DEFAULT false, on_auth_creation boolean DEFAULT false,
  on_auth_refesh_error boolean DEFAULT false, on_sync_error boolean DEFAULT false,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE {s}._nango_configs (
  id serial PRIMARY KEY, unique_key varchar(255) NOT NULL, provider varchar(255) NOT NULL,
  oauth_client_id text, oauth_client_secret text, oauth_scopes text, environment_id integer NOT NULL,
  oauth_client_secret_iv varchar(255), oauth_client_secret_tag varchar(255), app_link text, custom jsonb,
  deleted boolean DEFAULT false, deleted_at timestamptz,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE {s}._nango_connections (
  id serial PRIMARY KEY, connection_id varchar(255) NOT NULL, provider_config_key varchar(255) NOT NULL,
  environment_id integer NOT NULL, config_id integer, connection_config jsonb DEFAULT '{{}}', metadata jsonb,
  credentials jsonb, credentials_iv varchar(255), credentials_tag varchar(255), last_fetched_at timestamptz,
  deleted boolean DEFAULT false, deleted_at timestamptz,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
"""

DEV_SECRET, DEV_PUBLIC = str(uuid.uuid4()), str(uuid.uuid4())
DEV_PENDING_SECRET, DEV_PENDING_PUBLIC = str(uuid.uuid4()), str(uuid.uuid4())
PROD_SECRET, PROD_PUBLIC = str(uuid.uuid4()), str(uuid.uuid4())
PRIVATE_KEY_B64 = base64.b64encode(
    b"-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----\n"
).decode()

OAUTH2 = {
    "type": "OAUTH2",
    "access_token": "gho_nango_access_1",
    "refresh_token": "ghr_nango_refresh_1",
    "expires_at": FUTURE.isoformat().replace("+00:00", ".000Z"),
    "raw": {
        "access_token": "gho_nango_access_1",
        "refresh_token": "ghr_nango_refresh_1",
        "expires_in": 28800,
        "token_type": "bearer",
    },
}
API_KEY = {"type": "API_KEY", "apiKey": "phx_nango_key"}
APP = {
    "type": "APP",
    "access_token": "ghs_install_token",
    "expires_at": FUTURE.isoformat().replace("+00:00", ".000Z"),
    "raw": {"token": "ghs_install_token"},
}
PLAIN_OAUTH2 = {
    "type": "OAUTH2",
    "access_token": "gho_before_encryption",
    "raw": {"access_token": "gho_before_encryption"},
}
CREATED = datetime(2024, 3, 8, 9, 43, 3, 725000, tzinfo=UTC)


@pytest.fixture
async def nango() -> AsyncIterator[tuple[str, psycopg.AsyncConnection[Any]]]:
    """A Nango database of its own: a fresh schema in the local PostgreSQL, dropped afterwards."""
    schema = f"nango_{uuid.uuid4().hex[:12]}"
    conn = await psycopg.AsyncConnection.connect(PG_URL, autocommit=True)
    s = sql.Identifier(schema)
    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
    try:
        await conn.execute(sql.SQL(DDL).format(s=s))  # type: ignore[arg-type]
        await _fill(conn, s)
        yield schema, conn
    finally:
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
        await conn.close()


async def _fill(conn: psycopg.AsyncConnection[Any], s: sql.Identifier) -> None:
    secret, iv, tag = nango_encrypt(DEV_SECRET)
    pending, piv, ptag = nango_encrypt(DEV_PENDING_SECRET)
    dev = await insert(conn, s, "_nango_environments", {
        "name": "dev", "account_id": 0, "secret_key": secret, "secret_key_iv": iv, "secret_key_tag": tag,
        "public_key": DEV_PUBLIC, "callback_url": "https://app.example.com/oauth/callback", "hmac_enabled": True,
        "hmac_key": "nango-hmac-key", "pending_secret_key": pending, "pending_secret_key_iv": piv,
        "pending_secret_key_tag": ptag, "pending_public_key": DEV_PENDING_PUBLIC,
    })  # fmt: skip
    # prod was created before NANGO_ENCRYPTION_KEY was set: its secret key is plain, its webhooks pre-v0.40.
    prod = await insert(conn, s, "_nango_environments", {
        "name": "prod", "account_id": 0, "secret_key": PROD_SECRET, "public_key": PROD_PUBLIC,
        "webhook_url": "https://hooks.example.com/prod", "send_auth_webhook": True,
    })  # fmt: skip
    await insert(conn, s, "_nango_external_webhooks", {
        "environment_id": dev, "primary_url": "https://hooks.example.com/dev", "secondary_url": "https://backup.example.com/dev",
        "on_auth_creation": True, "on_auth_refesh_error": True,
    })  # fmt: skip
    configs = {}
    for env_id, unique_key, provider, client_secret, custom in (
        (dev, "github", "github", "gh-client-secret", None),
        (
            dev,
            "github-app-oauth",
            "github-app-oauth",
            "app-client-secret",
            {"app_id": "4242", "private_key": PRIVATE_KEY_B64},
        ),
        (dev, "posthog", "posthog", None, None),
        (prod, "github", "github", "gh-prod-secret", None),
    ):
        row: dict[str, Any] = {"environment_id": env_id, "unique_key": unique_key, "provider": provider,
                               "oauth_client_id": f"id-{unique_key}", "oauth_scopes": "repo,user"}  # fmt: skip
        if client_secret:
            row["oauth_client_secret"], row["oauth_client_secret_iv"], row["oauth_client_secret_tag"] = nango_encrypt(
                client_secret
            )
        if custom:
            value, civ, ctag = nango_encrypt(json.dumps(custom))
            row["custom"] = {"encryptedValue": value, "iv": civ, "authTag": ctag}
            row["app_link"] = "https://github.com/apps/acme"
        configs[(env_id, unique_key)] = await insert(conn, s, "_nango_configs", row)
    gone = await insert(
        conn, s, "_nango_configs", {"environment_id": dev, "unique_key": "old", "provider": "github", "deleted": True}
    )

    async def connection(env_id: int, key: str, cid: str, creds: dict[str, Any], **extra: Any) -> None:
        enc, civ, ctag = nango_encrypt(json.dumps(creds))
        row = {"environment_id": env_id, "provider_config_key": key, "connection_id": cid,
               "config_id": configs.get((env_id, key), gone), "credentials": {"encrypted_credentials": enc},
               "credentials_iv": civ, "credentials_tag": ctag, "created_at": CREATED} | extra  # fmt: skip
        await insert(conn, s, "_nango_connections", row)

    await connection(dev, "github", "user-1", OAUTH2, metadata={"plan": "pro"}, connection_config={"org": "acme"},
                     last_fetched_at=CREATED + timedelta(days=1))  # fmt: skip
    await connection(dev, "posthog", "user-2", API_KEY, connection_config={"subdomain": "eu"})
    await connection(
        dev, "github-app-oauth", "user-3", APP, connection_config={"installation_id": "99", "app_id": "4242"}
    )
    await connection(dev, "github", "user-deleted", OAUTH2, deleted=True)
    await connection(dev, "old", "orphan", OAUTH2)
    await connection(
        prod, "github", "prod-1", PLAIN_OAUTH2, credentials=PLAIN_OAUTH2, credentials_iv=None, credentials_tag=None
    )


async def _import(settings: Any, schema: str, *extra: str, key: str = NANGO_KEY) -> tuple[int, str]:
    out = io.StringIO()
    argv = ["import-nango", "--postgres-url", PG_URL, "--schema", schema, *extra]
    code = await run_cli(argv, settings, environ={"NANGO_ENCRYPTION_KEY": key}, out=out)
    return code, out.getvalue()


async def test_a_nango_deployment_moves_across(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    nango: tuple[str, Any],
) -> None:
    schema, _ = nango
    key = generate_key()
    settings = settings_for(mongo_url, db_name, key)

    code, text = await _import(settings, schema, key=base64.b64encode(os.urandom(32)).decode())
    assert code == 2, text
    assert "cannot be decrypted" in text
    code, text = await _import(settings, schema, "--dry-run")
    assert code == 0, text
    assert "4 integrations" in text
    assert "5 connections (1 without a live integration" in text
    assert await db["connections"].count_documents({}) == 0
    assert await db["environments"].count_documents({}) == 0

    code, text = await _import(settings, schema)
    assert code == 0, text
    cipher = CredentialCipher(current_key=key)

    envs = EnvironmentStore(db, cipher)
    dev, prod = await envs.get("dev"), await envs.get("prod")
    assert dev is not None
    assert prod is not None
    assert (dev.public_key, dev.secret_key) == (DEV_PUBLIC, DEV_SECRET)
    # webhooks keep the key their receivers verify X-Nango-Hmac-Sha256 with
    assert (dev.webhook_signing_key, prod.webhook_signing_key) == (DEV_SECRET, PROD_SECRET)
    assert (dev.pending_public_key, dev.pending_secret_key) == (DEV_PENDING_PUBLIC, DEV_PENDING_SECRET)
    assert dev.callback_url == "https://app.example.com/oauth/callback"
    assert (dev.hmac_enabled, dev.hmac_key) == (True, "nango-hmac-key")
    assert dev.webhooks == WebhookSettings(
        primary_url="https://hooks.example.com/dev", secondary_url="https://backup.example.com/dev",
        on_auth_creation=True, on_auth_refresh_error=True,
    )  # fmt: skip
    assert (prod.public_key, prod.secret_key, prod.hmac_enabled, prod.callback_url) == (
        PROD_PUBLIC,
        PROD_SECRET,
        False,
        None,
    )
    assert prod.webhooks.primary_url == "https://hooks.example.com/prod"
    assert prod.webhooks.on_auth_creation
    # The apps' secret keys authenticate against Keyway as they did against Nango.
    for secret, name in ((DEV_SECRET, "dev"), (DEV_PENDING_SECRET, "dev"), (PROD_SECRET, "prod")):
        found = await envs.by_secret_key(secret)
        assert found is not None
        assert found.name == name
    found_public = await envs.by_public_key(DEV_PUBLIC)
    assert found_public is not None
    assert found_public.name == "dev"

    integrations = IntegrationStore(db, cipher)
    assert [i.unique_key for i in await integrations.list("dev")] == ["github", "github-app-oauth", "posthog"]
    github = await integrations.get("dev", "github")
    assert github is not None
    assert (github.provider, github.oauth_client_id, github.oauth_client_secret, github.oauth_scopes) == (
        "github", "id-github", "gh-client-secret", "repo,user",
    )  # fmt: skip
    app = await integrations.get("dev", "github-app-oauth")
    assert app is not None
    assert app.oauth_client_secret == "app-client-secret"
    assert app.custom == {"app_id": "4242", "private_key": PRIVATE_KEY_B64}
    assert app.app_link == "https://github.com/apps/acme"
    posthog = await integrations.get("dev", "posthog")
    assert posthog is not None
    assert posthog.oauth_client_secret is None
    assert posthog.custom == {}
    prod_github = await integrations.get("prod", "github")
    assert prod_github is not None
    assert prod_github.oauth_client_secret == "gh-prod-secret"

    store = ConnectionStore(mongo_client, db, cipher)
    assert await db["connections"].count_documents({}) == 4  # not the deleted one, not the orphan
    user1 = await store.get("dev", "github", "user-1")
    assert user1 is not None
    assert user1.credentials.dump() == OAUTH2  # exactly Nango's shape
    assert (user1.provider, user1.auth_mode, user1.metadata, user1.connection_config) == (
        "github", "OAUTH2", {"plan": "pro"}, {"org": "acme"},
    )  # fmt: skip
    assert user1.created_at == CREATED
    assert user1.last_fetched_at == CREATED + timedelta(days=1)
    assert user1.credentials_expires_at == FUTURE
    assert user1.refresh_due_at == FUTURE - timedelta(minutes=15)
    # What GET /connection/user-1 answers (without refresh_token=true): Nango's body.
    body = connection_json(user1, include_refresh_token=False, fetched_at=None)
    assert body["credentials"] == {
        "type": "OAUTH2", "access_token": "gho_nango_access_1", "expires_at": OAUTH2["expires_at"],
        "raw": {"access_token": "gho_nango_access_1", "expires_in": 28800, "token_type": "bearer"},
    }  # fmt: skip
    assert body["created_at"] == "2024-03-08T09:43:03.725Z"
    assert body["metadata"] == {"plan": "pro"}
    user2 = await store.get("dev", "posthog", "user-2")
    assert user2 is not None
    assert user2.credentials.dump() == API_KEY
    assert user2.auth_mode == "API_KEY"
    assert user2.connection_config == {"subdomain": "eu"}
    assert user2.metadata is None
    assert user2.refresh_due_at is None
    user3 = await store.get("dev", "github-app-oauth", "user-3")
    assert user3 is not None
    assert user3.credentials.dump() == APP
    assert user3.auth_mode == "CUSTOM"
    assert user3.credentials_expires_at == FUTURE
    prod1 = await store.get("prod", "github", "prod-1")
    assert prod1 is not None
    assert prod1.credentials.dump() == PLAIN_OAUTH2
    assert prod1.credentials_expires_at is None
    assert await store.get("dev", "github", "user-deleted") is None
    assert await store.get("dev", "old", "orphan") is None
    assert await db["outbox"].count_documents({}) == 0  # a migration announces nothing

    code, text = await _import(settings, schema)
    assert code == 1
    assert "refusing to import" in text
    code, text = await _import(settings, schema, "--force")
    assert code == 0, text
    assert await db["connections"].count_documents({}) == 4


async def test_one_environment_and_a_tolerant_reader(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    nango: tuple[str, Any],
) -> None:
    schema, conn = nango
    # An older Nango: no config_id on connections, no external-webhooks table.
    await conn.execute(
        sql.SQL("ALTER TABLE {}._nango_connections DROP COLUMN config_id").format(sql.Identifier(schema))
    )
    await conn.execute(sql.SQL("DROP TABLE {}._nango_external_webhooks").format(sql.Identifier(schema)))
    key = generate_key()
    code, text = await _import(settings_for(mongo_url, db_name, key), schema, "--environment", "dev")
    assert code == 0, text
    assert await db["environments"].distinct("_id") == ["dev"]
    dev = await EnvironmentStore(db, CredentialCipher(current_key=key)).get("dev")
    assert dev is not None
    assert dev.webhooks.primary_url is None
    assert not dev.webhooks.on_auth_creation
    store = ConnectionStore(mongo_client, db, CredentialCipher(current_key=key))
    assert sorted([d["connection_id"] async for d in db["connections"].find({})]) == ["user-1", "user-2", "user-3"]
    user3 = await store.get("dev", "github-app-oauth", "user-3")
    assert user3 is not None
    assert user3.credentials.dump() == APP

    code, text = await _import(settings_for(mongo_url, db_name, key), schema, "--environment", "staging")
    assert code == 2
    assert "no environment staging" in text
    code, text = await _import(settings_for(mongo_url, db_name, key), "not_a_schema")
    assert code == 2
    assert "no table not_a_schema._nango_environments" in text


@pytest.fixture
async def nango_current() -> AsyncIterator[tuple[str, psycopg.AsyncConnection[Any], CurrentSeed]]:
    """A Nango v0.71 database of its own (``nango_db.CURRENT_DDL``), dropped afterwards."""
    schema = f"nango_{uuid.uuid4().hex[:12]}"
    conn = await psycopg.AsyncConnection.connect(PG_URL, autocommit=True)
    s = sql.Identifier(schema)
    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
    try:
        await conn.execute(sql.SQL(CURRENT_DDL).format(s=s))  # type: ignore[arg-type]
        yield schema, conn, await fill_current(conn, s)
    finally:
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))
        await conn.close()


C1_END_USER = {
    "id": "user-42",
    "email": "ada@acme.example",
    "display_name": "Ada",
    "tags": {"plan": "pro"},
    "organization": {"id": "org-1", "display_name": "Acme"},
}
C1_TAGS = {"end_user_id": "user-42", "organization_id": "org-1", "team": "growth"}


async def test_a_current_nango_moves_across(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    nango_current: tuple[str, Any, CurrentSeed],
) -> None:
    schema, conn, seed = nango_current
    k = seed.keys
    key = generate_key()
    settings = settings_for(mongo_url, db_name, key)

    code, text = await _import(settings, schema, "--dry-run")
    assert code == 0, text
    assert "environments dev, prod; 4 integrations; 4 connections (0 without a live integration" in text
    assert (
        "warning: environment dev: API key 'CI' had the scopes environment:connections:list; here it has full access"
        in text
    )
    assert "warning: environment prod: API keys not brought across (Keyway holds two per environment): 'Backup'" in text
    for env in ("dev", "prod"):
        assert (
            f"warning: environment {env}: API keys shared with other environments, not brought across: 'Both'" in text
        )
    assert "integrations on Nango's shared OAuth app, to give their own client id and secret: dev/slack" in text
    assert all(secret not in text for secret in vars(k).values())  # names the keys, never shows them
    assert await db["environments"].count_documents({}) == 0

    code, text = await _import(settings, schema)
    assert code == 0, text
    cipher = CredentialCipher(current_key=key)
    envs = EnvironmentStore(db, cipher)
    dev, prod = await envs.get("dev"), await envs.get("prod")
    assert dev is not None
    assert prod is not None
    assert await envs.get("staging") is None  # deleted in Nango
    # dev came through Nango's backfill: one key is its API key and its signing key; its read-only key
    # authenticates too (with full access, as the warning said).
    assert (dev.secret_key, dev.pending_secret_key, dev.webhook_signing_key) == (k.dev, k.dev_ci, k.dev)
    assert (dev.public_key, dev.pending_public_key) == (k.dev_public, k.dev_pending_public)
    # prod was created on v0.71: its API keys and its signing key, not the stale column nor the runners' secret.
    assert (prod.secret_key, prod.pending_secret_key, prod.webhook_signing_key) == (
        k.prod_first,
        k.prod_second,
        k.prod_signing,
    )
    assert prod.public_key == k.prod_public
    for secret, name in ((k.dev, "dev"), (k.dev_ci, "dev"), (k.prod_first, "prod"), (k.prod_second, "prod")):
        found = await envs.by_secret_key(secret)
        assert found is not None
        assert found.name == name
    for refused in (k.dev_revoked, k.dev_internal_pending, k.prod_stale, k.prod_internal, k.prod_third, k.shared):
        assert await envs.by_secret_key(refused) is None
    assert await envs.by_secret_key(k.account_level) is None
    assert (dev.callback_url, dev.hmac_enabled, dev.hmac_key) == (
        "https://app.example.com/callback",
        True,
        "current-hmac",
    )
    assert dev.webhooks == WebhookSettings(
        primary_url="https://hooks.example.com/dev", on_auth_creation=True, on_auth_refresh_error=True
    )

    integrations = IntegrationStore(db, cipher)
    assert [i.unique_key for i in await integrations.list("dev")] == ["github", "posthog", "slack"]
    github = await integrations.get("dev", "github")
    assert github is not None
    assert (github.display_name, github.forward_webhooks, github.oauth_client_secret) == (
        "GitHub (Acme)", False, "gh-current-secret",
    )  # fmt: skip
    posthog = await integrations.get("dev", "posthog")
    assert posthog is not None
    assert (posthog.display_name, posthog.forward_webhooks) == (None, True)
    prod_github = await integrations.get("prod", "github")
    assert prod_github is not None
    assert prod_github.oauth_client_secret == "gh-prod-current"

    store = ConnectionStore(mongo_client, db, cipher)
    assert await db["connections"].count_documents({}) == 4  # not the deleted one
    c1 = await store.get("dev", "github", "c-1")
    assert c1 is not None
    assert c1.credentials.dump() == CURRENT_OAUTH2
    assert (c1.end_user, c1.tags, c1.webhook_url_override) == (C1_END_USER, C1_TAGS, "https://hooks.example.com/c1")
    assert c1.metadata == {"seats": 3}
    # What GET /connections/c-1 answers: Nango's ApiEndUser, the tags, the override.
    body = full_connection_json(c1, include_refresh_token=False)
    assert body["end_user"] == C1_END_USER
    assert (body["tags"], body["webhook_url_override"]) == (C1_TAGS, "https://hooks.example.com/c1")
    assert body["created_at"] == "2026-05-04T10:11:12.345+00:00"
    c2 = await store.get("dev", "posthog", "c-2")
    assert c2 is not None
    assert (c2.end_user, c2.tags, c2.webhook_url_override) == ({"id": "user-43"}, {"end_user_id": "user-43"}, None)
    c3 = await store.get("dev", "github", "c-3")
    assert c3 is not None
    assert (c3.end_user, c3.tags, c3.connection_config) == (None, {}, {"org": "acme"})
    assert await store.get("dev", "github", "c-gone") is None
    p1 = await store.get("prod", "github", "p-1")
    assert p1 is not None
    assert p1.end_user == {"id": "user-7", "email": "bo@globex.example", "organization": {"id": "org-9"}}
    # The tags are found as the connections list finds them (their index came with them).
    by_tag = await list_connection_documents(db, "dev", ConnectionListQuery(tags={"team": "growth"}))
    assert [d["connection_id"] for d in by_tag] == ["c-1"]
    by_user = await list_connection_documents(db, "dev", ConnectionListQuery(end_user_id="user-43"))
    assert [d["connection_id"] for d in by_user] == ["c-2"]
    assert await db["outbox"].count_documents({}) == 0

    # Labels taken away in Nango are taken away by a forced import.
    await conn.execute(
        sql.SQL(
            "UPDATE {}._nango_connections SET end_user_id = NULL, tags = '{{}}', webhook_url_override = NULL "
            "WHERE connection_id = 'c-1'"
        ).format(sql.Identifier(schema))
    )
    code, text = await _import(settings, schema, "--force")
    assert code == 0, text
    c1 = await store.get("dev", "github", "c-1")
    assert c1 is not None
    assert (c1.end_user, c1.tags, c1.webhook_url_override) == (None, {}, None)
    assert await list_connection_documents(db, "dev", ConnectionListQuery(tags={"team": "growth"})) == []


@pytest.mark.broker
async def test_imported_keys_and_connections_answer_at_the_gateway(
    start_gateway: StartGateway,
    db_name: str,
    mongo_url: str,
    encryption_key: str,
    nango_current: tuple[str, Any, CurrentSeed],
) -> None:
    schema, _, seed = nango_current
    k = seed.keys
    code, text = await _import(settings_for(mongo_url, db_name, encryption_key), schema, "--environment", "prod")
    assert code == 0, text
    async with start_gateway() as gw:
        for secret in (k.prod_first, k.prod_second):
            auth = {"Authorization": f"Bearer {secret}"}
            resp = await gw.client.get("/connections/p-1", params={"provider_config_key": "github"}, headers=auth)
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            assert body["end_user"] == {
                "id": "user-7", "display_name": None, "email": "bo@globex.example", "tags": None,
                "organization": {"id": "org-9", "display_name": None},
            }  # fmt: skip
            assert body["tags"] == {"end_user_id": "user-7", "organization_id": "org-9", "region": "eu"}
            assert body["webhook_url_override"] == "https://hooks.example.com/p1"
            assert body["credentials"]["access_token"] == CURRENT_OAUTH2["access_token"]
            resp = await gw.client.get("/connections", params={"endUserId": "user-7"}, headers=auth)
            assert resp.status == 200, await resp.text()
            assert [c["connection_id"] for c in (await resp.json())["connections"]] == ["p-1"]
        for secret in (k.prod_third, k.prod_internal, k.prod_stale, k.shared):
            resp = await gw.client.get(
                "/connections/p-1",
                params={"provider_config_key": "github"},
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert resp.status == 401


async def test_earlier_generations_of_the_current_schema(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    db_name: str,
    mongo_url: str,
    nango_current: tuple[str, Any, CurrentSeed],
) -> None:
    schema, conn, seed = nango_current
    k = seed.keys
    s = sql.Identifier(schema)
    key = generate_key()
    settings = settings_for(mongo_url, db_name, key)
    envs = EnvironmentStore(db, CredentialCipher(current_key=key))
    store = ConnectionStore(mongo_client, db, CredentialCipher(current_key=key))

    # 2026-06: keys in api_secrets only, the webhook URL override still in connection_config.
    await conn.execute(sql.SQL("DROP TABLE {}.customer_keys_relations, {}.customer_keys").format(s, s))
    await conn.execute(sql.SQL("ALTER TABLE {}._nango_connections DROP COLUMN webhook_url_override").format(s))
    await conn.execute(
        sql.SQL("UPDATE {}._nango_connections SET connection_config = %s WHERE connection_id = 'c-3'").format(s),
        (Jsonb({"org": "acme", "webhook_url": " https://hooks.example.com/c3 "}),),
    )
    code, text = await _import(settings, schema)
    assert code == 0, text
    assert "warning: environment" not in text
    dev, prod = await envs.get("dev"), await envs.get("prod")
    assert dev is not None
    assert prod is not None
    assert (dev.secret_key, dev.pending_secret_key, dev.webhook_signing_key) == (k.dev, k.dev_internal_pending, k.dev)
    assert (prod.secret_key, prod.pending_secret_key, prod.webhook_signing_key) == (
        k.prod_internal,
        None,
        k.prod_internal,
    )
    c3 = await store.get("dev", "github", "c-3")
    assert c3 is not None
    assert (c3.webhook_url_override, c3.connection_config) == ("https://hooks.example.com/c3", {"org": "acme"})
    c1 = await store.get("dev", "github", "c-1")
    assert c1 is not None
    assert (c1.end_user, c1.tags, c1.webhook_url_override) == (C1_END_USER, C1_TAGS, None)

    # A late 0.42 (end users, nothing since): keys on the environments, connection_config as it is.
    await conn.execute(sql.SQL("DROP TABLE {}.api_secrets").format(s))
    await conn.execute(sql.SQL("ALTER TABLE {}._nango_connections DROP COLUMN tags").format(s))
    await conn.execute(sql.SQL("ALTER TABLE {}.end_users DROP COLUMN tags").format(s))
    code, text = await _import(settings, schema, "--force")
    assert code == 0, text
    dev, prod = await envs.get("dev"), await envs.get("prod")
    assert dev is not None
    assert prod is not None
    assert (dev.secret_key, dev.webhook_signing_key) == (k.dev, k.dev)
    assert (prod.secret_key, prod.webhook_signing_key) == (k.prod_stale, k.prod_stale)
    c1 = await store.get("dev", "github", "c-1")
    assert c1 is not None
    assert (c1.end_user, c1.tags) == ({key: v for key, v in C1_END_USER.items() if key != "tags"}, {})
    c3 = await store.get("dev", "github", "c-3")
    assert c3 is not None
    assert c3.connection_config == {"org": "acme", "webhook_url": " https://hooks.example.com/c3 "}
