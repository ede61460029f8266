"""Where a Nango environment's API keys and webhook signing key live, which depends on its version.

- Until 2026-01 (v0.39 … v0.70): on ``_nango_environments`` (``secret_key``, ``pending_secret_key``,
  each with ``…_iv`` and ``…_tag``); webhooks were signed with the secret key. ``nango.py`` reads them.
- From 2026-01, ``api_secrets`` (migration ``20260119161100_add_api_secrets_table``): the row with
  ``is_default`` is the secret key, the other one (at most one) the pending key of a rotation;
  webhooks are still signed with the default one. The environment's own columns stay, unwritten.
- From 2026-04 (v0.71), ``customer_keys`` and ``customer_keys_relations`` (``20260420120000``): an app
  authenticates with any live (``deleted_at`` null) key of ``key_type = 'api'`` related to its
  environment, within the key's ``scopes`` (``environment:*`` is full access); webhooks are signed with
  the environment's ``webhook_signing`` key. ``api_secrets`` remains for Nango's own runners. Nango's
  backfill made the first API key and the signing key copies of the default secret; an environment
  created since has three different keys.

Every key is encrypted as Nango's ``encryptAPISecret`` does: ``secret``, ``iv``, ``tag`` (empty: plain).

Keyway holds two secret keys per environment, the key and a pending one, both with full access. The
full-access API keys come first, the older first; what does not fit, or gains access it did not have,
is said in the environment's notes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .nango_error import NangoError

if TYPE_CHECKING:
    from .nango import NangoReader

__all__ = ["EnvironmentKeys", "read_environment_keys"]

FULL_ACCESS = "environment:*"


@dataclass(kw_only=True)
class EnvironmentKeys:
    secret_key: str
    pending_secret_key: str | None
    webhook_signing_key: str | None  # None: the secret key (Nango of those versions signed with it)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class _ApiKey:
    id: int
    name: str
    scopes: list[str]
    secret: str

    @property
    def full_access(self) -> bool:
        return FULL_ACCESS in self.scopes


async def read_environment_keys(reader: NangoReader, names: dict[int, str]) -> dict[int, EnvironmentKeys]:
    """The keys of the environments ``names`` (id → name) in a Nango that keeps them in tables of their
    own; {} for one that keeps them on its environments."""
    if not names or not await reader.columns("api_secrets"):
        return {}
    secrets = await _api_secrets(reader, names)
    if not await reader.columns("customer_keys"):
        return {
            env_id: EnvironmentKeys(secret_key=default, pending_secret_key=pending, webhook_signing_key=default)
            for env_id, (default, pending) in secrets.items()
        }
    api, signing, shared = await _customer_keys(reader, names)
    found = {}
    for env_id in names:
        default, _ = secrets[env_id]
        keys = sorted(api.get(env_id, []), key=lambda k: (not k.full_access, k.id))
        notes = []
        if keys:
            secret_key, pending = keys[0].secret, keys[1].secret if len(keys) > 1 else None
        else:
            secret_key, pending = default, None
            notes.append("no API key: Nango's internal default secret becomes its secret key")
        if len(keys) > 2:
            left = ", ".join(repr(k.name) for k in keys[2:])
            notes.append(f"API keys not brought across (Keyway holds two per environment): {left}")
        for key in keys[:2]:
            if not key.full_access:
                notes.append(f"API key {key.name!r} had the scopes {', '.join(key.scopes)}; here it has full access")
        if shared.get(env_id):
            notes.append(f"API keys shared with other environments, not brought across: {', '.join(shared[env_id])}")
        if env_id not in signing:
            notes.append("no webhook signing key: its webhooks are signed with its secret key")
        found[env_id] = EnvironmentKeys(
            secret_key=secret_key,
            pending_secret_key=pending,
            webhook_signing_key=signing.get(env_id, secret_key),
            notes=notes,
        )
    return found


async def _api_secrets(reader: NangoReader, names: dict[int, str]) -> dict[int, tuple[str, str | None]]:
    """Each environment's default secret and its pending one."""
    rows = await reader.select(
        "api_secrets",
        ["environment_id", "secret", "iv", "tag", "is_default"],
        [],
        "WHERE environment_id = ANY(%s) ORDER BY id",
        (list(names),),
    )
    defaults: dict[int, str] = {}
    pending: dict[int, str] = {}
    for row in rows:
        env_id = int(row["environment_id"])
        kind = "default" if row["is_default"] else "pending"
        what = f"environment {names[env_id]} ({kind} API secret)"
        secret = str(reader.maybe_decrypt(row["secret"], row["iv"], row["tag"], what=what))
        (defaults if row["is_default"] else pending)[env_id] = secret
    missing = sorted(name for env_id, name in names.items() if env_id not in defaults)
    if missing:
        raise NangoError(f"api_secrets has no default secret for the environment(s) {', '.join(missing)}")
    return {env_id: (defaults[env_id], pending.get(env_id)) for env_id in names}


async def _customer_keys(
    reader: NangoReader, names: dict[int, str]
) -> tuple[dict[int, list[_ApiKey]], dict[int, str], dict[int, list[str]]]:
    """Per environment: its live API keys, its webhook signing key, and the names of the API keys it
    shares with other environments (in Nango such a key serves none of them alone)."""
    relations = await reader.select(
        "customer_keys_relations",
        ["customer_key_id", "entity_type", "entity_id"],
        [],
        "WHERE entity_type = 'environment'",
    )
    environments_of: dict[int, list[int]] = {}
    for row in relations:
        environments_of.setdefault(int(row["customer_key_id"]), []).append(int(row["entity_id"]))
    wanted = sorted(key_id for key_id, envs in environments_of.items() if set(envs) & set(names))
    rows = await reader.select(
        "customer_keys",
        ["id", "key_type", "display_name", "secret", "iv", "tag", "deleted_at"],
        ["scopes"],
        "WHERE id = ANY(%s) AND deleted_at IS NULL ORDER BY id",
        (wanted,),
    )
    spread = Counter({key_id: len(set(envs)) for key_id, envs in environments_of.items()})
    api: dict[int, list[_ApiKey]] = {}
    signing: dict[int, str] = {}
    shared: dict[int, list[str]] = {}
    for row in rows:
        for env_id in environments_of[int(row["id"])]:
            if env_id not in names:
                continue
            name = str(row["display_name"])
            if row["key_type"] == "webhook_signing":
                what = f"environment {names[env_id]} (webhook signing key)"
                signing.setdefault(env_id, _secret(reader, row, what))
            elif row["key_type"] == "api" and spread[int(row["id"])] > 1:
                shared.setdefault(env_id, []).append(repr(name))
            elif row["key_type"] == "api":
                what = f"environment {names[env_id]} (API key {name!r})"
                scopes = [str(s) for s in row.get("scopes") or []]
                api.setdefault(env_id, []).append(
                    _ApiKey(id=int(row["id"]), name=name, scopes=scopes, secret=_secret(reader, row, what))
                )
    return api, signing, shared


def _secret(reader: NangoReader, row: dict[str, Any], what: str) -> str:
    return str(reader.maybe_decrypt(row["secret"], row["iv"], row["tag"], what=what))
