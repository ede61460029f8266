"""Signature Version 4 for the proxy's calls on AWS_SIGV4 connections.

Every attempt is signed anew (the date is part of the signature and AWS refuses one more than a few
minutes off), after the template's and the caller's headers are set, so that headers such as
``X-Amz-Target`` are signed too, as Nango's proxy signs them: all the request's headers, the host,
``X-Amz-Date``, the session token and the body's hash (``keyway_shared.aws_sigv4``). The region and
service are the connection's (its credentials name them); the key is the temporary one STS gave,
which the token-refresher renews before it expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from multidict import CIMultiDict

from keyway_shared.aws_sigv4 import AwsKey, signed_request_headers
from keyway_shared.credentials.shapes import AwsSigV4Credentials

from .target import Target

__all__ = ["AwsSigner"]


@dataclass(frozen=True, kw_only=True)
class AwsSigner:
    key: AwsKey  # its repr names the key id only
    region: str
    service: str

    @classmethod
    def of(cls, credentials: AwsSigV4Credentials) -> AwsSigner:
        key = AwsKey(credentials.access_key_id, credentials.secret_access_key, credentials.session_token or None)
        return cls(key=key, region=credentials.region, service=credentials.service)

    def signed(self, method: str, target: Target, body: object, now: datetime | None = None) -> CIMultiDict[str]:
        """``target``'s headers with this attempt's signature (a body not read up front is hashed as empty)."""
        url = target.url
        host = url.raw_host or ""
        if not url.is_default_port() and url.port is not None:
            host = f"{host}:{url.port}"
        headers = target.headers.copy()
        added = signed_request_headers(
            method=method,
            host=host,
            raw_path=url.raw_path,
            raw_query=url.raw_query_string,
            headers=list(headers.items()),
            body=body if isinstance(body, bytes) else None,
            key=self.key,
            region=self.region,
            service=self.service,
            now=now or datetime.now(UTC),
        )
        headers.update(added)
        return headers
