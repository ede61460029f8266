"""Temporary AWS keys for AWS_SIGV4 connections: STS ``AssumeRole`` at connect time and again before
they expire (the token-refresher calls :func:`assume_role` too), and ``GetCallerIdentity`` to check
a new key is the role's.

The integration's ``custom`` holds Nango's ``integration_config`` for the mode (Nango's
``packages/shared/lib/auth/aws-sigv4.ts``): the AWS ``service`` requests are signed for, a
``defaultRegion``, and how STS is reached (``stsMode``):

- ``builtin`` (the default): AssumeRole at the template's STS URL (``token_url``, AWS's regional
  ``https://sts.<region>.amazonaws.com/``), signed with the integration owner's long-lived key
  (``awsAccessKeyId``, ``awsSecretAccessKey``) and the connection's external id;
- ``custom``: a JSON POST ``{role_arn, external_id, region, service}`` to the owner's own endpoint
  (``stsEndpointUrl``, authenticated by ``stsAuthType``: an API key header or Basic), which answers
  the key in AWS's or snake_case names.

Failures are :class:`TokenRequestError` with Nango's codes (``missing_aws_sigv4_region``,
``aws_sigv4_sts_request_failed``, …); none quotes a secret or a response body.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from ..aws_sigv4 import AwsKey, signed_request_headers
from ..providers import ProviderTemplate
from ..providers.interpolation import MissingParamError, UnsafeParamError
from .bounded_body import MAX_TOKEN_RESPONSE_BYTES, ResponseTooLargeError, read_bounded
from .errors import PermanentTokenError, TransientTokenError
from .oauth2_client import too_large, unreachable
from .shapes import AwsSigV4Credentials
from .tokens import js_iso

__all__ = [
    "AwsIntegration",
    "assume_role",
    "aws_integration",
    "caller_identity",
    "check_external_id",
    "check_region",
    "default_sts_url",
    "role_matches",
    "sts_url",
]

_REGION = re.compile(r"[a-z0-9-]{1,64}")  # AWS's region names; it becomes part of a host name
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9+=,.@:/-]{2,1224}")  # STS's ExternalId
_DEFAULT_LIFETIME = timedelta(hours=1)  # what AssumeRole is asked for (DurationSeconds=3600)


@dataclass(frozen=True, kw_only=True)
class AwsIntegration:
    """What an AWS_SIGV4 integration's ``custom`` says; ``repr`` shows no secret."""

    service: str
    sts_mode: str  # builtin | custom
    default_region: str | None = None
    owner_key: AwsKey | None = field(default=None, repr=False)
    sts_endpoint_url: str | None = None
    sts_headers: dict[str, str] = field(default_factory=dict, repr=False)


def _config_error(code: str, message: str) -> PermanentTokenError:
    return PermanentTokenError(code, message)


def aws_integration(custom: Mapping[str, str]) -> AwsIntegration:
    """The integration's AWS settings, refused with Nango's codes when a needed one is missing."""
    service = custom.get("service")
    if not service:
        raise _config_error("missing_aws_sigv4_service", "The integration names no AWS service (its 'service').")
    if not re.fullmatch(r"[a-z0-9-]+", service):
        raise _config_error(
            "invalid_aws_sigv4_config", "The integration's AWS service is not lowercase letters, digits and '-'."
        )
    default_region = custom.get("defaultRegion") or None
    if custom.get("stsMode", "builtin") != "custom":
        key_id, secret = custom.get("awsAccessKeyId"), custom.get("awsSecretAccessKey")
        if not key_id or not secret:
            raise _config_error(
                "missing_aws_sigv4_builtin_credentials",
                "The integration has no AWS access key (awsAccessKeyId, awsSecretAccessKey) to call STS with.",
            )
        return AwsIntegration(
            service=service, sts_mode="builtin", default_region=default_region, owner_key=AwsKey(key_id, secret)
        )
    url = custom.get("stsEndpointUrl")
    if not url:
        raise _config_error("missing_aws_sigv4_sts_endpoint", "The integration names no STS endpoint (stsEndpointUrl).")
    headers: dict[str, str] = {}
    auth = custom.get("stsAuthType")
    if auth == "api_key":
        if not custom.get("stsApiKey"):
            raise _config_error("invalid_aws_sigv4_config", "STS API key is required when STS auth type is api_key.")
        headers[custom.get("stsAuthHeader") or "x-api-key"] = custom["stsApiKey"]
    elif auth == "basic":
        if not custom.get("stsAuthPassword"):
            raise _config_error("invalid_aws_sigv4_config", "STS password is required when STS auth type is basic.")
        pair = f"{custom.get('stsAuthUsername') or ''}:{custom['stsAuthPassword']}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return AwsIntegration(
        service=service, sts_mode="custom", default_region=default_region, sts_endpoint_url=url, sts_headers=headers
    )


