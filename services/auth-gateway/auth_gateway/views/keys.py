"""Key rotation without downtime: ``POST /environment/{rotate,activate,revert}-key`` (secret key).

A rotation creates a pending key that already works beside the current one, so every backend (or
page) can switch to it at leisure; activating makes it the only key, reverting drops it. Keys pinned
by settings (``KEYWAY_SECRET_KEY_DEV`` …) are rotated by changing the setting instead, since the
next start would put the pinned value back.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ..env_cache import ENV_CACHE
from ..errors import ApiError
from ..keys import environment_from_secret_key
from ..requests import json_object, validated_body
from ..resources import SETTINGS, STORES

__all__ = ["activate_key", "revert_key", "rotate_key"]


class KeyKind(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["secret", "public"]


async def _kind(request: web.Request) -> tuple[str, str]:
    env = await environment_from_secret_key(request)
    return env.name, validated_body(KeyKind, await json_object(request)).type


async def rotate_key(request: web.Request) -> web.Response:
    name, kind = await _kind(request)
    public_pin, secret_pin = request.app[SETTINGS].pinned_keys(name)
    if (kind == "secret" and secret_pin) or (kind == "public" and public_pin):
        raise ApiError(
            "key_pinned",
            f"The {kind} key of '{name}' is pinned by settings; rotate it by changing the setting.",
            status=409,
        )
    key = await request.app[STORES].environments.start_rotation(name, kind)
    await request.app[ENV_CACHE].changed(name)
    return web.json_response({"key": key})


async def activate_key(request: web.Request) -> web.Response:
    name, kind = await _kind(request)
    if not await request.app[STORES].environments.activate_rotation(name, kind):
        raise ApiError("no_pending_key", f"There is no pending {kind} key to activate.", status=409)
    await request.app[ENV_CACHE].changed(name)
    return web.json_response({"success": True})


async def revert_key(request: web.Request) -> web.Response:
    name, kind = await _kind(request)
    if not await request.app[STORES].environments.revert_rotation(name, kind):
        raise ApiError("no_pending_key", f"There is no pending {kind} key to revert.", status=409)
    await request.app[ENV_CACHE].changed(name)
    return web.json_response({"success": True})
