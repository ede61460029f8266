"""Reading a Nango database (PostgreSQL, schema ``nango``) and decrypting it as Nango does.

Nango (v0.39 … v0.71; spec §3.2, §4.1, §9) encrypts with AES-256-GCM under ``NANGO_ENCRYPTION_KEY``
(base64 of 32 bytes) and a random 12-byte IV, and keeps the ciphertext, the IV and the tag as three
base64 strings: ``credentials = {"encrypted_credentials": …}`` + ``credentials_iv`` +
``credentials_tag`` on connections; ``secret_key`` / ``pending_secret_key`` + ``…_iv`` + ``…_tag`` on
environments; ``oauth_client_secret`` + ``…_iv`` + ``…_tag`` and ``custom = {encryptedValue, iv,
authTag}`` on integrations ("configs"). A row whose IV is null (or, in the later key tables, empty)
was written before encryption was turned on and is plain. Columns that only some versions have are
read when present; where the environments' keys live depends on the version (``nango_keys.py``), and
so do the end users, tags and webhook URL overrides of connections (``nango_labels.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, LiteralString

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyway_shared.store import WebhookSettings

from .nango_error import NangoError
from .nango_keys import EnvironmentKeys, read_environment_keys
from .nango_labels import LABEL_COLUMNS, ConnectionLabels, LabelSource

try:  # the `nango` extra of keyway-cli; only this command needs it
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - reported by the command
    psycopg = None  # type: ignore[assignment]

__all__ = ["NangoConnection", "NangoEnvironment", "NangoError", "NangoIntegration", "NangoReader", "decrypt"]


def _key(key_b64: str) -> AESGCM:
    try:
        raw = base64.b64decode(key_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise NangoError("the Nango encryption key is not base64") from None
    if len(raw) != 32:
        raise NangoError("the Nango encryption key must be 32 bytes (base64 of 256 bits), as Nango requires")
    return AESGCM(raw)


def decrypt(key: AESGCM | None, enc: str, iv: str, tag: str, *, what: str) -> str:
    """Nango keeps the tag apart from the ciphertext; AES-GCM here wants them joined."""
    if key is None:
        raise NangoError(f"{what} is encrypted: give the Nango encryption key")
    try:
        sealed = base64.b64decode(enc) + base64.b64decode(tag)
        return key.decrypt(base64.b64decode(iv), sealed, None).decode()
    except (InvalidTag, binascii.Error, ValueError):
        raise NangoError(f"{what} cannot be decrypted: wrong Nango encryption key, or damaged") from None


@dataclass(kw_only=True)
class NangoEnvironment:
    id: int
    account_id: int | None
    name: str
    public_key: str
    secret_key: str
    pending_public_key: str | None
    pending_secret_key: str | None
    callback_url: str | None
    hmac_enabled: bool
    hmac_key: str | None
    webhooks: WebhookSettings
    webhook_signing_key: str | None = None  # None: Nango signed its webhooks with the secret key
    notes: list[str] = field(default_factory=list)  # what the import should tell about its keys


@dataclass(kw_only=True)
class NangoIntegration:
    id: int
    environment_id: int
    unique_key: str
    provider: str
    oauth_client_id: str | None
    oauth_client_secret: str | None
    oauth_scopes: str | None
    app_link: str | None
    custom: dict[str, Any]
    display_name: str | None = None
    forward_webhooks: bool = True
    uses_shared_credentials: bool = False  # Nango's own OAuth app (its cloud): no client secret here


@dataclass(kw_only=True)
class NangoConnection:
    id: int
    environment_id: int
    config_id: int | None
    provider_config_key: str
    connection_id: str
    connection_config: dict[str, Any]
    metadata: dict[str, Any] | None
    credentials: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    last_fetched_at: datetime | None
    labels: ConnectionLabels | None = None  # None: this Nango has no end users, tags nor overrides


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value


class NangoReader:
    """Reads the rows an import needs; optional columns may be missing, required ones may not."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]], *, schema: str, key_b64: str | None) -> None:
        self._conn = conn
        self._schema = schema
        self._key = _key(key_b64) if key_b64 else None
        self._columns: dict[str, set[str]] = {}

    @classmethod
    async def connect(cls, url: str, *, schema: str, key_b64: str | None) -> NangoReader:
        if psycopg is None:
            raise NangoError("reading PostgreSQL needs psycopg: install keyway-cli[nango]")
        try:
            conn = await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True)
        except psycopg.Error as exc:
            raise NangoError(f"cannot connect to the Nango database: {exc}") from None
        return cls(conn, schema=schema, key_b64=key_b64)

    async def close(self) -> None:
        await self._conn.close()

    async def columns(self, table: str) -> set[str]:
        if table not in self._columns:
            cur = await self._conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (self._schema, table),
            )
            self._columns[table] = {row["column_name"] for row in await cur.fetchall()}
        return self._columns[table]

    async def select(
        self,
        table: str,
        required: list[str],
        optional: list[str],
        where: LiteralString = "",
        params: tuple[Any, ...] = (),
    ) -> list[dict[str, Any]]:
        have = await self.columns(table)
        if not have:
            raise NangoError(f"there is no table {self._schema}.{table}: is this a Nango database (--schema)?")
        missing = [c for c in required if c not in have]
        if missing:
            raise NangoError(f"{self._schema}.{table} lacks the column(s) {', '.join(missing)}")
        wanted = required + [c for c in optional if c in have]
        query = sql.SQL("SELECT {} FROM {}.{} ").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in wanted), sql.Identifier(self._schema), sql.Identifier(table)
        ) + sql.SQL(where)
        rows = await (await self._conn.execute(query, params)).fetchall()
        # Only the columns this database has: ``row.get(name)`` is None for the others.
        return [{c: row.get(c) for c in wanted} | {"_deleted": bool(row.get("deleted"))} for row in rows]

    def maybe_decrypt(self, value: Any, iv: Any, tag: Any, *, what: str) -> Any:
        """Nango decrypts a value only when it has both an IV and a tag (null, or empty, means plain)."""
        if not value or not iv or not tag:
            return value
        return decrypt(self._key, str(value), str(iv), str(tag), what=what)

    async def _webhooks(self) -> dict[int, dict[str, Any]]:
        if not await self.columns("_nango_external_webhooks"):
            return {}  # before v0.40 the settings lived on the environment
        optional = ["primary_url", "secondary_url", "on_auth_creation", "on_auth_refresh_error", "on_auth_refesh_error"]
        rows = await self.select("_nango_external_webhooks", ["environment_id"], optional)
        return {int(row["environment_id"]): row for row in rows}

    async def environments(self) -> list[NangoEnvironment]:
        required = ["id", "name", "public_key", "secret_key"]
        optional = [
            *("account_id", "secret_key_iv", "secret_key_tag", "pending_public_key", "pending_secret_key"),
            *("pending_secret_key_iv", "pending_secret_key_tag", "callback_url", "hmac_enabled", "hmac_key"),
            *("webhook_url", "webhook_url_secondary", "send_auth_webhook", "deleted"),
        ]
        hooks = await self._webhooks()
        rows = await self.select("_nango_environments", required, optional, "ORDER BY id")
        rows = [row for row in rows if not row["_deleted"]]
        # A later Nango keeps the keys in tables of their own: its environments' columns are stale.
        held = await read_environment_keys(self, {int(row["id"]): str(row["name"]) for row in rows})
        found = []
        for row in rows:
            what = f"environment {row['name']}"
            hook = hooks.get(int(row["id"]))
            if hook is not None:
                refresh_error = hook.get("on_auth_refresh_error", hook.get("on_auth_refesh_error"))
                webhooks = WebhookSettings(
                    primary_url=hook.get("primary_url") or None,
                    secondary_url=hook.get("secondary_url") or None,
                    on_auth_creation=bool(hook.get("on_auth_creation")),
                    on_auth_refresh_error=bool(refresh_error),
                )
            else:
                webhooks = WebhookSettings(
                    primary_url=row.get("webhook_url") or None,
                    secondary_url=row.get("webhook_url_secondary") or None,
                    on_auth_creation=bool(row.get("send_auth_webhook")),
                )
            keys = held.get(int(row["id"])) or EnvironmentKeys(
                secret_key=self.maybe_decrypt(
                    row["secret_key"], row.get("secret_key_iv"), row.get("secret_key_tag"), what=what
                ),
                pending_secret_key=self.maybe_decrypt(
                    row.get("pending_secret_key"),
                    row.get("pending_secret_key_iv"),
                    row.get("pending_secret_key_tag"),
                    what=f"{what} (pending secret key)",
                ),
                webhook_signing_key=None,
            )
            found.append(
                NangoEnvironment(
                    id=int(row["id"]),
                    account_id=row.get("account_id"),
                    name=str(row["name"]),
                    public_key=str(row["public_key"]),
                    secret_key=keys.secret_key,
                    # uuid columns in Nango's schema
                    pending_public_key=str(row["pending_public_key"]) if row.get("pending_public_key") else None,
                    pending_secret_key=keys.pending_secret_key,
                    callback_url=row.get("callback_url") or None,
                    hmac_enabled=bool(row.get("hmac_enabled")),
                    hmac_key=row.get("hmac_key") or None,
                    webhooks=webhooks,
                    webhook_signing_key=keys.webhook_signing_key,
                    notes=keys.notes,
                )
            )
        return found

    async def integrations(self, environment_ids: list[int]) -> list[NangoIntegration]:
        required = ["id", "unique_key", "provider", "environment_id"]
        optional = [
            *("oauth_client_id", "oauth_client_secret", "oauth_client_secret_iv", "oauth_client_secret_tag"),
            *("oauth_scopes", "app_link", "custom", "deleted", "display_name", "forward_webhooks"),
            "shared_credentials_id",
        ]
        rows = await self.select(
            "_nango_configs", required, optional, "WHERE environment_id = ANY(%s) ORDER BY id", (environment_ids,)
        )
        found = []
        for row in rows:
            if row["_deleted"]:
                continue
            what = f"integration {row['unique_key']}"
            custom = _json(row.get("custom")) or {}
            if isinstance(custom, dict) and "encryptedValue" in custom:
                custom = json.loads(
                    decrypt(
                        self._key, custom["encryptedValue"], custom["iv"], custom["authTag"], what=f"{what} (custom)"
                    )
                )
            found.append(
                NangoIntegration(
                    id=int(row["id"]),
                    environment_id=int(row["environment_id"]),
                    unique_key=str(row["unique_key"]),
                    provider=str(row["provider"]),
                    oauth_client_id=row.get("oauth_client_id"),
                    oauth_client_secret=self.maybe_decrypt(
                        row.get("oauth_client_secret"),
                        row.get("oauth_client_secret_iv"),
                        row.get("oauth_client_secret_tag"),
                        what=what,
                    ),
                    oauth_scopes=row.get("oauth_scopes"),
                    app_link=row.get("app_link"),
                    custom=custom if isinstance(custom, dict) else {},
                    display_name=row.get("display_name") or None,
                    forward_webhooks=row.get("forward_webhooks") is not False,  # Nango's default: true
                    uses_shared_credentials=row.get("shared_credentials_id") is not None,
                )
            )
        return found

    async def connections(
        self, environment_ids: list[int], *, batch: int = 500
    ) -> AsyncIterator[list[NangoConnection]]:
        """Live connections in pages, by id."""
        required = ["id", "connection_id", "provider_config_key", "environment_id", "credentials"]
        optional = [
            *("config_id", "connection_config", "metadata", "credentials_iv", "credentials_tag"),
            *("created_at", "updated_at", "last_fetched_at", "deleted", *LABEL_COLUMNS),
        ]
        labelled = await LabelSource.open(self)
        last = 0
        while True:
            rows = await self.select(
                "_nango_connections",
                required,
                optional,
                "WHERE environment_id = ANY(%s) AND id > %s ORDER BY id LIMIT %s",
                (environment_ids, last, batch),
            )
            if not rows:
                return
            last = int(rows[-1]["id"])
            end_users = await labelled.end_users(rows) if labelled else {}
            page = []
            for row in rows:
                if row["_deleted"]:
                    continue
                what = f"connection {row['provider_config_key']}/{row['connection_id']}"
                credentials = _json(row["credentials"]) or {}
                if row.get("credentials_iv") is not None and row.get("credentials_tag") is not None:
                    enc = credentials.get("encrypted_credentials") if isinstance(credentials, dict) else None
                    if not isinstance(enc, str):
                        raise NangoError(f"{what}: encrypted credentials without encrypted_credentials")
                    credentials = json.loads(
                        decrypt(self._key, enc, row["credentials_iv"], row["credentials_tag"], what=what)
                    )
                config = _json(row.get("connection_config")) or {}
                labels = labelled.labels(row, end_users, config) if labelled else None
                page.append(
                    NangoConnection(
                        id=int(row["id"]),
                        environment_id=int(row["environment_id"]),
                        config_id=row.get("config_id"),
                        provider_config_key=str(row["provider_config_key"]),
                        connection_id=str(row["connection_id"]),
                        connection_config=config,
                        metadata=_json(row.get("metadata")),
                        credentials=credentials if isinstance(credentials, dict) else {},
                        created_at=_utc(row.get("created_at")),
                        updated_at=_utc(row.get("updated_at")),
                        last_fetched_at=_utc(row.get("last_fetched_at")),
                        labels=labels,
                    )
                )
            yield page
