"""A small AWS on 127.0.0.1, for tests: STS (AssumeRole, GetCallerIdentity) and one signed service.

Every request must carry a valid Signature Version 4, recomputed here from AWS's documented algorithm
(canonical request, string to sign, the HMAC chain from ``AWS4<secret>``), independently of
``keyway_shared.aws_sigv4`` (tests/unit/test_aws_sigv4.py holds both to AWS's published test suite).
As AWS: the date must be within 5 minutes, ``host`` and ``x-amz-date`` must be signed, a temporary
key must send and sign its session token and is refused once expired, a body's
``x-amz-content-sha256`` must be its hash, and AssumeRole is signed with the owner's long-lived key
and must name the role and an external id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import yaml
from aiohttp import web

import keyway_shared.providers

from .procs import free_port

# The built-in entry's integration settings (service, region, STS), which the fake's template declares too.
_ENTRY = Path(keyway_shared.providers.__file__).with_name("providers.d") / "aws-sigv4.yaml"
_BUILT_IN: dict[str, Any] = yaml.safe_load(_ENTRY.read_text())["aws-sigv4"]


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rfc3986(text: str) -> str:
    return quote(text, safe="-_.~")


def expected_authorization(
    *,
    method: str,
    wire_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    signed_headers: list[str],
    payload: bytes,
    secret: str,
    credential: str,
    double_encode: bool,
    content_hash: str | None = None,
) -> str:
    """The Authorization value AWS expects for this request, from the docs' steps one by one."""
    # Step 1: the canonical request.
    path = wire_path or "/"
    if double_encode:
        path = "/".join(_rfc3986(part) for part in path.split("/"))
    params = sorted((_rfc3986(k), _rfc3986(v)) for k, v in parse_qsl(raw_query, keep_blank_values=True))
    query = "&".join(f"{k}={v}" for k, v in params)
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    canonical_headers = "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed_headers)
    body_hash = content_hash or _hex(payload)
    canonical = f"{method}\n{path}\n{query}\n{canonical_headers}\n{';'.join(signed_headers)}\n{body_hash}"
    # Step 2: the string to sign.
    _key_id, day, region, service, _terminator = credential.split("/")
    stamp = next(v[0] for n, v in values.items() if n == "x-amz-date")
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, f"{day}/{region}/{service}/aws4_request", _hex(canonical.encode())]
    )
    # Step 3: the signing key, then the signature.
    k_date = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
    k_region = hmac.new(k_date, region.encode(), hashlib.sha256).digest()
    k_service = hmac.new(k_region, service.encode(), hashlib.sha256).digest()
    k_signing = hmac.new(k_service, b"aws4_request", hashlib.sha256).digest()
    signature = hmac.new(k_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={';'.join(signed_headers)}, Signature={signature}"


@dataclass
class TemporaryKey:
    secret: str
    token: str
    expires: datetime
    role_arn: str


@dataclass
class FakeAws:
    owner_key_id: str = "AKIAOWNEREXAMPLE"
    owner_secret: str = "owner/secret+EXAMPLEKEY"
    role_arn: str = "arn:aws:iam::123456789012:role/KeywayAccess"
    service: str = "execute-api"
    lifetime: timedelta = timedelta(hours=1)
    assume_mode: str = "ok"  # ok | deny | garbage
    service_failures: int = 0  # the service answers 503 this many times (after checking the signature)
    port: int = field(default_factory=free_port)
    issued: dict[str, TemporaryKey] = field(default_factory=dict)  # access key id -> its key
    assume_calls: list[dict[str, str]] = field(default_factory=list)  # AssumeRole's form parameters
    identity_calls: int = 0
    service_calls: list[dict[str, Any]] = field(default_factory=list)  # accepted calls to the service
    rejected: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def template(self, **extra: Any) -> dict[str, Any]:
        """The aws-sigv4 template pointed here: STS at ``/sts/<region>/``, the service at ``/svc``."""
        return {
            "auth_mode": "AWS_SIGV4",
            "display_name": "AWS (fake)",
            "token_url": f"{self.base}/sts/${{connectionConfig.region}}/",
            "proxy": {"base_url": f"{self.base}/svc/${{connectionConfig.service}}/${{connectionConfig.region}}"},
            "connection_config": _BUILT_IN["connection_config"],
            "credentials": _BUILT_IN["credentials"],
            "integration_config": _BUILT_IN["integration_config"],
            **extra,
        }

    async def start(self) -> FakeAws:
        app = web.Application()
        app.router.add_route("*", "/sts/{region}/", self._sts)
        app.router.add_route("*", "/svc/{service}/{region}/{tail:.*}", self._service)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeAws:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def issue(self) -> tuple[str, TemporaryKey]:
        """A temporary key for the role, as AssumeRole gives one (also for a test's import)."""
        access = "ASIA" + secrets.token_hex(8).upper()
        expires = datetime.now(UTC).replace(microsecond=0) + self.lifetime
        issued = TemporaryKey(
            secret=secrets.token_urlsafe(24), token=secrets.token_urlsafe(48), expires=expires, role_arn=self.role_arn
        )
        self.issued[access] = issued
        return access, issued

    # --- the signature check -------------------------------------------------------------------

    async def _check(self, request: web.Request, *, service: str, region: str) -> tuple[str | None, bytes]:
        """The access key id that signed the request, or None (the reason in ``rejected``)."""
        body = await request.read()
        header = request.headers.get("Authorization", "")
        if not header.startswith("AWS4-HMAC-SHA256 "):
            self.rejected.append("no SigV4 authorization")
            return None, body
        parts = dict(item.strip().split("=", 1) for item in header[len("AWS4-HMAC-SHA256 ") :].split(","))
        credential, signed = parts.get("Credential", ""), parts.get("SignedHeaders", "").split(";")
        key_id, _, scope = credential.partition("/")
        secret, token = self._secret(key_id)
        stamp = request.headers.get("X-Amz-Date", "")
        problems = []
        if secret is None:
            problems.append("unknown or expired access key")
        if scope.split("/")[1:3] != [region, service]:
            problems.append(f"scope {scope} is not {region}/{service}")
        if not {"host", "x-amz-date"} <= set(signed):
            problems.append("host and x-amz-date must be signed")
        try:
            signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            if abs((datetime.now(UTC) - signed_at).total_seconds()) > 300:
                problems.append("request time too skewed")
            if scope.split("/")[0] != stamp[:8]:
                problems.append("scope day is not the request's")
        except ValueError:
            problems.append("no x-amz-date")
        if token is not None and (
            request.headers.get("X-Amz-Security-Token") != token or "x-amz-security-token" not in signed
        ):
            problems.append("the session token is missing or not signed")
        content_hash = request.headers.get("X-Amz-Content-Sha256")
        if content_hash is not None and content_hash not in {_hex(body), "UNSIGNED-PAYLOAD"}:
            problems.append("x-amz-content-sha256 is not the body's hash")
        if not problems and secret is not None:
            expected = expected_authorization(
                method=request.method,
                wire_path=request.rel_url.raw_path,
                raw_query=request.rel_url.raw_query_string,
                headers=list(request.headers.items()),
                signed_headers=signed,
                payload=body,
                secret=secret,
                credential=credential,
                double_encode=service != "s3",  # as AWS: the wire path encoded once more, but for S3
                content_hash=content_hash,
            )
            if not hmac.compare_digest(expected, header):
                problems.append("signature does not match")
        if problems:
            self.rejected.append("; ".join(problems))
            return None, body
        return key_id, body

    def _secret(self, key_id: str) -> tuple[str | None, str | None]:
        if key_id == self.owner_key_id:
            return self.owner_secret, None
        issued = self.issued.get(key_id)
        if issued is None or issued.expires <= datetime.now(UTC):
            return None, None
        return issued.secret, issued.token

    @staticmethod
    def _denied(message: str, status: int = 403) -> web.Response:
        body = f"<ErrorResponse><Error><Code>AccessDenied</Code><Message>{message}</Message></Error></ErrorResponse>"
        return web.Response(status=status, text=body, content_type="text/xml")

    # --- STS -----------------------------------------------------------------------------------

    async def _sts(self, request: web.Request) -> web.Response:
        region = request.match_info["region"]
        key_id, body = await self._check(request, service="sts", region=region)
        params = dict(parse_qsl(request.rel_url.raw_query_string)) | dict(parse_qsl(body.decode()))
        if key_id is None:
            return self._denied("SignatureDoesNotMatch")
        if params.get("Action") == "AssumeRole":
            return self._assume_role(key_id, params)
        if params.get("Action") == "GetCallerIdentity":
            self.identity_calls += 1
            issued = self.issued.get(key_id)
            arn = (
                f"{issued.role_arn.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/')}/keyway"
                if issued
                else ""
            )
            return web.Response(
                text=f"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>{arn}</Arn>"
                "</GetCallerIdentityResult></GetCallerIdentityResponse>",
                content_type="text/xml",
            )
        return self._denied("unknown action", 400)

    def _assume_role(self, key_id: str, params: dict[str, str]) -> web.Response:
        self.assume_calls.append(params)
        if key_id != self.owner_key_id:
            return self._denied("only the owner's key may assume the role")
        if self.assume_mode == "deny" or params.get("RoleArn") != self.role_arn or not params.get("ExternalId"):
            return self._denied(f"not authorized to perform sts:AssumeRole on {params.get('RoleArn')}")
        if self.assume_mode == "garbage":
            return web.Response(text="<AssumeRoleResponse/>", content_type="text/xml")
        access, issued = self.issue()
        expires = issued.expires
        return web.Response(
            text=(
                "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                f"<AccessKeyId>{access}</AccessKeyId><SecretAccessKey>{issued.secret}</SecretAccessKey>"
                f"<SessionToken>{issued.token}</SessionToken>"
                f"<Expiration>{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>"
                "</Credentials></AssumeRoleResult></AssumeRoleResponse>"
            ),
            content_type="text/xml",
        )

    # --- the service ---------------------------------------------------------------------------

    async def _service(self, request: web.Request) -> web.Response:
        service, region = request.match_info["service"], request.match_info["region"]
        key_id, body = await self._check(request, service=service, region=region)
        if key_id is None or key_id == self.owner_key_id:
            return web.json_response({"message": "The request signature we calculated does not match"}, status=403)
        self.service_calls.append(
            {
                "key": key_id,
                "method": request.method,
                "path": request.rel_url.raw_path,
                "body": body,
                "target": request.headers.get("X-Amz-Target"),
                "authorization": request.headers.get("Authorization"),
                "at": time.time(),
            }
        )
        if self.service_failures > 0:
            self.service_failures -= 1
            return web.json_response({"message": "Service Unavailable"}, status=503)
        return web.json_response({"ok": True, "path": request.match_info["tail"], "key": key_id})
