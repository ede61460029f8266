"""The asynchronous client: the backend API's calls (spec §3.1), with typed results and typed errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Required, TypedDict, Unpack

from yarl import URL

from ._credentials import Credentials, OAuth2Credentials
from ._current_async import AsyncCurrentApi
from ._errors import TransportError, error_from_response
from ._http import Params, Transport, flag, is_envelope, query_pairs, segment
from ._models import (
    Connection,
    ConnectionSummary,
    Integration,
    IntegrationSummary,
    ProxyResponse,
    Timeout,
    parse_connection,
    parse_connection_summary,
    parse_integration,
    parse_integration_summary,
)
from ._webhooks import verify_webhook

__all__ = ["DEFAULT_TIMEOUT", "AsyncClient", "ProxyCall"]

DEFAULT_TIMEOUT = Timeout()


class ProxyCall(TypedDict, total=False):
    """The keyword arguments of ``proxy`` but ``method``, for the ``get``/``post``/… shortcuts."""

    provider_config_key: Required[str]
    connection_id: Required[str]
    endpoint: Required[str]
    headers: Mapping[str, str] | None
    params: Params | None
    data: Any
    retries: int
    retry_on: Sequence[int] | None
    base_url_override: str | None


class AsyncClient:
    """Keyway's backend API from asyncio code. Use as ``async with AsyncClient(...) as keyway:``.

    The aiohttp session opens on the first call, on the event loop running it, and every later call
    must come from that loop; ``aclose()`` (or leaving the ``async with``) closes it.

    These methods call Nango's 2024 routes; ``current`` (:class:`AsyncCurrentApi`) calls its current
    ones, what ``@nangohq/node`` 0.71 calls (providers, connections with end users and tags, connect
    sessions …).
    """

    def __init__(
        self,
        *,
        host: str,
        secret_key: str,
        timeout: float | Timeout = DEFAULT_TIMEOUT,
        user_agent: str | None = None,
    ) -> None:
        limits = timeout if isinstance(timeout, Timeout) else Timeout(total=timeout)
        self._http = Transport(host=host, secret_key=secret_key, timeout=limits, user_agent=user_agent)
        self._secret_key = secret_key
        # Nango's current routes (/providers, /integrations, /connections, connect sessions …), on
        # the same connection pool; this class's own methods keep speaking the 2024 routes.
        self.current = AsyncCurrentApi(self._http)

    def __repr__(self) -> str:
        return f"AsyncClient(host={self._http.host!r})"  # never the key

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.close()

    # ------------------------------------------------------------------------------------------- connections

    async def get_connection(
        self, provider_config_key: str, connection_id: str, *, force_refresh: bool = False, refresh_token: bool = False
    ) -> Connection:
        """The connection with its credentials; ``force_refresh`` renews the access token first,
        ``refresh_token`` includes the refresh token (left out otherwise)."""
        body = await self._http.call(
            "GET",
            f"/connection/{segment(connection_id)}",
            params=[
                ("provider_config_key", provider_config_key),
                ("force_refresh", flag(force_refresh)),
                ("refresh_token", flag(refresh_token)),
            ],
        )
        return parse_connection(body)

    async def get_token(
        self, provider_config_key: str, connection_id: str, *, force_refresh: bool = False
    ) -> str | Credentials:
        """As the node SDK's ``getToken``: the access token for OAuth 2, else the whole credentials
        (``OAuth1Credentials`` holds ``oauth_token`` and ``oauth_token_secret``)."""
        connection = await self.get_connection(provider_config_key, connection_id, force_refresh=force_refresh)
        if isinstance(connection.credentials, OAuth2Credentials):
            return connection.credentials.access_token
        return connection.credentials

    async def get_raw_token_response(
        self, provider_config_key: str, connection_id: str, *, force_refresh: bool = False
    ) -> dict[str, Any]:
        """The provider's token response as stored (``credentials.raw``; ``{}`` when there is none)."""
        connection = await self.get_connection(provider_config_key, connection_id, force_refresh=force_refresh)
        raw = connection.credentials.data.get("raw")
        return dict(raw) if isinstance(raw, Mapping) else {}

    async def list_connections(self, connection_id: str | None = None) -> list[ConnectionSummary]:
        """Every connection of the environment, newest first; only those with this id when given."""
        params = [("connectionId", connection_id)] if connection_id else None
        body = await self._http.call("GET", "/connection", params=params)
        items = body.get("connections") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise TransportError("GET /connection: no 'connections' list in the answer")
        return [parse_connection_summary(item) for item in items]

    async def delete_connection(self, provider_config_key: str, connection_id: str) -> None:
        await self._http.call(
            "DELETE", f"/connection/{segment(connection_id)}", params=[("provider_config_key", provider_config_key)]
        )

    async def set_metadata(
        self, provider_config_key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        """Replace the metadata of one connection, or of several (a list of ids) at once."""
        await self._metadata("POST", provider_config_key, connection_id, metadata)

    async def update_metadata(
        self, provider_config_key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        """Merge ``metadata`` into the stored metadata (top-level keys replaced, others kept)."""
        await self._metadata("PATCH", provider_config_key, connection_id, metadata)

    async def _metadata(
        self, method: str, key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        ids: str | list[str] = connection_id if isinstance(connection_id, str) else list(connection_id)
        body = {"metadata": dict(metadata), "connection_id": ids, "provider_config_key": key}
        await self._http.call(method, "/connection/metadata", json_body=body)

    async def get_metadata(self, provider_config_key: str, connection_id: str) -> dict[str, Any] | None:
        """The connection's metadata; None when none was ever set."""
        return (await self.get_connection(provider_config_key, connection_id)).metadata

    # ------------------------------------------------------------------------------------------ integrations

    async def list_integrations(self) -> list[IntegrationSummary]:
        body = await self._http.call("GET", "/config")
        items = body.get("configs") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise TransportError("GET /config: no 'configs' list in the answer")
        return [parse_integration_summary(item) for item in items]

    async def get_integration(self, provider_config_key: str, *, include_credentials: bool = False) -> Integration:
        body = await self._http.call(
            "GET",
            f"/config/{segment(provider_config_key)}",
            params=[("include_creds", flag(include_credentials))],
        )
        return parse_integration(body.get("config") if isinstance(body, dict) else None)

    async def create_integration(
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
        """Add an integration of a catalog provider; scopes as a list or a comma-separated string."""
        body = self._integration_body(
            provider, provider_config_key, oauth_client_id, oauth_client_secret, oauth_scopes, app_link, custom
        )
        answer = await self._http.call("POST", "/config", json_body=body)
        return parse_integration_summary(answer.get("config") if isinstance(answer, dict) else None)

    async def update_integration(
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
        """Replace an OAuth integration's client, scopes and settings (API key and Basic ones have none)."""
        body = self._integration_body(
            provider, provider_config_key, oauth_client_id, oauth_client_secret, oauth_scopes, app_link, custom
        )
        answer = await self._http.call("PUT", "/config", json_body=body)
        return parse_integration_summary(answer.get("config") if isinstance(answer, dict) else None)

    @staticmethod
    def _integration_body(
        provider: str,
        key: str,
        client_id: str | None,
        client_secret: str | None,
        scopes: str | Sequence[str] | None,
        app_link: str | None,
        custom: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"provider": provider, "provider_config_key": key}
        if client_id is not None:
            body["oauth_client_id"] = client_id
        if client_secret is not None:
            body["oauth_client_secret"] = client_secret
        if scopes is not None:
            body["oauth_scopes"] = scopes if isinstance(scopes, str) else ",".join(scopes)
        if app_link is not None:
            body["app_link"] = app_link
        if custom is not None:
            body["custom"] = dict(custom)
        return body

    async def delete_integration(self, provider_config_key: str) -> None:
        await self._http.call("DELETE", f"/config/{segment(provider_config_key)}")

    # ------------------------------------------------------------------------------------------------ proxy

    async def proxy(
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
        """Call the connection's API through Keyway, which adds the credentials.

        ``endpoint`` is the path under the provider's base URL (or ``base_url_override``); ``headers``
        go to the upstream as they are (sent as ``Nango-Proxy-<Name>``); ``data`` is sent as JSON unless
        it is ``bytes`` or ``str``. ``retries`` lets Keyway retry 5xx and 429 answers (and the statuses
        in ``retry_on``) with backoff.

        Returns whatever the upstream answered, 4xx and 5xx included (see
        ``ProxyResponse.raise_for_status``). Raises ApiError only when Keyway itself refused the call
        (an unknown connection, a missing base URL, an unreachable upstream …).
        """
        sent: dict[str, str] = {"Connection-Id": connection_id, "Provider-Config-Key": provider_config_key}
        if base_url_override:
            sent["Base-Url-Override"] = base_url_override
        if retries:
            sent["Retries"] = str(retries)
        if retry_on:
            sent["Retry-On"] = ",".join(str(code) for code in retry_on)
        for name, value in (headers or {}).items():
            sent[f"Nango-Proxy-{name}"] = value
            if name.lower() == "content-type":
                sent["Content-Type"] = value  # how Keyway learns the body's type, and passes it on
        payload: bytes | None = None
        if isinstance(data, bytes):
            payload = data
        elif isinstance(data, str):
            payload = data.encode()
        elif data is not None:
            payload = json.dumps(data, separators=(",", ":")).encode()
            sent.setdefault("Content-Type", "application/json")
        url = URL(self._http.host + "/proxy/" + endpoint.lstrip("/"))
        status, answer_headers, content = await self._http.send(
            method.upper(), url, params=query_pairs(params) or None, data=payload, headers=sent
        )
        response = ProxyResponse(status=status, headers=answer_headers, content=content)
        if not response.ok and "json" in answer_headers.get("Content-Type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
            if is_envelope(body):
                raise error_from_response(status, answer_headers, body, response.text())
        return response

    async def get(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        """``proxy(method="GET", ...)``, as the node SDK's ``get``."""
        return await self.proxy(method="GET", **call)

    async def post(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return await self.proxy(method="POST", **call)

    async def put(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return await self.proxy(method="PUT", **call)

    async def patch(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return await self.proxy(method="PATCH", **call)

    async def delete(self, **call: Unpack[ProxyCall]) -> ProxyResponse:
        return await self.proxy(method="DELETE", **call)

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
        return verify_webhook(
            body,
            headers,
            secret_key=self._secret_key,
            signing_keys=signing_keys,
            webhook_signing_key=webhook_signing_key,
            tolerance=tolerance,
            allow_legacy=allow_legacy,
        )
