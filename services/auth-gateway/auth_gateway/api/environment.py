"""``GET``/``PATCH /environment``: an environment's settings, for automation as well as the dashboard.

What a patch may say, and how ``public_key_connect`` and ``hmac_enabled`` read together, is in
``operations/environment.py``, which the dashboard's settings form calls too.
``webhook_signing_key`` is the key ``X-Nango-Hmac-Sha256`` is signed with, which Nango's dashboard
shows beside the keys (its ``GET /api/v1/environment`` answer); it changes through
``POST /environment/webhook-signing-key/rotate`` only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.store import Environment

from ..http.requests import json_object
from ..http.serialize import js_iso
from ..operations.callers import secret_key
from ..operations.environment import apply_environment_patch
from ..resources import SETTINGS

__all__ = ["get_environment", "patch_environment"]


def environment_json(request: web.Request, env: Environment) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    return {
        "environment": {
            "name": env.name,
            "public_key": env.public_key,
            "pending_public_key": env.pending_public_key,
            "pending_secret_key": env.pending_secret_key,
            "callback_url": env.callback_url,
            "effective_callback_url": env.callback_url or settings.callback_url,
            "websockets_path": "/",
            "public_key_connect": env.public_key_connect,
            "hmac_enabled": env.hmac_enabled,
            "hmac_key": env.hmac_key,
            "webhook_signing_key": env.webhook_signing_key,  # keys X-Nango-Hmac-Sha256, as Nango shows it
            "webhook_settings": env.webhooks.to_doc(),
            "allowed_return_urls": env.allowed_return_urls,
            "created_at": js_iso(env.created_at),
            "updated_at": js_iso(env.updated_at),
        }
    }


@secret_key
async def get_environment(request: web.Request, env: Environment) -> web.Response:
    return web.json_response(environment_json(request, env))


@secret_key
async def patch_environment(request: web.Request, env: Environment) -> web.Response:
    updated = await apply_environment_patch(request.app, env, await json_object(request))
    return web.json_response(environment_json(request, updated))
