"""``AsyncClient.current``: Nango's current API generation, the routes ``@nangohq/node`` 0.71 calls.

The client's own methods speak the 2024 routes (``/connection``, ``/config``, …) and keep doing so;
the current routes answer other shapes (``{"data": …}``, connections with their end user, tags and
errors), take other inputs (filters, includes, connect sessions), and refuse in Nango's current
envelope, which maps to the same exception tree. Method names are the node SDK's, in snake_case;
``import_connection`` and ``get_connect_session`` have no node equivalent (the node SDK has no call
for ``POST /connections``, and reading a session is its frontend SDK's business).

The server checks every input as Nango does; nothing is checked twice here, so a refusal always
comes back as the gateway words it (``ValidationError`` with ``errors``, zod's issue list).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._current_models import (
    ConnectSession,
    ConnectSessionToken,
    CurrentConnection,
    CurrentConnectionSummary,
    CurrentIntegration,
    Provider,
    data_of,
    parse_connect_session,
    parse_connect_session_token,
    parse_current_connection,
    parse_current_connection_summary,
    parse_current_integration,
    parse_provider,
)
from ._errors import TransportError
from ._http import Transport, flag, segment

__all__ = ["AsyncCurrentApi"]


def _without_none(**fields: Any) -> dict[str, Any]:
    """A body of the fields given: Nango's schemas refuse ``null`` where a field is optional."""
    return {name: value for name, value in fields.items() if value is not None}


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


def _list_of(body: Any, name: str, what: str) -> list[Any]:
    items = body.get(name) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise TransportError(f"{what}: no {name!r} list in the answer")
    return items


