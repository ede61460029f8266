"""AWS_SIGV4: ``POST /auth/aws-sigv4/{key}`` from the frontend SDK (0.71.10's ``auth(key, id,
{credentials: {type: 'AWS_SIGV4', role_arn, region?}})``) or the Connect UI, as Nango's
``postAwsSigV4.ts``: the strict body ``{role_arn, region?}``.

The person names a role in their AWS account whose trust policy lets the integration's key assume
it with the connection's external id. Keyway asks STS for a temporary key for it now
(``keyway_shared.credentials.aws_sts``), checks with ``GetCallerIdentity`` that the key is that
role's, and stores the key, the role, region, service and external id; the token-refresher assumes
the role again before the key expires, and the proxy signs every attempt with it (SigV4).

The region is, in order: the one a reconnected connection already has (its signing region must not
move), the body's, ``params[region]``, the integration's ``defaultRegion``; none is refused with
``missing_aws_sigv4_region`` before anything is sent or stored. The external id is the reconnected
connection's, else a UUID given in ``params[external_id]``, else a new one.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from keyway_shared.credentials.aws_sts import (
    assume_role,
    aws_integration,
    caller_identity,
    check_region,
    role_matches,
    sts_url,
)
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ...http.body_issues import MISSING, check_string, matches, max_length, min_length, unknown_fields
from ...http.errors import ApiError
from ...http.query_issues import invalid_params
from ...http.requests import json_object
from ...openapi_spec import Route
from ...resources import HTTP, SETTINGS, STORES
from ..credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode
from ..frontend_request import FrontendRequest, check_hmac, public_key
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["AWS_SIGV4_BODY", "SPEC", "aws_sigv4_auth"]

_REGION = re.compile(r"[a-z0-9-]+")

AWS_SIGV4_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["role_arn"],
    "properties": {
        "role_arn": {
            "type": "string",
            "minLength": 1,
            "description": "The IAM role the person's account lets you assume",
        },
        "region": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": f"^{_REGION.pattern}$"},
    },
}


def _body(body: dict[str, Any]) -> tuple[str, str | None]:
    """``(role_arn, region)``; ``invalid_body`` with zod's issues for what Nango's schema refuses.

    The credentials' own ``type`` is let through when it is this mode's: callers that post the SDK's
    ``credentials`` object whole (the dashboard's connect script) send it; any other value is refused."""
    if body.get("type") == "AWS_SIGV4":
        body = {name: value for name, value in body.items() if name != "type"}
    issues = check_string(body.get("role_arn", MISSING), ["role_arn"], min_length(1))
    region = body.get("region", MISSING)
    if region is not None:  # the SDK sends region: undefined, which JSON drops; null is as absent
        issues += check_string(region, ["region"], min_length(1), max_length(64), matches(_REGION), optional=True)
    issues += unknown_fields(body, ("role_arn", "region"))
    if issues:
        raise invalid_params(issues, code="invalid_body")
    return body["role_arn"], region if isinstance(region, str) else None


def _external_id(stored: dict[str, Any], given: object) -> str:
    if isinstance(stored.get("external_id"), str) and stored["external_id"]:
        return str(stored["external_id"])
    if isinstance(given, str):
        try:
            return str(uuid.UUID(given.strip()))
        except ValueError:
            pass
    return str(uuid.uuid4())


@public_key
async def aws_sigv4_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="AWS_SIGV4")
    async with announce_failures(request, attempt):
        role_arn, body_region = _body(await json_object(request))
        check_hmac(env, front)  # over the id the caller sent, before the server names one
        if not front.connection_id:
            front.connection_id = str(uuid.uuid4())
        front.require_ids()
        integration, template = await integration_in_mode(request, attempt)
        aws = aws_integration(integration.custom or {})
        existing = await request.app[STORES].connections.get(env.name, front.provider_config_key, front.connection_id)
        stored = dict(existing.connection_config or {}) if existing is not None else {}
        region = check_region(
            stored.get("region") or body_region or front.connection_config.get("region") or aws.default_region
        )
        config: dict[str, Any] = {
            **front.connection_config,
            "external_id": _external_id(stored, front.connection_config.get("external_id")),
            "role_arn": role_arn,
            "region": region,
            "service": aws.service,
        }
        sts = sts_url(template, config)
        timeout = request.app[SETTINGS].provider_timeout_seconds
        credentials, expires_at = await assume_role(
            request.app[HTTP],
            integration=aws,
            sts_url=sts,
            role_arn=role_arn,
            external_id=config["external_id"],
            region=region,
            now=utcnow(),
            timeout_seconds=timeout,
        )
        # As Nango: the new key must be a session of the role the person named.
        arn = await caller_identity(
            request.app[HTTP], sts_url=sts, credentials=credentials, now=utcnow(), timeout_seconds=timeout
        )
        if arn is not None and not role_matches(role_arn, arn):
            raise ApiError("connection_test_failed", "GetCallerIdentity ARN does not match expected role")
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="AWS_SIGV4",
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
    )


SPEC = AuthModeSpec(
    mode="AWS_SIGV4",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/auth/aws-sigv4/{providerConfigKey}",
                aws_sigv4_auth,
                "Connect an AWS account by an IAM role (SigV4)",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=AWS_SIGV4_BODY,
                ok=CONNECTED,
                errors=(502,),
            ),
        )
    ),
)