def check_region(region: str | None) -> str:
    """The region, if it is one (it is part of the STS and API host names)."""
    if not region:
        raise PermanentTokenError(
            "missing_aws_sigv4_region",
            "No AWS region: give one with the connection (region), or set the integration's defaultRegion.",
        )
    if not _REGION.fullmatch(region):
        raise PermanentTokenError(
            "invalid_aws_sigv4_region", "An AWS region is lowercase letters, digits and '-' (e.g. us-east-1)."
        )
    return region


def default_sts_url(region: str) -> str:
    """AWS's regional STS endpoint (Nango's, for a template that names none)."""
    return f"https://sts.{check_region(region)}.amazonaws.com/"


def sts_url(template: ProviderTemplate, connection_config: Mapping[str, Any]) -> str:
    """The builtin mode's STS endpoint for the connection's region: the template's ``token_url``
    (whose ``region`` field's pattern keeps the host AWS's), else AWS's own regional one."""
    region = check_region(str(connection_config.get("region") or ""))
    url = template.token_url_for("AWS_SIGV4")
    if not url:
        return default_sts_url(region)
    try:
        return template.render_url(url, {**connection_config, "region": region}, stored=True)
    except (MissingParamError, UnsafeParamError):
        raise PermanentTokenError("invalid_aws_sigv4_region", "The STS URL cannot be made for this region.") from None


def check_external_id(external_id: str) -> str:
    if not _EXTERNAL_ID.fullmatch(external_id):
        raise PermanentTokenError(
            "invalid_aws_sigv4_external_id", "An external id is 2-1224 characters: letters, digits or +=,.@:/-."
        )
    return external_id


async def _send(
    http: aiohttp.ClientSession, method: str, url: str, *, headers: dict[str, str], body: bytes, seconds: float
) -> tuple[int, bytes]:
    try:
        async with asyncio.timeout(seconds):
            async with http.request(method, url, data=body, headers=headers, allow_redirects=False) as response:
                return response.status, await read_bounded(response, MAX_TOKEN_RESPONSE_BYTES)
    except ResponseTooLargeError:
        raise too_large(url) from None
    except TimeoutError:
        raise TransientTokenError("token_timeout", f"STS did not answer within {seconds:g}s.") from None
    except aiohttp.ClientError as exc:
        raise unreachable(url, exc) from None


def _refused(status: int, body: bytes) -> PermanentTokenError | TransientTokenError:
    if status >= 500 or status == 429:
        return TransientTokenError("token_provider_unavailable", f"STS answered {status}.", status=status)
    code = _xml_tag(body.decode("utf-8", "replace"), "Code") or f"http_{status}"
    return PermanentTokenError(
        "aws_sigv4_sts_request_failed", f"STS refused the request ({status} {code[:64]}).", status=status
    )


def _xml_tag(text: str, tag: str) -> str | None:
    match = re.search(f"<{tag}>([^<]+)</{tag}>", text)
    return match.group(1).strip() if match else None


