"""Changing an environment's settings (``PATCH /environment`` and the dashboard's settings form).

``public_key_connect`` (``allowed``, ``hmac``, ``refused``) says what the public key may do in the
connect routes. ``hmac_enabled`` stays for clients written before it: it reads as
``public_key_connect == "hmac"``; ``true`` sets ``hmac``; ``false`` turns ``hmac`` into ``allowed``
(what turning HMAC off meant) and leaves ``refused`` refused, so an old client never opens an
environment that was closed. Given together, the two must agree. ``hmac`` needs a non-empty key.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from keyway_shared.store import Environment, WebhookSettings
from keyway_shared.store.environments import PublicKeyConnect

from ..env_cache import ENV_CACHE
from ..http.errors import ApiError
from ..http.requests import validated_body
from ..resources import SETTINGS, STORES
from .return_urls import return_url_problem

__all__ = [
    "EnvironmentPatch",
    "apply_environment_patch",
    "callback_url",
    "merged_webhooks",
    "public_key_connect_of",
]


def callback_url(app: web.Application, env: Environment) -> str:
    """The environment's own callback URL if it set one, else the gateway's ``/oauth/callback``."""
    return env.callback_url or app[SETTINGS].callback_url


class WebhookSettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    primary_url: AnyHttpUrl | None = None
    secondary_url: AnyHttpUrl | None = None
    on_auth_creation: bool | None = None
    on_auth_refresh_error: bool | None = None


class EnvironmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    callback_url: AnyHttpUrl | None = None
    public_key_connect: PublicKeyConnect | None = None
    hmac_enabled: bool | None = None
    hmac_key: str | None = None
    webhook_settings: WebhookSettingsPatch | None = None
    allowed_return_urls: list[AnyHttpUrl] | None = Field(default=None, max_length=50)

    @field_validator("allowed_return_urls")
    @classmethod
    def _usable_return_urls(cls, urls: list[AnyHttpUrl] | None) -> list[AnyHttpUrl] | None:
        for url in urls or []:
            problem = return_url_problem(str(url))
            if problem is None and (url.query or url.fragment):
                problem = "it must not have a query or fragment"
            if problem is not None:
                raise ValueError(f"'{url}' cannot be an allowed return URL: {problem}")
        return urls


def merged_webhooks(current: WebhookSettings, patch: WebhookSettingsPatch) -> WebhookSettings:
    """Fields absent from the patch keep their value; a URL given as null is cleared."""
    given = patch.model_fields_set

    def url(name: str, now: str | None) -> str | None:
        if name not in given:
            return now
        value = getattr(patch, name)
        return str(value) if value else None

    return WebhookSettings(
        primary_url=url("primary_url", current.primary_url),
        secondary_url=url("secondary_url", current.secondary_url),
        on_auth_creation=current.on_auth_creation if patch.on_auth_creation is None else patch.on_auth_creation,
        on_auth_refresh_error=current.on_auth_refresh_error
        if patch.on_auth_refresh_error is None
        else patch.on_auth_refresh_error,
    )


def _invalid(field_name: str, message: str) -> ApiError:
    return ApiError(
        "invalid_body",
        "The request body is invalid.",
        errors=[{"code": "custom", "message": message, "path": [field_name]}],
    )


def public_key_connect_of(env: Environment, patch: EnvironmentPatch) -> PublicKeyConnect | None:
    """The mode the patch asks for (None: unchanged), ``hmac_enabled`` read as the module says."""
    mode = patch.public_key_connect
    if patch.hmac_enabled is not None:
        implied: PublicKeyConnect = (
            "hmac" if patch.hmac_enabled else "allowed" if env.public_key_connect == "hmac" else env.public_key_connect
        )
        if mode is not None and (mode == "hmac") != patch.hmac_enabled:
            raise _invalid("hmac_enabled", f"hmac_enabled {patch.hmac_enabled} contradicts public_key_connect '{mode}'")
        mode = mode or implied
    hmac_key = env.hmac_key if patch.hmac_key is None else patch.hmac_key
    if (mode or env.public_key_connect) == "hmac" and not hmac_key.strip():
        raise _invalid("hmac_key", "HMAC needs a key: give a non-empty hmac_key (anyone could sign with an empty one)")
    return mode


async def apply_environment_patch(app: web.Application, env: Environment, raw: dict[str, Any]) -> Environment:
    """``PATCH /environment``'s work, which the dashboard does too."""
    patch = validated_body(EnvironmentPatch, raw)
    public_key_connect = public_key_connect_of(env, patch)
    webhooks = merged_webhooks(env.webhooks, patch.webhook_settings) if patch.webhook_settings else None
    callback: str | object | None = ...  # Ellipsis: leave unchanged; None: clear
    if "callback_url" in patch.model_fields_set:
        callback = str(patch.callback_url) if patch.callback_url else None
    updated = await app[STORES].environments.update_settings(
        env.name,
        callback_url=callback,
        public_key_connect=public_key_connect,
        hmac_key=patch.hmac_key,
        webhooks=webhooks,
        allowed_return_urls=None if patch.allowed_return_urls is None else [str(u) for u in patch.allowed_return_urls],
    )
    assert updated is not None
    await app[ENV_CACHE].changed(env.name)
    return updated
