"""What every frontend-SDK request carries: public key, connection id, params, HMAC (spec §2.2, §7)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from aiohttp import web

from keyway_shared.store import Environment

from .connect import new_operation_id
from .errors import ApiError
from .keys import environment_from_public_key
from .requests import bracket_params

__all__ = ["FrontendRequest", "check_hmac", "expected_hmac", "frontend_request"]


@dataclass(kw_only=True)
class FrontendRequest:
    provider_config_key: str
    connection_id: str
    connection_config: dict[str, str]
    hmac: str | None
    operation_id: str = field(default_factory=new_operation_id)

    def require_ids(self) -> None:
        if not self.connection_id:
            raise ApiError("missing_connection", "Missing param 'connection_id'.")
        if not self.provider_config_key:
            raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")


async def frontend_request(request: web.Request) -> tuple[Environment, FrontendRequest]:
    """Authenticate the public key and read the common parameters (``require_ids`` checks them)."""
    env = await environment_from_public_key(request)
    provider_config_key = request.match_info.get("providerConfigKey", "").strip()
    connection_id = request.query.get("connection_id", "").strip()
    params = {k: v for k, v in bracket_params(request.query, "params").items() if v != "undefined"}
    return env, FrontendRequest(
        provider_config_key=provider_config_key,
        connection_id=connection_id,
        connection_config=params,
        hmac=request.query.get("hmac"),
    )


def expected_hmac(key: str, provider_config_key: str, connection_id: str) -> str:
    return hmac.new(key.encode(), f"{provider_config_key}:{connection_id}".encode(), hashlib.sha256).hexdigest()


def check_hmac(env: Environment, front: FrontendRequest) -> None:
    if not env.hmac_enabled:
        return
    if not front.hmac:
        raise ApiError("missing_hmac", "The environment requires an 'hmac' parameter.")
    expected = expected_hmac(env.hmac_key, front.provider_config_key, front.connection_id)
    if not hmac.compare_digest(expected, front.hmac.strip().lower()):
        raise ApiError("invalid_hmac", "The 'hmac' parameter does not match.")
