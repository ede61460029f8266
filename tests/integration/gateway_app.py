"""Running the gateway in the test process, on the real broker and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp.test_utils import TestClient, TestServer

from auth_gateway.app import create_app
from auth_gateway.settings import GatewaySettings

from ..support.catalog import providers_file
from ..support.procs import free_port


@dataclass
class Gateway:
    client: TestClient  # type: ignore[type-arg]
    settings: GatewaySettings
    secret_key: str
    public_key: str

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


@asynccontextmanager
async def running_gateway(
    *,
    mongo_url: str,
    db_name: str,
    amqp_url: str,
    namespace: str,
    encryption_key: str,
    keys_of: Gateway | None = None,
    **extra: object,
) -> AsyncIterator[Gateway]:
    """One gateway; ``keys_of`` another one makes this a second replica of the same environment."""
    if keys_of is not None:
        secret_key, public_key = keys_of.secret_key, keys_of.public_key
    else:
        secret_key, public_key = str(uuid.uuid4()), str(uuid.uuid4())
    port = free_port()
    extra.setdefault("public_url", f"http://127.0.0.1:{port}")
    # Most tests exercise the 2024 public-key protocol on purpose; the secure default has its own tests.
    extra.setdefault("public_key_connect", "allowed")
    extra["providers_file"] = providers_file(extra.get("providers_file"))  # type: ignore[arg-type]
    settings = GatewaySettings(
        mongodb_url=mongo_url,
        mongodb_database=db_name,
        amqp_url=amqp_url,
        bus_namespace=namespace,
        queue_type="classic",
        encryption_key=encryption_key,
        KEYWAY_SECRET_KEY_DEV=secret_key,
        KEYWAY_PUBLIC_KEY_DEV=public_key,
        **extra,  # type: ignore[arg-type]
    )
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        yield Gateway(client=client, settings=settings, secret_key=secret_key, public_key=public_key)


class StartGateway(Protocol):
    """The ``start_gateway`` fixture: :func:`running_gateway` on this test's database, broker and namespace.

    Keywords are the test's own settings (and ``keys_of``); one that names the infrastructure, such
    as ``amqp_url`` through a proxy, replaces the test's.
    """

    def __call__(self, **settings: object) -> AbstractAsyncContextManager[Gateway]: ...


async def create_integration(gw: Gateway, provider: str, key: str, **fields: Any) -> None:
    """``POST /config``: the integration ``key`` of the catalog's ``provider``, with ``fields`` such as its client."""
    resp = await gw.client.post(
        "/config", json={"provider": provider, "provider_config_key": key, **fields}, headers=gw.auth
    )
    assert resp.status == 200, await resp.text()


def providers_yaml(tmp_path: Path, catalog: Mapping[str, object]) -> str:
    """Write ``catalog`` as the test's ``providers.yaml`` and give its path, for ``providers_file=``."""
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(dict(catalog)))
    return str(path)
