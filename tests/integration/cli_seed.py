"""A small deployment for the ``keyway`` command's tests: every kind of stored secret, through the stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from auth_gateway.operations.flow_sessions import OAuthSession, OAuthSessionStore
from keyway_shared.cipher import CredentialCipher
from keyway_shared.credentials.shapes import OAuth2Credentials
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionUpdated, EventData, make_event, utcnow
from keyway_shared.settings import BaseServiceSettings
from keyway_shared.store import (
    Connection,
    ConnectionStore,
    Database,
    EnvironmentStore,
    Integration,
    IntegrationStore,
    WebhookKeyStore,
    WebhookSettings,
)

ENVIRONMENTS = ("dev", "prod")


def settings_for(mongo_url: str, db_name: str, key: str, *old: str) -> BaseServiceSettings:
    return BaseServiceSettings(
        mongodb_url=mongo_url,
        mongodb_database=db_name,
        encryption_key=key,  # type: ignore[arg-type]  # pydantic turns it into a SecretStr
        encryption_keys_old=list(old),  # type: ignore[arg-type]
    )


def connection_event(conn: Connection, created: bool) -> CloudEvent[EventData]:
    fields: dict[str, Any] = {
        "connection_id": conn.connection_id,
        "provider_config_key": conn.provider_config_key,
        "provider": conn.provider,
        "auth_mode": "OAUTH2",
    }
    data: EventData = ConnectionCreated(**fields) if created else ConnectionUpdated(**fields)
    kind = "connection.created" if created else "connection.updated"
    return make_event(data, type=kind, source="/test/cli", environment=conn.environment)


def oauth2(connection_id: str, token: str, *, env: str = "dev") -> Connection:
    expires = utcnow() + timedelta(hours=2)
    return Connection(
        environment=env,
        provider_config_key="github",
        connection_id=connection_id,
        provider="github",
        auth_mode="OAUTH2",
        credentials=OAuth2Credentials(
            access_token=token,
            refresh_token=f"ghr_{connection_id}",
            expires_at=expires.isoformat(),
            raw={"access_token": token, "scope": "repo"},
        ),
        connection_config={"subdomain": f"sub-{connection_id}"},
        metadata={"customer": connection_id, "plan": "pro"},
        credentials_expires_at=expires,
    )


@dataclass
class Seeded:
    """What was written, to compare with what is read back."""

    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    integrations: dict[tuple[str, str], Integration] = field(default_factory=dict)
    connections: dict[tuple[str, str, str], Connection] = field(default_factory=dict)
    signing_keys: dict[str, list[str]] = field(default_factory=dict)
    oauth_session_id: str = ""


async def seed(
    client: AsyncMongoClient[dict[str, Any]], db: Database, cipher: CredentialCipher, *, connections: int
) -> Seeded:
    seeded = Seeded()
    envs = EnvironmentStore(db, cipher)
    for name in ENVIRONMENTS:
        await envs.ensure(name)
        await envs.update_settings(
            name,
            callback_url=f"https://app.example.com/{name}/callback",
            hmac_enabled=True,
            hmac_key=f"hmac-{name}-0123456789",
            webhooks=WebhookSettings(primary_url=f"https://hooks.example.com/{name}", on_auth_refresh_error=False),
        )
        pending = await envs.start_rotation(name, "secret")
        env = await envs.get(name)
        assert env is not None
        assert env.pending_secret_key == pending
        seeded.environments[name] = {
            "public_key": env.public_key,
            "secret_key": env.secret_key,
            "pending_secret_key": env.pending_secret_key,
            "hmac_key": env.hmac_key,
            "hmac_enabled": env.hmac_enabled,
            "callback_url": env.callback_url,
            "webhooks": env.webhooks,
        }
        seeded.signing_keys[name] = await WebhookKeyStore(db, cipher).signing_keys(name)
    integrations = IntegrationStore(db, cipher)
    for name in ENVIRONMENTS:
        for integration in (
            Integration(
                environment=name,
                unique_key="github",
                provider="github",
                oauth_client_id="Iv1.client",
                oauth_client_secret=f"client-secret-{name}",
                oauth_scopes="repo,user",
            ),
            Integration(
                environment=name,
                unique_key="github-app-oauth",
                provider="github-app-oauth",
                oauth_client_id="Iv1.app",
                oauth_client_secret="app-secret",
                app_link="https://github.com/apps/keyway",
                custom={"app_id": "123", "private_key": "LS0tLS1CRUdJTg=="},
            ),
        ):
            await integrations.create(integration)
            seeded.integrations[(name, integration.unique_key)] = integration
    store = ConnectionStore(client, db, cipher)
    for i in range(connections):
        conn = oauth2(f"user-{i}", f"gho_seed_{i}", env=ENVIRONMENTS[i % 2])
        await store.save_with_event(conn, lambda created, c=conn: connection_event(c, created))
        seeded.connections[(conn.environment, conn.provider_config_key, conn.connection_id)] = conn
    session = OAuthSession(
        environment="dev",
        provider_config_key="github",
        provider="github",
        auth_mode="OAUTH2",
        connection_id="user-0",
        callback_url="http://127.0.0.1/oauth/callback",
        operation_id="op-1",
        secrets={"code_verifier": "verifier-0123456789"},
    )
    await OAuthSessionStore(db, cipher).create(session)
    seeded.oauth_session_id = session.id
    return seeded