class AsyncCurrentApi:
    """The current routes over one client's connection pool and secret key."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def __repr__(self) -> str:
        return f"AsyncCurrentApi(host={self._http.host!r})"

    # --------------------------------------------------------------------------------------------- providers

    async def list_providers(self, search: str | None = None) -> list[Provider]:
        """The provider catalog; ``search`` keeps the names it is found in (case aside)."""
        params = [("search", search)] if search is not None else None
        body = await self._http.call("GET", "/providers", params=params)
        items = data_of(body, "GET /providers")
        if not isinstance(items, list):
            raise TransportError("GET /providers: 'data' is not a list")
        return [parse_provider(item) for item in items]

    async def get_provider(self, provider: str) -> Provider:
        body = await self._http.call("GET", f"/providers/{segment(provider)}")
        return parse_provider(data_of(body, "GET /providers/{provider}"))

    # ------------------------------------------------------------------------------------------ integrations

    async def list_integrations(self) -> list[CurrentIntegration]:
        body = await self._http.call("GET", "/integrations")
        items = data_of(body, "GET /integrations")
        if not isinstance(items, list):
            raise TransportError("GET /integrations: 'data' is not a list")
        return [parse_current_integration(item) for item in items]

    async def get_integration(
        self, unique_key: str, *, include_webhook: bool = False, include_credentials: bool = False
    ) -> CurrentIntegration:
        """One integration; ``include_credentials`` adds its app (client, secret, scopes …),
        ``include_webhook`` the URL its provider's webhooks are received at."""
        asked = (("webhook", include_webhook), ("credentials", include_credentials))
        params = [("include", name) for name, wanted in asked if wanted]
        body = await self._http.call("GET", f"/integrations/{segment(unique_key)}", params=params or None)
        return parse_current_integration(data_of(body, "GET /integrations/{uniqueKey}"))

    async def create_integration(
        self,
        provider: str,
        unique_key: str,
        *,
        display_name: str | None = None,
        credentials: Mapping[str, Any] | None = None,
        forward_webhooks: bool | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> CurrentIntegration:
        """Add an integration of a catalog provider.

        ``credentials`` is the app, in Nango's shape for the provider's auth mode:
        ``{"type": "OAUTH2", "client_id": …, "client_secret": …, "scopes": "a,b"}`` (OAUTH1 and TBA
        alike, ``webhook_secret`` optional), ``{"type": "APP", "app_id", "app_link", "private_key"}``,
        or CUSTOM with both. OAuth, APP and CUSTOM providers need it.
        """
        body = _without_none(
            provider=provider,
            unique_key=unique_key,
            display_name=display_name,
            credentials=_plain(credentials),
            forward_webhooks=forward_webhooks,
            custom=_plain(custom),
        )
        answer = await self._http.call("POST", "/integrations", json_body=body)
        return parse_current_integration(data_of(answer, "POST /integrations"))

    async def update_integration(
        self,
        unique_key: str,
        *,
        new_unique_key: str | None = None,
        display_name: str | None = None,
        credentials: Mapping[str, Any] | None = None,
        forward_webhooks: bool | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> CurrentIntegration:
        """Change what is given and keep the rest; ``new_unique_key`` renames the integration (refused
        while it has connections)."""
        body = _without_none(
            unique_key=new_unique_key,
            display_name=display_name,
            credentials=_plain(credentials),
            forward_webhooks=forward_webhooks,
            custom=_plain(custom),
        )
        answer = await self._http.call("PATCH", f"/integrations/{segment(unique_key)}", json_body=body)
        return parse_current_integration(data_of(answer, "PATCH /integrations/{uniqueKey}"))

    async def delete_integration(self, unique_key: str) -> None:
        await self._http.call("DELETE", f"/integrations/{segment(unique_key)}")

    # ------------------------------------------------------------------------------------------- connections

    async def list_connections(
        self,
        *,
        connection_id: str | None = None,
        search: str | None = None,
        end_user_id: str | None = None,
        end_user_organization_id: str | None = None,
        integration_id: str | Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[CurrentConnectionSummary]:
        """The environment's connections, newest first, with every filter given (all must match).

        ``search`` finds text in the connection id or the end user's fields; ``integration_id`` is one
        key or several; ``tags`` must all be on the connection (keys compared lowercased, values as
        given). ``limit`` (1 to 2000) and ``page`` (from 0) take one page; a page past the end is empty.
        """
        params: list[tuple[str, str]] = []
        for name, value in (
            ("connectionId", connection_id),
            ("search", search),
            ("endUserId", end_user_id),
            ("endUserOrganizationId", end_user_organization_id),
        ):
            if value is not None:
                params.append((name, value))
        if integration_id is not None:
            keys = integration_id if isinstance(integration_id, str) else ",".join(integration_id)
            params.append(("integrationId", keys))
        params += [(f"tags[{key}]", value) for key, value in (tags or {}).items()]  # Express's bracket form
        if limit is not None:
            params.append(("limit", str(limit)))
        if page is not None:
            params.append(("page", str(page)))
        body = await self._http.call("GET", "/connections", params=params or None)
        return [parse_current_connection_summary(item) for item in _list_of(body, "connections", "GET /connections")]

    async def get_connection(
        self,
        provider_config_key: str,
        connection_id: str,
        *,
        force_refresh: bool = False,
        refresh_token: bool = False,
        refresh_github_app_jwt_token: bool = False,
    ) -> CurrentConnection:
        """The connection with its credentials (renewed first when due, or when ``force_refresh``);
        ``refresh_token`` includes the refresh token, ``refresh_github_app_jwt_token`` mints a GitHub
        App connection's token now."""
        body = await self._http.call(
            "GET",
            f"/connections/{segment(connection_id)}",
            params=[
                ("provider_config_key", provider_config_key),
                ("force_refresh", flag(force_refresh)),
                ("refresh_token", flag(refresh_token)),
                ("refresh_github_app_jwt_token", flag(refresh_github_app_jwt_token)),
            ],
        )
        return parse_current_connection(body)

    async def import_connection(
        self,
        provider_config_key: str,
        credentials: Mapping[str, Any],
        *,
        connection_id: str | None = None,
        connection_config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        end_user: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        webhook_url_override: str | None = None,
    ) -> CurrentConnection:
        """Create (or overwrite) a connection from credentials the app already holds.

        ``credentials`` in Nango's shape, its ``type`` the integration's auth mode:
        ``{"type": "API_KEY", "apiKey": …}``, ``{"type": "BASIC", "username", "password"}``,
        ``{"type": "OAUTH2", "access_token", "refresh_token"?, "expires_at"?}``, OAUTH1, TBA, NONE.
        Without ``connection_id`` the gateway picks one. Answers the connection as stored, refresh
        token included.
        """
        body = _without_none(
            provider_config_key=provider_config_key,
            connection_id=connection_id,
            credentials=dict(credentials),
            connection_config=_plain(connection_config),
            metadata=_plain(metadata),
            end_user=_plain(end_user),
            tags=_plain(tags),
            webhook_url_override=webhook_url_override,
        )
        answer = await self._http.call("POST", "/connections", json_body=body)
        return parse_current_connection(answer)

    async def patch_connection(
        self,
        provider_config_key: str,
        connection_id: str,
        *,
        end_user: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        webhook_url_override: str | None = None,
    ) -> None:
        """Set the connection's end user (``{"id", "email"?, "display_name"?, "tags"?}``), its tags
        (replacing them all) or its webhook URL override (``""`` removes it); what is not given stays."""
        body = _without_none(end_user=_plain(end_user), tags=_plain(tags), webhook_url_override=webhook_url_override)
        await self._http.call(
            "PATCH",
            f"/connections/{segment(connection_id)}",
            params=[("provider_config_key", provider_config_key)],
            json_body=body,
        )

    async def delete_connection(
        self, provider_config_key: str, connection_id: str, *, revoke: bool | None = None
    ) -> dict[str, Any] | None:
        """Delete the connection. Revoking its tokens at the provider is Keyway's opt-in: ``revoke=True``
        asks for it, ``False`` refuses it, None leaves it to the integration's ``revoke_on_delete``.
        Returns what the provider answered when a revocation was tried (``status``, ``detail``,
        ``tokens``), else None; a failed revocation still deletes."""
        params = [("provider_config_key", provider_config_key)]
        if revoke is not None:
            params.append(("revoke", flag(revoke)))
        body = await self._http.call("DELETE", f"/connections/{segment(connection_id)}", params=params)
        revocation = body.get("revocation") if isinstance(body, dict) else None
        return dict(revocation) if isinstance(revocation, Mapping) else None

    async def set_metadata(
        self, provider_config_key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        """Replace the metadata of one connection, or of several (a list of ids): all or none."""
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
        body = {"connection_id": ids, "provider_config_key": key, "metadata": dict(metadata)}
        await self._http.call(method, "/connections/metadata", json_body=body)

    # ------------------------------------------------------------------------------------------- environment

    async def rotate_webhook_signing_key(self) -> str:
        """A new webhook signing key for the environment, which alone signs ``X-Nango-Hmac-Sha256``
        from now on: pass it to ``verify_webhook(webhook_signing_key=…)``."""
        body = await self._http.call("POST", "/environment/webhook-signing-key/rotate")
        key = data_of(body, "POST /environment/webhook-signing-key/rotate")
        signing_key = key.get("webhook_signing_key") if isinstance(key, dict) else None
        if not isinstance(signing_key, str):
            raise TransportError("POST /environment/webhook-signing-key/rotate: no 'webhook_signing_key'")
        return signing_key

    # -------------------------------------------------------------------------------------- connect sessions

    async def create_connect_session(
        self,
        *,
        end_user: Mapping[str, Any] | None = None,
        organization: Mapping[str, Any] | None = None,
        allowed_integrations: Sequence[str] | None = None,
        integrations_config_defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        webhook_url_override: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ConnectSessionToken:
        """A connect session for the frontend's Connect UI (or its ``connect_link``).

        ``end_user`` (``{"id", "email"?, "display_name"?, "tags"?}``) is required unless ``tags`` are
        given; the connection the session makes carries it, the ``organization``, the ``tags`` and the
        ``webhook_url_override``. ``allowed_integrations`` limits what it may connect;
        ``integrations_config_defaults`` (per key: ``user_scopes``, ``authorization_params``,
        ``connection_config``) and ``overrides`` (per key: ``docs_connect``) apply whatever the
        browser sends.
        """
        body = _without_none(
            end_user=_plain(end_user),
            organization=_plain(organization),
            allowed_integrations=list(allowed_integrations) if allowed_integrations is not None else None,
            integrations_config_defaults=_plain(integrations_config_defaults),
            overrides=_plain(overrides),
            webhook_url_override=webhook_url_override,
            tags=_plain(tags),
        )
        answer = await self._http.call("POST", "/connect/sessions", json_body=body)
        return parse_connect_session_token(data_of(answer, "POST /connect/sessions"))

    async def create_reconnect_session(
        self,
        connection_id: str,
        integration_id: str,
        *,
        end_user: Mapping[str, Any] | None = None,
        organization: Mapping[str, Any] | None = None,
        integrations_config_defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        webhook_url_override: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ConnectSessionToken:
        """A connect session that may only authorize this one existing connection again, under the
        same id. Without ``end_user`` the connection's own stays; tags and a webhook URL given here
        replace the connection's."""
        body = _without_none(
            connection_id=connection_id,
            integration_id=integration_id,
            end_user=_plain(end_user),
            organization=_plain(organization),
            integrations_config_defaults=_plain(integrations_config_defaults),
            overrides=_plain(overrides),
            webhook_url_override=webhook_url_override,
            tags=_plain(tags),
        )
        answer = await self._http.call("POST", "/connect/sessions/reconnect", json_body=body)
        return parse_connect_session_token(data_of(answer, "POST /connect/sessions/reconnect"))

    async def get_connect_session(self, token: str) -> ConnectSession:
        """What a connect session allows, read with the session's own token (not the secret key)."""
        body = await self._http.call("GET", "/connect/session", authorization=f"Bearer {token}")
        return parse_connect_session(data_of(body, "GET /connect/session"))
