"""``Client.current``: the current routes from blocking code, each call run on the client's own loop.

Every method is :class:`AsyncCurrentApi`'s, with the same arguments and results (see its docstrings).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from ._current_async import AsyncCurrentApi
from ._current_models import (
    ConnectSession,
    ConnectSessionToken,
    CurrentConnection,
    CurrentConnectionSummary,
    CurrentIntegration,
    Provider,
)

__all__ = ["CurrentApi"]

T = TypeVar("T")


class Runner(Protocol):
    """``Client._run``: runs a coroutine on the client's loop and hands back its result."""

    def __call__(self, call: Coroutine[Any, Any, T], /) -> T: ...


class CurrentApi:
    def __init__(self, calls: AsyncCurrentApi, run: Runner) -> None:
        self._calls = calls
        self._run = run

    def __repr__(self) -> str:
        return repr(self._calls).replace("AsyncCurrentApi", "CurrentApi", 1)

    # --------------------------------------------------------------------------------------------- providers

    def list_providers(self, search: str | None = None) -> list[Provider]:
        return self._run(self._calls.list_providers(search))

    def get_provider(self, provider: str) -> Provider:
        return self._run(self._calls.get_provider(provider))

    # ------------------------------------------------------------------------------------------ integrations

    def list_integrations(self) -> list[CurrentIntegration]:
        return self._run(self._calls.list_integrations())

    def get_integration(
        self, unique_key: str, *, include_webhook: bool = False, include_credentials: bool = False
    ) -> CurrentIntegration:
        return self._run(
            self._calls.get_integration(
                unique_key, include_webhook=include_webhook, include_credentials=include_credentials
            )
        )

    def create_integration(
        self,
        provider: str,
        unique_key: str,
        *,
        display_name: str | None = None,
        credentials: Mapping[str, Any] | None = None,
        forward_webhooks: bool | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> CurrentIntegration:
        return self._run(
            self._calls.create_integration(
                provider,
                unique_key,
                display_name=display_name,
                credentials=credentials,
                forward_webhooks=forward_webhooks,
                custom=custom,
            )
        )

    def update_integration(
        self,
        unique_key: str,
        *,
        new_unique_key: str | None = None,
        display_name: str | None = None,
        credentials: Mapping[str, Any] | None = None,
        forward_webhooks: bool | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> CurrentIntegration:
        return self._run(
            self._calls.update_integration(
                unique_key,
                new_unique_key=new_unique_key,
                display_name=display_name,
                credentials=credentials,
                forward_webhooks=forward_webhooks,
                custom=custom,
            )
        )

    def delete_integration(self, unique_key: str) -> None:
        self._run(self._calls.delete_integration(unique_key))

    # ------------------------------------------------------------------------------------------- connections

    def list_connections(
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
        return self._run(
            self._calls.list_connections(
                connection_id=connection_id,
                search=search,
                end_user_id=end_user_id,
                end_user_organization_id=end_user_organization_id,
                integration_id=integration_id,
                tags=tags,
                limit=limit,
                page=page,
            )
        )

    def get_connection(
        self,
        provider_config_key: str,
        connection_id: str,
        *,
        force_refresh: bool = False,
        refresh_token: bool = False,
        refresh_github_app_jwt_token: bool = False,
    ) -> CurrentConnection:
        return self._run(
            self._calls.get_connection(
                provider_config_key,
                connection_id,
                force_refresh=force_refresh,
                refresh_token=refresh_token,
                refresh_github_app_jwt_token=refresh_github_app_jwt_token,
            )
        )

    def import_connection(
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
        return self._run(
            self._calls.import_connection(
                provider_config_key,
                credentials,
                connection_id=connection_id,
                connection_config=connection_config,
                metadata=metadata,
                end_user=end_user,
                tags=tags,
                webhook_url_override=webhook_url_override,
            )
        )

    def patch_connection(
        self,
        provider_config_key: str,
        connection_id: str,
        *,
        end_user: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        webhook_url_override: str | None = None,
    ) -> None:
        self._run(
            self._calls.patch_connection(
                provider_config_key,
                connection_id,
                end_user=end_user,
                tags=tags,
                webhook_url_override=webhook_url_override,
            )
        )

    def delete_connection(
        self, provider_config_key: str, connection_id: str, *, revoke: bool | None = None
    ) -> dict[str, Any] | None:
        return self._run(self._calls.delete_connection(provider_config_key, connection_id, revoke=revoke))

    def set_metadata(
        self, provider_config_key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        self._run(self._calls.set_metadata(provider_config_key, connection_id, metadata))

    def update_metadata(
        self, provider_config_key: str, connection_id: str | Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        self._run(self._calls.update_metadata(provider_config_key, connection_id, metadata))

    # ------------------------------------------------------------------------------------------- environment

    def rotate_webhook_signing_key(self) -> str:
        return self._run(self._calls.rotate_webhook_signing_key())

    # -------------------------------------------------------------------------------------- connect sessions

    def create_connect_session(
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
        return self._run(
            self._calls.create_connect_session(
                end_user=end_user,
                organization=organization,
                allowed_integrations=allowed_integrations,
                integrations_config_defaults=integrations_config_defaults,
                overrides=overrides,
                webhook_url_override=webhook_url_override,
                tags=tags,
            )
        )

    def create_reconnect_session(
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
        return self._run(
            self._calls.create_reconnect_session(
                connection_id,
                integration_id,
                end_user=end_user,
                organization=organization,
                integrations_config_defaults=integrations_config_defaults,
                overrides=overrides,
                webhook_url_override=webhook_url_override,
                tags=tags,
            )
        )

    def get_connect_session(self, token: str) -> ConnectSession:
        return self._run(self._calls.get_connect_session(token))
