"""Key rotation without downtime: a pending key that works beside the current one, then activated
(the only key) or reverted (dropped).

Keys pinned by settings (``KEYWAY_SECRET_KEY_DEV`` …) are rotated by changing the setting instead,
since the next start would put the pinned value back. Every change is broadcast, so each replica's
environment cache drops the old keys at once.

The webhook signing key (``X-Nango-Hmac-Sha256``) rotates in one step, as Nango rotates it: the new key
signs at once and the old one stops, the broadcast reaching the webhook dispatcher's caches too, so
even a retry of a webhook first sent before the rotation is signed with the new key.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from keyway_shared.store import Environment

from ..env_cache import ENV_CACHE
from ..http.errors import ApiError
from ..resources import SETTINGS, STORES

__all__ = ["KeyType", "activate_key", "key_pinned", "revert_key", "rotate_key", "rotate_webhook_signing_key"]

KeyType = Literal["secret", "public"]


def key_pinned(app: web.Application, env: Environment, kind: KeyType) -> bool:
    public_pin, secret_pin = app[SETTINGS].pinned_keys(env.name)
    return bool(secret_pin if kind == "secret" else public_pin)


async def rotate_key(app: web.Application, env: Environment, kind: KeyType) -> str:
    """The new, pending key."""
    if key_pinned(app, env, kind):
        raise ApiError(
            "key_pinned",
            f"The {kind} key of '{env.name}' is pinned by settings; rotate it by changing the setting.",
            status=409,
        )
    key = await app[STORES].environments.start_rotation(env.name, kind)
    await app[ENV_CACHE].changed(env.name)
    return key


async def activate_key(app: web.Application, env: Environment, kind: KeyType) -> None:
    if not await app[STORES].environments.activate_rotation(env.name, kind):
        raise ApiError("no_pending_key", f"There is no pending {kind} key to activate.", status=409)
    await app[ENV_CACHE].changed(env.name)


async def revert_key(app: web.Application, env: Environment, kind: KeyType) -> None:
    if not await app[STORES].environments.revert_rotation(env.name, kind):
        raise ApiError("no_pending_key", f"There is no pending {kind} key to revert.", status=409)
    await app[ENV_CACHE].changed(env.name)


async def rotate_webhook_signing_key(app: web.Application, env: Environment) -> str:
    """The new webhook signing key, which alone signs from now on."""
    key = await app[STORES].environments.rotate_webhook_signing_key(env.name)
    if key is None:  # the environment was deleted under the caller
        raise ApiError("not_found", "This environment has no webhook signing key", status=404)
    await app[ENV_CACHE].changed(env.name)
    return key
