"""Key rotation without downtime: ``POST /environment/{rotate,activate,revert}-key`` (secret key).

A rotation creates a pending key that already works beside the current one, so every backend (or
page) can switch to it at leisure; activating makes it the only key, reverting drops it. What each
step does is ``operations.environment_keys``, which the dashboard's buttons call too.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from keyway_shared.store import Environment

from ..http.requests import json_object, validated_body
from ..operations import environment_keys as operation
from ..operations.callers import secret_key
from ..operations.environment_keys import KeyType

__all__ = ["KeyKind", "activate_key", "revert_key", "rotate_key"]


class KeyKind(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: KeyType


async def _kind(request: web.Request) -> KeyType:
    return validated_body(KeyKind, await json_object(request)).type


@secret_key
async def rotate_key(request: web.Request, env: Environment) -> web.Response:
    kind = await _kind(request)
    return web.json_response({"key": await operation.rotate_key(request.app, env, kind)})


@secret_key
async def activate_key(request: web.Request, env: Environment) -> web.Response:
    kind = await _kind(request)
    await operation.activate_key(request.app, env, kind)
    return web.json_response({"success": True})


@secret_key
async def revert_key(request: web.Request, env: Environment) -> web.Response:
    kind = await _kind(request)
    await operation.revert_key(request.app, env, kind)
    return web.json_response({"success": True})
