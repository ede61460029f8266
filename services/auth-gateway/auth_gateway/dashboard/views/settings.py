"""Environment Settings: API keys (reveal, copy, rotation), callback URL, webhooks (URLs, toggles,
signing keys, the Nango webhook signing key), what the public key may do (refused, HMAC, allowed)
with the HMAC key, and the webhook delivery attempts with replay."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.service import MONGO_DB
from keyway_shared.store.webhook_deliveries import DeliveryLog, public_attempt
from keyway_shared.store.webhook_endpoints import EndpointStore

from ...http.errors import ApiError
from ...operations.environment import callback_url
from ...resources import SETTINGS
from .. import api
from ..pages import Page, page

__all__ = [
    "change_key",
    "enable_endpoint",
    "replay_delivery",
    "reveal_secret",
    "rotate_webhook_key",
    "rotate_webhook_signing_key",
    "save_settings",
    "settings_page",
]

_REVEALABLE = {
    "secret_key": "secret key",
    "pending_secret_key": "pending secret key",
    "hmac_key": "HMAC key",
    "webhook_keys": "webhook signing keys",
    "webhook_signing_key": "Nango webhook signing key",
}
_SECTIONS = ("callback", "webhooks", "hmac")


async def _deliveries(page: Page, limit: int = 50) -> list[dict[str, Any]]:
    """The latest attempts, as ``GET /webhooks/deliveries`` lists them."""
    docs = await DeliveryLog(page.app[MONGO_DB]).attempts(page.env.name, limit=limit)
    return [public_attempt(doc) for doc in docs]


async def _endpoints(page: Page) -> list[dict[str, Any]]:
    """The configured URLs and whether each is disabled, as ``GET /webhooks/endpoints`` lists them."""
    states = await EndpointStore(page.app[MONGO_DB]).in_environment(page.env.name)
    shown = []
    for slot, url in (("primary", page.env.webhooks.primary_url), ("secondary", page.env.webhooks.secondary_url)):
        if url:
            state = states.get(url)
            shown.append({"slot": slot, **(state.to_json() if state else {"url": url, "disabled": False})})
    return shown


async def _view(
    page: Page, *, revealed: str | None = None, errors: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    settings = page.app[SETTINGS]
    public_pin, secret_pin = settings.pinned_keys(page.env.name)
    signing_keys = await page.dashboard.webhook_keys.keys(page.env.name)
    return page.render(
        "settings.html",
        section="settings",
        revealed=revealed,
        errors=errors or {},
        public_pinned=bool(public_pin),
        secret_pinned=bool(secret_pin),
        default_callback_url=settings.callback_url,
        effective_callback_url=callback_url(page.request.app, page.env),
        signing_keys=signing_keys,
        deliveries=await _deliveries(page),
        endpoints=await _endpoints(page),
        status=status,
    )


@page
async def settings_page(page: Page) -> web.StreamResponse:
    return await _view(page)


@page
async def reveal_secret(page: Page) -> web.StreamResponse:
    what = page.field("what")
    if what not in _REVEALABLE:
        return await _view(page, status=400)
    await api.log_activity(
        page.request,
        page.env,
        operation_type="admin:reveal_secret",
        message=f"The {_REVEALABLE[what]} of '{page.env.name}' revealed in the dashboard by {page.session.user}",
        meta={"what": what},
    )
    return await _view(page, revealed=what)


def _patch_of(page: Page, section: str) -> dict[str, Any]:
    """The ``PATCH /environment`` body one form section stands for."""
    if section == "callback":
        return {"callback_url": page.field("callback_url") or None}
    if section == "webhooks":
        return {
            "webhook_settings": {
                "primary_url": page.field("primary_url") or None,
                "secondary_url": page.field("secondary_url") or None,
                # An unchecked box sends nothing: the section's hidden marker tells us the form was sent.
                "on_auth_creation": page.field("on_auth_creation") == "on",
                "on_auth_refresh_error": page.field("on_auth_refresh_error") == "on",
            }
        }
    body: dict[str, Any] = {"public_key_connect": page.field("public_key_connect")}
    if page.field("hmac_key"):
        body["hmac_key"] = page.field("hmac_key")
    return body


@page
async def save_settings(page: Page) -> web.StreamResponse:
    section = page.field("section")
    if section not in _SECTIONS:
        return await _view(page, status=400)
    body = _patch_of(page, section)
    try:
        await api.update_environment(page.request, page.env, body)
    except ApiError as err:
        details = "; ".join(
            f"{'.'.join(e.get('path', [])[-1:]) or 'value'}: {e.get('message', '')}" for e in err.errors or []
        )
        return await _view(page, errors={section: details or err.message or err.code}, status=err.status)
    return page.redirect("settings", notice="settings_saved")


@page
async def change_key(page: Page) -> web.StreamResponse:
    kind, action = page.field("kind"), page.field("action")
    if kind not in {"secret", "public"} or action not in {"rotate", "activate", "revert"}:
        return await _view(page, status=400)
    operation = {"rotate": api.rotate_key, "activate": api.activate_key, "revert": api.revert_key}[action]
    try:
        await operation(page.request, page.env, kind)
    except ApiError as err:
        return await _view(page, errors={"keys": err.message or err.code}, status=err.status)
    notice = {"rotate": "key_rotated", "activate": "key_activated", "revert": "key_reverted"}[action]
    return page.redirect("settings", notice=notice)


@page
async def rotate_webhook_key(page: Page) -> web.StreamResponse:
    await api.rotate_webhook_key(page.request, page.env)
    return page.redirect("settings", notice="webhook_key_rotated")


@page
async def rotate_webhook_signing_key(page: Page) -> web.StreamResponse:
    await api.rotate_webhook_signing_key(page.request, page.env)
    return page.redirect("settings", notice="webhook_signing_key_rotated")


@page
async def replay_delivery(page: Page) -> web.StreamResponse:
    try:
        await api.replay_delivery(page.request, page.env, page.field("delivery_id"))
    except ApiError as err:
        return await _view(page, errors={"deliveries": err.message or err.code}, status=err.status)
    return page.redirect("settings", notice="replay_requested")


@page
async def enable_endpoint(page: Page) -> web.StreamResponse:
    try:
        await api.enable_endpoint(page.request, page.env, page.field("url"))
    except ApiError as err:
        return await _view(page, errors={"webhooks": err.message or err.code}, status=err.status)
    return page.redirect("settings", notice="endpoint_enabled")
