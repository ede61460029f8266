"""Nango-shaped databases in the local PostgreSQL, for ``keyway import-nango``.

Values are encrypted exactly as Nango's encryption manager does (AES-256-GCM under
``NANGO_ENCRYPTION_KEY``, a 12-byte IV, ciphertext and tag as separate base64 strings) and key hashes
made as its ``hashSecret`` does (PBKDF2-SHA256, 310,000 rounds, the encryption key as salt).

``CURRENT_DDL`` is the part of Nango v0.71's schema the import reads, as its migrations leave it
(packages/database/lib/migrations): environments whose key columns went stale when the keys moved to
``api_secrets`` (20260119161100) and then to ``customer_keys`` with ``customer_keys_relations``
(20260420120000, + 20260514120000's sandbox columns), ``end_users`` (20240925173951, email nullable
since 20241212110349, ``tags`` json since 20250724174012), integrations' ``display_name``
(20250404164701), ``forward_webhooks`` (20250604140535) and ``shared_credentials_id``
(20250729200711), connections' ``end_user_id`` (20241024094439), ``tags`` (20260120193001) and
``webhook_url_override`` (20260715120000). Foreign keys to tables the import does not read are left out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import sql
from psycopg.types.json import Jsonb

PG_URL = os.environ.get("KEYWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NANGO_KEY = base64.b64encode(os.urandom(32)).decode()
FUTURE = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
FULL_ACCESS = ["environment:*"]


def nango_encrypt(text: str, key: str = NANGO_KEY) -> tuple[str, str, str]:
    """Nango's ``encryptSync``: [ciphertext, iv, tag], each base64, the tag apart from the ciphertext."""
    iv = os.urandom(12)
    sealed = AESGCM(base64.b64decode(key)).encrypt(iv, text.encode(), None)
    return (
        base64.b64encode(sealed[:-16]).decode(),
        base64.b64encode(iv).decode(),
        base64.b64encode(sealed[-16:]).decode(),
    )


def nango_hash(secret: str, key: str = NANGO_KEY) -> str:
    """Nango's ``hashSecret``: what it looks an API key up by."""
    return base64.b64encode(hashlib.pbkdf2_hmac("sha256", secret.encode(), key.encode(), 310_000, 32)).decode()