def _expiry(value: Any, now: datetime) -> datetime:
    """An expiry in any of the shapes STS endpoints answer: ISO text, Unix seconds or milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value >= 1e12 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PermanentTokenError(
                "aws_sigv4_sts_request_failed", "STS answered an expiry that is no time."
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return now + _DEFAULT_LIFETIME


def _temporary_key(body: bytes, now: datetime) -> tuple[AwsKey, datetime]:
    """AssumeRole's answer (AWS's XML or JSON, or a custom endpoint's JSON) as a key and its expiry."""
    text = body.decode("utf-8", "replace")
    found: dict[str, Any] = {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        aws = (data.get("AssumeRoleResponse") or {}).get("AssumeRoleResult", {}).get("Credentials")
        payload = aws if isinstance(aws, dict) else data.get("credentials", data)
        if isinstance(payload, dict):
            found = {
                "id": payload.get("AccessKeyId") or payload.get("accessKeyId") or payload.get("access_key_id"),
                "secret": payload.get("SecretAccessKey")
                or payload.get("secretAccessKey")
                or payload.get("secret_access_key"),
                "token": payload.get("SessionToken") or payload.get("sessionToken") or payload.get("session_token"),
                "expires": payload.get("Expiration")
                or payload.get("expiresAt")
                or payload.get("expires_at")
                or payload.get("expiration"),
            }
    else:
        found = {
            "id": _xml_tag(text, "AccessKeyId"),
            "secret": _xml_tag(text, "SecretAccessKey"),
            "token": _xml_tag(text, "SessionToken"),
            "expires": _xml_tag(text, "Expiration"),
        }
    if not all(isinstance(found.get(name), str) and found[name] for name in ("id", "secret", "token")):
        raise PermanentTokenError(
            "aws_sigv4_sts_request_failed", "STS answered, but without an access key, secret and session token."
        )
    return AwsKey(found["id"], found["secret"], found["token"]), _expiry(found.get("expires"), now)


async def assume_role(
    http: aiohttp.ClientSession,
    *,
    integration: AwsIntegration,
    sts_url: str | None,
    role_arn: str,
    external_id: str,
    region: str,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> tuple[AwsSigV4Credentials, datetime]:
    """A temporary key for ``role_arn``, as the connection's credentials, and when it expires.

    ``sts_url`` is the builtin mode's STS endpoint for ``region`` (the template's ``token_url``; AWS's
    regional endpoint when None)."""
    region = check_region(region)
    check_external_id(external_id)
    if integration.sts_mode == "custom":
        url = str(integration.sts_endpoint_url)
        payload = {"role_arn": role_arn, "external_id": external_id, "region": region, "service": integration.service}
        headers = {"Content-Type": "application/json", "Accept": "application/json", **integration.sts_headers}
        status, body = await _send(
            http, "POST", url, headers=headers, body=json.dumps(payload).encode(), seconds=timeout_seconds
        )
    else:
        if integration.owner_key is None:
            raise _config_error("missing_aws_sigv4_builtin_credentials", "The integration has no AWS access key.")
        url = sts_url or default_sts_url(region)
        form = urlencode(
            {
                "Action": "AssumeRole",
                "RoleArn": role_arn,
                "ExternalId": external_id,
                "RoleSessionName": f"keyway-{secrets.token_hex(8)}",
                "DurationSeconds": str(int(_DEFAULT_LIFETIME.total_seconds())),
                "Version": "2011-06-15",
            }
        ).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/xml"}
        headers |= _signed(url, "POST", headers, form, integration.owner_key, region, "sts", now)
        status, body = await _send(http, "POST", url, headers=headers, body=form, seconds=timeout_seconds)
    if status >= 300:
        raise _refused(status, body)
    key, expires_at = _temporary_key(body, now)
    stamp = js_iso(expires_at)
    credentials = AwsSigV4Credentials(
        raw={
            "access_key_id": key.access_key_id,
            "secret_access_key": key.secret_access_key,
            "session_token": key.session_token,
            "expires_at": stamp,
        },
        role_arn=role_arn,
        region=region,
        service=integration.service,
        access_key_id=key.access_key_id,
        secret_access_key=key.secret_access_key,
        session_token=str(key.session_token),
        expires_at=stamp,
        external_id=external_id,
    )
    return credentials, expires_at


def _signed(
    url: str, method: str, headers: dict[str, str], body: bytes, key: AwsKey, region: str, service: str, now: datetime
) -> dict[str, str]:
    parts = urlsplit(url)
    return signed_request_headers(
        method=method,
        host=parts.netloc,
        raw_path=parts.path or "/",
        raw_query=parts.query,
        headers=list(headers.items()),
        body=body,
        key=key,
        region=region,
        service=service,
        now=now,
    )


async def caller_identity(
    http: aiohttp.ClientSession,
    *,
    sts_url: str,
    credentials: AwsSigV4Credentials,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> str | None:
    """The ARN STS says the new key is (``GetCallerIdentity``), signed with that key; None when the
    answer names none."""
    url = f"{sts_url.split('?')[0]}?Action=GetCallerIdentity&Version=2011-06-15"
    key = AwsKey(credentials.access_key_id, credentials.secret_access_key, credentials.session_token)
    headers = {"Accept": "application/xml"}
    headers |= _signed(url, "GET", headers, b"", key, credentials.region, "sts", now)
    status, body = await _send(http, "GET", url, headers=headers, body=b"", seconds=timeout_seconds)
    if status >= 300:
        raise _refused(status, body)
    return _xml_tag(body.decode("utf-8", "replace"), "Arn")


def role_matches(role_arn: str, caller_arn: str) -> bool:
    """Whether ``arn:aws:sts::1:assumed-role/Name/session`` is a session of ``arn:aws:iam::1:role/Name``."""
    name = role_arn.rsplit("/", 1)[-1]
    return bool(name) and f"/{name}/" in caller_arn
