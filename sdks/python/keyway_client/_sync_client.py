"""The synchronous client: the asynchronous one, run on a private event loop in a thread of its own.

Why not a second implementation over ``urllib``: one code path builds every request, reads every
answer and maps every error, so the two clients cannot drift apart; the sync client keeps aiohttp's
connection pool (``urllib`` would open a connection per call); and it works the same when called
from a thread that already runs an event loop (a Jupyter cell, an ASGI app's sync helper), where
``asyncio.run`` would refuse. The private loop owns the aiohttp session from start to end, so the
session is never used from a loop other than the one it was made on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack

from ._async_client import DEFAULT_TIMEOUT, AsyncClient, ProxyCall
from ._credentials import Credentials
from ._current_sync import CurrentApi
from ._http import Params
from ._models import Connection, ConnectionSummary, Integration, IntegrationSummary, ProxyResponse, Timeout

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """Keyway's backend API from ordinary (blocking) code. Use as ``with Client(...) as keyway:``,
    or call ``close()`` when done. One instance may be shared by several threads.

    ``current`` (:class:`CurrentApi`) holds the current routes, as ``AsyncClient.current`` does."""

    def __init__(
        self,
        *,
        host: str,
        secret_key: str,
        timeout: float | Timeout = DEFAULT_TIMEOUT,
        user_agent: str | None = None,
    ) -> None:
        self._client = AsyncClient(host=host, secret_key=secret_key, timeout=timeout, user_agent=user_agent)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="keyway-client", daemon=True)
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()
        self.current = CurrentApi(self._client.current, self._run)  # see AsyncClient.current

    def __repr__(self) -> str:
        return repr(self._client).replace("AsyncClient", "Client", 1)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            call.close()
            raise RuntimeError("this Client is closed")
        if threading.current_thread() is self._thread:
            call.close()
            raise RuntimeError("a Client cannot be called from its own event loop")
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    # ------------------------------------------------------------------------------------------- connections

    def get_connection(
        self, provider_config_key: str, connection_id: str, *, force_refresh: bool = False, refresh_token: bool = False
    ) -> Connection:
        return self._run(
            self._client.get_connection(
                provider_config_key, connection_id, force_refresh=force_refresh, refresh_token=refresh_token
            )
        )

    def get_token(
        self, provider_config_key: str, connection_id: str, *, force_refresh: bool = False
    ) -> str | Credentials:
        return self._run(self._client.get_token(provider_config_key, connection_id, force_refresh=force_refresh))

    def get_raw_token_response(
        self, provider_config_key: str, connection_id: str, *, force_refresh: bool = False
    ) -> dict[str, Any]:
        return self._run(
            self._client.get_raw_token_response(provider_config_key, connection_id, force_refresh=force_refresh)
        )

    def list_connections(self, connection_id: str | None = None) -> list[ConnectionSummary]:
        return self._run(self._client.list_connections(connection_id))

    def delete_connection(self, provider_config_key: str, connection_id: str) -> None:
        self._run(self._client.delete_connection(provider_config_key, connection_id))

    def set_metadata(
        self, provider_config_key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        self._run(self._client.set_metadata(provider_config_key, connection_id, metadata))

    def update_metadata(
        self, provider_config_key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        self._run(self._client.update_metadata(provider_config_key, connection_id, metadata))

    def get_metadata(self, provider_config_key: str, connection_id: str) -> dict[str, Any] | None:
        return self._run(self._client.get_metadata(provider_config_key, connection_id))

    # ------------------------------------------------------------------------------------------ integrations

    def list_integrations(self) -> list[IntegrationSummary]:
        return self._run(self._client.list_integrations())

    def get_integration(self, provider_config_key: str, *, include_credentials: bool = False) -> Integration:
        return self._run(self._client.get_integration(provider_config_key, include_credentials=include_credentials))

    def create_integration(
        self,
        provider: str,
        provider_config_key: str,
        *,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None,
        oauth_scopes: str | Sequence[str] | None = None,
        app_link: str | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> IntegrationSummary:
        return self._run(
            self._client.create_integration(
                provider,
                provider_config_key,
                oauth_client_id=oauth_client_id,
                oauth_client_secret=oauth_client_secret,
                oauth_scopes=oauth_scopes,
                app_link=app_link,
                custom=custom,
            )
        )

    def update_integration(
        self,
        provider: str,
        provider_config_key: str,
        *,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None,
        oauth_scopes: str | Sequence[str] | None = None,
        app_link: str | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> IntegrationSummary:
        return self._run(
            self._client.update_integration(
                provider,
                provider_config_key,
                oauth_client_id=oauth_client_id,
                oauth_client_secret=oauth_client_secret,
                oauth_scopes=oauth_scopes,
                app_link=app_link,
                custom=custom,
            )
        )

    def delete_integration(self, provider_config_key: str) -> None:
        self._run(self._client.delete_integration(provider_config_key))

    # ------------------------------------------------------------------------------------------------ proxy

    def proxy(
        self,
        *,
        provider_config_key: str,
        connection_id: str,
        endpoint: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        params: Params | None = None,
        data: Any = None,
        retries: int = 0,
        retry_on: Sequence[int] | None = None,
        base_url_override: str | None = None,
    ) -> ProxyResponse:
        """See :meth:`AsyncClient.proxy`."""
        return self._run(
            self._client.proxy(
                provider_config_key=provider_config_key,
                connection_id=connection_id,
                endpoint=endpoint,
                method=method,
                headers=headers,
                params=params,
                data=data,
                retries=retries,
                retry_on=retry_on,
                base_url_override=base_url_override,
            )
        )

    def get(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return self._run(self._client.proxy(method="GET", **call))

    def post(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return self._run(self._client.proxy(method="POST", **call))

    def put(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return self._run(self._client.proxy(method="PUT", **call))

    def patch(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return self._run(self._client.proxy(method="PATCH", **call))

    def delete(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return self._run(self._client.proxy(method="DELETE", **call))

    # --------------------------------------------------------------------------------------------- webhooks

    def verify_webhook(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        signing_keys: Sequence[str] | None = None,
        webhook_signing_key: str | None = None,
        tolerance: float = 300,
        allow_legacy: bool = True,
    ) -> dict[str, Any]:
        """:func:`keyway_client.verify_webhook` with this client's secret key."""
        return self._client.verify_webhook(
            body,
            headers,
            signing_keys=signing_keys,
            webhook_signing_key=webhook_signing_key,
            tolerance=tolerance,
            allow_legacy=allow_legacy,
        )
