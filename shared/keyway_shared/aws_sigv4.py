"""AWS Signature Version 4, written once: the proxy's signature of every AWS_SIGV4 request, the STS
calls that mint those connections' temporary keys, and the catalog's ``awsSigV4(...)`` header
function all sign here.

The algorithm is AWS's (docs.aws.amazon.com, "Create a signed AWS API request"): a canonical request
(method, canonical URI, canonical query, the signed headers lower-cased, trimmed and sorted, their
names, the payload's SHA-256), the string to sign over its hash and the credential scope
(``<day>/<region>/<service>/aws4_request``), and an HMAC-SHA256 chain from ``AWS4<secret>`` through
day, region, service and ``aws4_request``. tests/unit/test_aws_sigv4.py holds it to AWS's published
test suite. Nothing here logs; a key's ``repr`` shows its id only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

__all__ = [
    "ALGORITHM",
    "UNSIGNED_PAYLOAD",
    "AwsKey",
    "amz_date",
    "authorization",
    "canonical_query",
    "canonical_uri",
    "payload_hash",
    "signed_request_headers",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"  # S3's payload hash for a body that is not hashed up front
_SPACES = re.compile(r"\s+")
_UNRESERVED = "-_.~"  # RFC 3986's unreserved marks; letters and digits are never encoded


@dataclass(frozen=True)
class AwsKey:
    """An access key: long-lived, or STS's temporary one with its session token."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def amz_date(now: datetime) -> str:
    """``20150830T123600Z``: the ``X-Amz-Date`` of a request signed at ``now``."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload_hash(body: bytes | None) -> str:
    """The hex SHA-256 of the body (of nothing, for a request without one)."""
    return _sha256_hex(body or b"")


def _encode(text: str) -> str:
    return quote(text, safe=_UNRESERVED)


def canonical_uri(path: str, service: str) -> str:
    """The canonical URI of ``path`` as it goes on the wire: S3 signs it as it is (encoded once), every
    other service encodes each segment once more, as AWS specifies."""
    path = path or "/"
    if not path.startswith("/"):
        path = "/" + path
    if service == "s3":
        return path
    return "/".join(_encode(segment) for segment in path.split("/"))


def canonical_query(raw_query: str) -> str:
    """Every parameter decoded (``+`` is a space, as a form reads it), then encoded as RFC 3986 says,
    sorted by name and then value; a name without ``=`` has an empty value."""
    pairs = [(_encode(name), _encode(value)) for name, value in parse_qsl(raw_query, keep_blank_values=True)]
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(
    *,
    method: str,
    uri: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    content_hash: str,
    key: AwsKey,
    region: str,
    service: str,
    stamp: str,
) -> str:
    """The ``Authorization`` value of a request whose canonical ``uri`` and ``query`` are given, signed
    over ``headers`` (all of them: names are lower-cased, values trimmed, inner spaces collapsed, a
    repeated header's values joined by commas)."""
    lowered: dict[str, str] = {}
    for name, value in headers:
        name = name.strip().lower()
        value = _SPACES.sub(" ", value.strip())
        lowered[name] = f"{lowered[name]},{value}" if name in lowered else value
    names = sorted(lowered)
    signed = ";".join(names)
    canonical = "\n".join(
        [
            method.upper(),
            uri,
            query,
            "".join(f"{name}:{lowered[name]}\n" for name in names),
            signed,
            content_hash,
        ]
    )
    day = stamp[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{_sha256_hex(canonical.encode())}"
    signature = hmac.new(_signing_key(key.secret_access_key, day, region, service), to_sign.encode(), hashlib.sha256)
    return (
        f"{ALGORITHM} Credential={key.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature.hexdigest()}"
    )


def signed_request_headers(
    *,
    method: str,
    host: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
    key: AwsKey,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to add to one request so AWS accepts it: ``X-Amz-Date``, ``X-Amz-Security-Token``
    for a temporary key, ``X-Amz-Content-Sha256`` and ``Authorization``, signed over ``headers`` (the
    request's own, which it must send unchanged), the host and those added ones (as Nango's proxy)."""
    stamp = amz_date(now)
    content_hash = payload_hash(body)
    added = {"X-Amz-Date": stamp, "X-Amz-Content-Sha256": content_hash}
    if key.session_token:
        added["X-Amz-Security-Token"] = key.session_token
    replaced = {name.lower() for name in added} | {"host", "authorization"}
    own = [(name, value) for name, value in headers if name.lower() not in replaced]
    value = authorization(
        method=method,
        uri=canonical_uri(raw_path, service),
        query=canonical_query(raw_query),
        headers=[*own, ("host", host), *added.items()],
        content_hash=content_hash,
        key=key,
        region=region,
        service=service,
        stamp=stamp,
    )
    return {**added, "Authorization": value}