async def insert(conn: psycopg.AsyncConnection[Any], s: sql.Identifier, table: str, row: dict[str, Any]) -> int:
    query = sql.SQL("INSERT INTO {}.{} ({}) VALUES ({}) RETURNING id").format(
        s,
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    values = [Jsonb(v) if isinstance(v, dict) else v for v in row.values()]
    cur = await conn.execute(query, values)
    found = await cur.fetchone()
    assert found is not None
    return int(found[0])


CURRENT_DDL = """
CREATE TABLE {s}._nango_environments (
  id serial PRIMARY KEY, uuid uuid DEFAULT gen_random_uuid(), name varchar(255) NOT NULL, account_id integer,
  secret_key varchar(255) DEFAULT gen_random_uuid()::text NOT NULL, public_key uuid DEFAULT gen_random_uuid() NOT NULL,
  secret_key_iv varchar(255), secret_key_tag varchar(255), secret_key_hashed varchar(255), callback_url text,
  webhook_url text, webhook_url_secondary text, websockets_path varchar(255), hmac_enabled boolean DEFAULT false,
  hmac_key varchar(255), always_send_webhook boolean DEFAULT false, send_auth_webhook boolean DEFAULT false,
  slack_notifications boolean DEFAULT false, pending_secret_key varchar(255), pending_secret_key_iv varchar(255),
  pending_secret_key_tag varchar(255), pending_public_key uuid, webhook_receive_url text, otlp_settings jsonb,
  deleted boolean DEFAULT false, deleted_at timestamptz, is_production boolean NOT NULL DEFAULT false,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE {s}._nango_external_webhooks (
  id serial PRIMARY KEY, environment_id integer NOT NULL UNIQUE, primary_url text, secondary_url text,
  on_sync_completion_always boolean DEFAULT false, on_auth_creation boolean DEFAULT false,
  on_auth_refresh_error boolean DEFAULT false, on_sync_error boolean DEFAULT false,
  on_async_action_completion boolean DEFAULT false,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE {s}.api_secrets (
  id serial PRIMARY KEY, environment_id integer NOT NULL REFERENCES {s}._nango_environments(id) ON DELETE CASCADE,
  display_name varchar(255) NOT NULL, secret varchar(255) NOT NULL, iv varchar(255) NOT NULL,
  tag varchar(255) NOT NULL, hashed varchar(255) NOT NULL, is_default boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE UNIQUE INDEX ON {s}.api_secrets (environment_id) WHERE is_default = true;
CREATE TABLE {s}.customer_keys (
  id serial PRIMARY KEY, account_id integer NOT NULL,
  key_type varchar(50) NOT NULL CHECK (key_type IN ('api', 'webhook_signing')),
  display_name varchar(255) NOT NULL, scopes text[], secret varchar(255) NOT NULL,
  iv varchar(255) NOT NULL DEFAULT '', tag varchar(255) NOT NULL DEFAULT '', hashed varchar(255) NOT NULL,
  last_used_at timestamptz, created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, deleted_at timestamptz,
  sandbox_signing_secret varchar(255) DEFAULT NULL, sandbox_signing_secret_iv varchar(255) DEFAULT NULL,
  sandbox_signing_secret_tag varchar(255) DEFAULT NULL);
CREATE UNIQUE INDEX ON {s}.customer_keys (hashed, key_type);
CREATE TABLE {s}.customer_keys_relations (
  customer_key_id integer NOT NULL REFERENCES {s}.customer_keys(id) ON DELETE CASCADE,
  entity_type varchar(50) NOT NULL CHECK (entity_type IN ('environment', 'account')),
  entity_id integer NOT NULL, UNIQUE (customer_key_id, entity_type, entity_id));
CREATE TABLE {s}.end_users (
  id serial PRIMARY KEY, end_user_id varchar(255) NOT NULL, account_id integer,
  environment_id integer REFERENCES {s}._nango_environments(id) ON DELETE CASCADE, email varchar(255),
  display_name varchar(255), organization_id varchar(255), organization_display_name varchar(255),
  created_at timestamptz DEFAULT CURRENT_TIMESTAMP, updated_at timestamptz DEFAULT CURRENT_TIMESTAMP, tags json);
CREATE TABLE {s}._nango_configs (
  id serial PRIMARY KEY, unique_key varchar(255) NOT NULL, provider varchar(255) NOT NULL,
  oauth_client_id text, oauth_client_secret text, oauth_scopes text, environment_id integer NOT NULL,
  oauth_client_secret_iv varchar(255), oauth_client_secret_tag varchar(255), app_link text, custom jsonb,
  missing_fields text[] NOT NULL DEFAULT array[]::text[], display_name varchar(255),
  forward_webhooks boolean DEFAULT true, shared_credentials_id integer,
  deleted boolean DEFAULT false, deleted_at timestamptz,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE {s}._nango_connections (
  id serial PRIMARY KEY, connection_id varchar(255) NOT NULL, provider_config_key varchar(255) NOT NULL,
  environment_id integer NOT NULL, config_id integer, connection_config jsonb NOT NULL DEFAULT '{{}}', metadata jsonb,
  credentials jsonb, credentials_iv varchar(255), credentials_tag varchar(255), last_fetched_at timestamptz,
  credentials_expires_at timestamptz, last_refresh_success timestamptz, last_refresh_failure timestamptz,
  refresh_attempts integer, refresh_exhausted boolean NOT NULL DEFAULT false,
  end_user_id integer REFERENCES {s}.end_users(id) ON DELETE SET NULL, tags jsonb NOT NULL DEFAULT '{{}}',
  webhook_url_override text, deleted boolean DEFAULT false, deleted_at timestamptz,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
"""

OAUTH2 = {
    "type": "OAUTH2",
    "access_token": "gho_current_access",
    "refresh_token": "ghr_current_refresh",
    "expires_at": FUTURE.isoformat().replace("+00:00", ".000Z"),
    "raw": {"access_token": "gho_current_access", "refresh_token": "ghr_current_refresh", "expires_in": 28800},
}
API_KEY = {"type": "API_KEY", "apiKey": "phx_current_key"}
CREATED = datetime(2026, 5, 4, 10, 11, 12, 345000, tzinfo=UTC)


def _key() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class CurrentKeys:
    """The keys of a v0.71 database: ``dev`` came through Nango's migrations (one key everywhere),
    ``prod`` was created on v0.71 (its own key in each place)."""

    dev: str = field(default_factory=_key)  # env column, default api secret, first API key, signing key
    dev_ci: str = field(default_factory=_key)  # a read-only API key
    dev_revoked: str = field(default_factory=_key)  # a deleted API key
    dev_internal_pending: str = field(default_factory=_key)  # a non-default api secret
    dev_public: str = field(default_factory=_key)
    dev_pending_public: str = field(default_factory=_key)
    prod_stale: str = field(default_factory=_key)  # the environment's column, never used since
    prod_internal: str = field(default_factory=_key)  # the default api secret (Nango's runners)
    prod_first: str = field(default_factory=_key)
    prod_second: str = field(default_factory=_key)  # stored while encryption was off
    prod_third: str = field(default_factory=_key)
    prod_signing: str = field(default_factory=_key)
    shared: str = field(default_factory=_key)  # one key related to dev and prod
    account_level: str = field(default_factory=_key)
    prod_public: str = field(default_factory=_key)


@dataclass
class CurrentSeed:
    keys: CurrentKeys
    dev: int
    prod: int


async def fill_current(conn: psycopg.AsyncConnection[Any], s: sql.Identifier) -> CurrentSeed:
    """Two live environments (and a deleted one), their keys, integrations, end users and connections."""
    keys = CurrentKeys()
    secret, iv, tag = nango_encrypt(keys.dev)
    dev = await insert(conn, s, "_nango_environments", {
        "name": "dev", "account_id": 1, "secret_key": secret, "secret_key_iv": iv, "secret_key_tag": tag,
        "secret_key_hashed": nango_hash(keys.dev), "public_key": keys.dev_public,
        "pending_public_key": keys.dev_pending_public, "callback_url": "https://app.example.com/callback",
        "hmac_enabled": True, "hmac_key": "current-hmac",
    })  # fmt: skip
    prod = await insert(conn, s, "_nango_environments", {
        "name": "prod", "account_id": 1, "secret_key": keys.prod_stale, "public_key": keys.prod_public,
        "is_production": True,
    })  # fmt: skip
    gone = await insert(conn, s, "_nango_environments", {"name": "staging", "account_id": 1, "deleted": True})
    await insert(conn, s, "_nango_external_webhooks", {
        "environment_id": dev, "primary_url": "https://hooks.example.com/dev", "on_auth_creation": True,
        "on_auth_refresh_error": True,
    })  # fmt: skip

    async def api_secret(env_id: int, plain: str, *, default: bool) -> None:
        enc, siv, stag = nango_encrypt(plain)
        await insert(conn, s, "api_secrets", {
            "environment_id": env_id, "display_name": "default" if default else "2026-05-01T00:00:00.000Z",
            "secret": enc, "iv": siv, "tag": stag, "hashed": nango_hash(plain), "is_default": default,
        })  # fmt: skip

    await api_secret(dev, keys.dev, default=True)
    await api_secret(dev, keys.dev_internal_pending, default=False)
    await api_secret(prod, keys.prod_internal, default=True)
    await api_secret(gone, _key(), default=True)

    async def customer_key(
        plain: str,
        kind: str,
        name: str,
        envs: list[int],
        *,
        scopes: list[str] | None = None,
        encrypted: bool = True,
        **extra: Any,
    ) -> None:
        enc, kiv, ktag = nango_encrypt(plain) if encrypted else (plain, "", "")
        key_id = await insert(conn, s, "customer_keys", {
            "account_id": 1, "key_type": kind, "display_name": name, "scopes": scopes, "secret": enc, "iv": kiv,
            "tag": ktag, "hashed": nango_hash(plain),
        } | extra)  # fmt: skip
        for env_id in envs:
            await conn.execute(
                sql.SQL("INSERT INTO {}.customer_keys_relations VALUES (%s, 'environment', %s)").format(s),
                (key_id, env_id),
            )

    # What Nango's backfill made of dev's key, then what its users added.
    await customer_key(keys.dev, "api", "Default - Full access", [dev], scopes=FULL_ACCESS)
    await customer_key(keys.dev, "webhook_signing", "Webhook signing", [dev])
    await customer_key(keys.dev_ci, "api", "CI", [dev], scopes=["environment:connections:list"])
    await customer_key(keys.dev_revoked, "api", "Old laptop", [dev], scopes=FULL_ACCESS, deleted_at=datetime.now(UTC))
    # What v0.71's createEnvironment made for prod, then more keys.
    await customer_key(keys.prod_first, "api", "Default - Full access", [prod], scopes=FULL_ACCESS)
    await customer_key(keys.prod_signing, "webhook_signing", "Webhook signing", [prod])
    await customer_key(keys.prod_second, "api", "Deploy", [prod], scopes=FULL_ACCESS, encrypted=False)
    await customer_key(keys.prod_third, "api", "Backup", [prod], scopes=FULL_ACCESS)
    await customer_key(keys.shared, "api", "Both", [dev, prod], scopes=FULL_ACCESS)
    await customer_key(keys.account_level, "api", "Account admin", [], scopes=["account:environments:create"])

    configs = {}
    for env_id, unique_key, provider, client_secret, extra in (
        (dev, "github", "github", "gh-current-secret", {"display_name": "GitHub (Acme)", "forward_webhooks": False}),
        (dev, "posthog", "posthog", None, {}),
        (dev, "slack", "slack", None, {"shared_credentials_id": 3}),
        (prod, "github", "github", "gh-prod-current", {}),
    ):
        row: dict[str, Any] = {"environment_id": env_id, "unique_key": unique_key, "provider": provider,
                               "oauth_client_id": f"id-{unique_key}", "oauth_scopes": "repo"} | extra  # fmt: skip
        if client_secret:
            row["oauth_client_secret"], row["oauth_client_secret_iv"], row["oauth_client_secret_tag"] = nango_encrypt(
                client_secret
            )
        configs[(env_id, unique_key)] = await insert(conn, s, "_nango_configs", row)

    async def end_user(env_id: int, **row: Any) -> int:
        tags = row.pop("tags", None)
        found = await insert(conn, s, "end_users", {"environment_id": env_id, "account_id": 1} | row)
        if tags is not None:  # a json column, not jsonb
            await conn.execute(
                sql.SQL("UPDATE {}.end_users SET tags = %s::json WHERE id = %s").format(s), (json.dumps(tags), found)
            )
        return found

    user42 = await end_user(dev, end_user_id="user-42", email="ada@acme.example", display_name="Ada",
                            organization_id="org-1", organization_display_name="Acme", tags={"plan": "pro"})  # fmt: skip
    user43 = await end_user(dev, end_user_id="user-43")
    user7 = await end_user(prod, end_user_id="user-7", email="bo@globex.example", organization_id="org-9")

    async def connection(env_id: int, key: str, cid: str, creds: dict[str, Any], **extra: Any) -> None:
        enc, civ, ctag = nango_encrypt(json.dumps(creds))
        row = {"environment_id": env_id, "provider_config_key": key, "connection_id": cid,
               "config_id": configs[(env_id, key)], "credentials": {"encrypted_credentials": enc},
               "credentials_iv": civ, "credentials_tag": ctag, "created_at": CREATED} | extra  # fmt: skip
        await insert(conn, s, "_nango_connections", row)

    await connection(dev, "github", "c-1", OAUTH2, end_user_id=user42, metadata={"seats": 3},
                     tags={"end_user_id": "user-42", "organization_id": "org-1", "team": "growth"},
                     webhook_url_override="https://hooks.example.com/c1")  # fmt: skip
    await connection(dev, "posthog", "c-2", API_KEY, end_user_id=user43, tags={"end_user_id": "user-43"})
    await connection(dev, "github", "c-3", OAUTH2, connection_config={"org": "acme"})
    await connection(dev, "github", "c-gone", OAUTH2, end_user_id=user42, deleted=True)
    await connection(prod, "github", "p-1", OAUTH2, end_user_id=user7,
                     tags={"end_user_id": "user-7", "organization_id": "org-9", "region": "eu"},
                     webhook_url_override="https://hooks.example.com/p1")  # fmt: skip
    return CurrentSeed(keys=keys, dev=dev, prod=prod)
