"""``keyway import-nango``: a Nango deployment's environments, integrations and connections, brought
across with their keys and credentials, so the apps keep their keys and no customer reconnects.

Everything is read and decrypted first (a wrong key or a damaged row stops the import before it
writes); then environments (public, secret and pending keys, webhook signing key, callback URL,
HMAC, webhook settings), integrations and connections (with their end user, tags and webhook URL
override, from a Nango that has them) are written through the stores, under ``KEYWAY_ENCRYPTION_KEY``.
Migrated connections announce nothing: the app's backend gets no auth webhook for them.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from pymongo import AsyncMongoClient

from keyway_shared.cipher import CredentialCipher
from keyway_shared.credentials import parse_credentials, parse_expires_at
from keyway_shared.providers import ProviderCatalog
from keyway_shared.refresh.policy import DEFAULT_MARGIN, REFRESHABLE_TYPES
from keyway_shared.store import Connection, ConnectionStore, Database, EnvironmentStore, Integration, IntegrationStore
from keyway_shared.store.integrations import DuplicateIntegrationError

from .nango import NangoConnection, NangoEnvironment, NangoError, NangoIntegration, NangoReader
from .nango_labels import label_update
from .transfer import occupied

__all__ = ["NangoImport"]


class NangoImport:
    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        db: Database,
        cipher: CredentialCipher,
        catalog: ProviderCatalog,
        reader: NangoReader,
        *,
        out: TextIO,
    ) -> None:
        self._db = db
        self._connection_docs = db["connections"]
        self._catalog = catalog
        self._reader = reader
        self._out = out
        self._environments = EnvironmentStore(db, cipher)
        self._integrations = IntegrationStore(db, cipher)
        self._connections = ConnectionStore(client, db, cipher)

    async def _select(self, names: list[str], account_id: int | None) -> list[NangoEnvironment]:
        envs = [e for e in await self._reader.environments() if account_id is None or e.account_id == account_id]
        if names:
            unknown = sorted(set(names) - {e.name for e in envs})
            if unknown:
                raise NangoError(f"the Nango database has no environment {', '.join(unknown)}")
            envs = [e for e in envs if e.name in names]
        seen = Counter(e.name for e in envs)
        twice = sorted(name for name, n in seen.items() if n > 1)
        if twice:
            raise NangoError(
                f"several Nango accounts have an environment {', '.join(twice)}: choose one with --account-id"
            )
        if not envs:
            raise NangoError("no environment to import")
        return envs

    async def run(self, *, environments: list[str], account_id: int | None, force: bool, dry_run: bool) -> int:
        envs = await self._select(environments, account_id)
        by_id = {e.id: e for e in envs}
        integrations = await self._reader.integrations(list(by_id))
        by_config = {i.id: i for i in integrations}
        by_key = {(i.environment_id, i.unique_key): i for i in integrations}

        def integration_of(conn: NangoConnection) -> NangoIntegration | None:
            found = by_config.get(conn.config_id) if conn.config_id is not None else None
            return found or by_key.get((conn.environment_id, conn.provider_config_key))

        # First pass: every credential decrypted (raises on the first that cannot be), nothing written.
        total, orphans = 0, 0
        async for page in self._reader.connections(list(by_id)):
            for conn in page:
                total += 1
                orphans += integration_of(conn) is None
        unknown = sorted({i.provider for i in integrations if i.provider not in self._catalog})
        print(
            f"Nango: environments {', '.join(e.name for e in envs)}; {len(integrations)} integrations; ",
            end="",
            file=self._out,
        )
        print(f"{total} connections ({orphans} without a live integration, skipped); all readable", file=self._out)
        if unknown:
            print(
                f"warning: providers not in Keyway's catalog: {', '.join(unknown)} (KEYWAY_PROVIDERS_FILE adds them)",
                file=self._out,
            )
        self._warn(envs, integrations, by_id)
        if dry_run:
            return 0
        taken = await occupied(self._db, {e.name for e in envs})
        if taken and not force:
            held = ", ".join(f"{n} {name}" for name, n in taken.items())
            print(
                f"refusing to import: those environments already hold {held} here; --force replaces them.",
                file=self._out,
            )
            return 1
        for env in envs:
            await self._put_environment(env)
        for integration in integrations:
            await self._put_integration(by_id[integration.environment_id].name, integration)
        written = 0
        async for page in self._reader.connections(list(by_id)):
            for conn in page:
                found = integration_of(conn)
                if found is not None:
                    await self._put_connection(by_id[conn.environment_id].name, found, conn)
                    written += 1
            print(f"  connections: {written} of {total - orphans}", file=self._out, flush=True)
        print(
            f"imported {len(envs)} environments, {len(integrations)} integrations, {written} connections",
            file=self._out,
        )
        print("Restart the services so that they read the imported environments.", file=self._out)
        return 0

    def _warn(
        self, envs: list[NangoEnvironment], integrations: list[NangoIntegration], by_id: dict[int, NangoEnvironment]
    ) -> None:
        """What will not be as it was: keys that do not fit, integrations without their OAuth app."""
        for env in envs:
            for note in env.notes:
                print(f"warning: environment {env.name}: {note}", file=self._out)
        shared = [f"{by_id[i.environment_id].name}/{i.unique_key}" for i in integrations if i.uses_shared_credentials]
        if shared:
            print(
                f"warning: integrations on Nango's shared OAuth app, to give their own client id and secret: "
                f"{', '.join(shared)}",
                file=self._out,
            )

    async def _put_environment(self, env: NangoEnvironment) -> None:
        await self._environments.ensure(env.name, public_key=env.public_key, secret_key=env.secret_key)
        # The key the receivers verify X-Nango-Hmac-Sha256 with: Nango's signing key where it had one, else
        # the secret key, which signed them then (and which Nango's backfill kept as the signing key).
        await self._environments.set_webhook_signing_key(env.name, env.webhook_signing_key or env.secret_key)
        await self._environments.update_settings(
            env.name,
            callback_url=env.callback_url,
            hmac_enabled=env.hmac_enabled,
            hmac_key=env.hmac_key or "",
            webhooks=env.webhooks,
        )
        if env.pending_public_key or env.pending_secret_key:
            await self._environments.set_pending_keys(
                env.name, public_key=env.pending_public_key, secret_key=env.pending_secret_key
            )

    async def _put_integration(self, environment: str, found: NangoIntegration) -> None:
        integration = Integration(
            environment=environment,
            unique_key=found.unique_key,
            provider=found.provider,
            oauth_client_id=found.oauth_client_id,
            oauth_client_secret=found.oauth_client_secret,
            oauth_scopes=found.oauth_scopes,
            app_link=found.app_link,
            custom={k: v if isinstance(v, str) else str(v) for k, v in found.custom.items()},
            display_name=found.display_name,
            forward_webhooks=found.forward_webhooks,
        )
        try:
            await self._integrations.create(integration)
        except DuplicateIntegrationError:
            await self._integrations.replace(integration)  # --force

    async def _put_connection(self, environment: str, integration: NangoIntegration, found: NangoConnection) -> None:
        template = self._catalog.get(integration.provider)
        credentials = found.credentials
        kind = credentials.get("type")
        auth_mode = template.auth_mode if template else kind if isinstance(kind, str) and kind else "NONE"
        expires_at: datetime | None = None
        if kind in REFRESHABLE_TYPES and credentials.get("expires_at"):
            expires_at = parse_expires_at({"expires_at": credentials["expires_at"]}, datetime.now(UTC))
        buffer = template.token_expiration_buffer if template else None
        await self._connections.put_imported(
            Connection(
                environment=environment,
                provider_config_key=found.provider_config_key,
                connection_id=found.connection_id,
                provider=integration.provider,
                auth_mode=auth_mode,
                credentials=parse_credentials(credentials),  # exactly Nango's document, typed
                connection_config=found.connection_config,
                metadata=found.metadata,
                credentials_expires_at=expires_at,
                created_at=found.created_at,
                updated_at=found.updated_at,
                last_fetched_at=found.last_fetched_at,
            ),
            refresh_margin=timedelta(seconds=buffer) if buffer else DEFAULT_MARGIN,
        )
        if found.labels is not None:  # the tags go with their index (store/connection_labels.py)
            key = {
                "environment": environment,
                "provider_config_key": found.provider_config_key,
                "connection_id": found.connection_id,
            }
            await self._connection_docs.update_one(key, label_update(found.labels))
