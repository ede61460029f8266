"""Keyway's SigV4 signer (keyway_shared.aws_sigv4) and the fake AWS's independent check of it, both held
to AWS's published Signature Version 4 test suite (docs.aws.amazon.com, "Signature Version 4 test
suite": key AKIDEXAMPLE, us-east-1, service ``service``, 2015-08-30T12:36:00Z)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from keyway_shared import aws_sigv4
from keyway_shared.aws_sigv4 import AwsKey

from ..support.fake_aws import expected_authorization

KEY = AwsKey("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
STAMP = "20150830T123600Z"
STS_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwt"
    "hAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNV"
    "XAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxB"
    "A=="
)


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


# (name, method, path as the suite gives it, query pairs, extra headers, body, signed headers, signature)
VECTORS = [
    ("get-vanilla", "GET", "/", [], [], b"", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-vanilla-query-order-key-case", "GET", "/", [("Param2", "value2"), ("Param1", "value1")], [], b"",
     "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-vanilla-query-unreserved", "GET", "/", [("-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")], [], b"", "host;x-amz-date",
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
    ("get-vanilla-utf8-query", "GET", "/", [("ሴ", "bar")], [], b"", "host;x-amz-date",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
    ("get-utf8", "GET", "/ሴ", [], [], b"", "host;x-amz-date",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    ("get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", [], [], b"",
     "host;x-amz-date", "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
    ("get-header-value-trim", "GET", "/", [], [("My-Header1", " value1"), ("My-Header2", ' "a   b   c"')], b"",
     "host;my-header1;my-header2;x-amz-date", "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    ("get-header-key-duplicate", "GET", "/", [], [("My-Header1", "value2"), ("My-Header1", "value2"),
     ("My-Header1", "value1")], b"", "host;my-header1;x-amz-date",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
    ("post-vanilla-query", "POST", "/", [("Param1", "value1")], [], b"", "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    ("post-vanilla-query-nonunreserved", "POST", "/", [("@#$%^", ""), ("+", '/,?><`";:\\|][{}')], [], b"",
     "host;x-amz-date", "66c82657c86e26fb25238d0e69f011edc4c6df5ae71119d7cb98ed9b87393c1e"),
    ("post-x-www-form-urlencoded", "POST", "/", [], [("Content-Type", "application/x-www-form-urlencoded")],
     b"Param1=value1", "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ("post-sts-header-before", "POST", "/", [], [("X-Amz-Security-Token", STS_TOKEN)], b"",
     "host;x-amz-date;x-amz-security-token", "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "pairs", "extra", "body", "signed", "signature"),
    [vector[1:] for vector in VECTORS],
    ids=[vector[0] for vector in VECTORS],
)
def test_the_signer_and_the_fakes_check_match_aws_test_suite(
    method: str,
    path: str,
    pairs: list[tuple[str, str]],
    extra: list[tuple[str, str]],
    body: bytes,
    signed: str,
    signature: str,
) -> None:
    expected = (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", STAMP), *extra]
    # The suite's path is the one before any encoding: encoded once here, as the signer is given it
    # on the wire for S3, whose canonical URI is the wire path itself.
    ours = aws_sigv4.authorization(
        method=method,
        uri=aws_sigv4.canonical_uri(path, "service"),
        query=aws_sigv4.canonical_query(_query(pairs)),
        headers=headers,
        content_hash=aws_sigv4.payload_hash(body),
        key=KEY,
        region="us-east-1",
        service="service",
        stamp=STAMP,
    )
    assert ours == expected
    theirs = expected_authorization(
        method=method,
        wire_path=quote(path, safe="/-_.~"),
        raw_query=_query(pairs),
        headers=headers,
        signed_headers=signed.split(";"),
        payload=body,
        secret=KEY.secret_access_key,
        credential="AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        double_encode=False,
    )
    assert theirs == expected


def test_a_proxied_request_signs_its_body_host_token_and_own_headers() -> None:
    key = AwsKey("ASIATEMP", "temp-secret", "session-token")
    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    added = aws_sigv4.signed_request_headers(
        method="POST",
        host="dynamodb.eu-west-1.amazonaws.com",
        raw_path="/a%20b/c",
        raw_query="b=2&a=1",
        headers=[("Content-Type", "application/x-amz-json-1.0"), ("X-Amz-Target", "DynamoDB_20120810.ListTables")],
        body=b"{}",
        key=key,
        region="eu-west-1",
        service="dynamodb",
        now=now,
    )
    assert added["X-Amz-Date"] == "20261206T100000Z"
    assert added["X-Amz-Security-Token"] == "session-token"
    assert added["X-Amz-Content-Sha256"] == aws_sigv4.payload_hash(b"{}")
    assert (
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amz-target,"
        in (added["Authorization"])
    )
    # Every service but S3 signs the wire path encoded once more, as the fake recomputes it.
    sent = [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
        ("Host", "dynamodb.eu-west-1.amazonaws.com"),
        *[(name, value) for name, value in added.items() if name != "Authorization"],
    ]
    signed = added["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert added["Authorization"] == expected_authorization(
        method="POST",
        wire_path="/a%20b/c",
        raw_query="b=2&a=1",
        headers=sent,
        signed_headers=signed,
        payload=b"{}",
        secret="temp-secret",
        credential="ASIATEMP/20261206/eu-west-1/dynamodb/aws4_request",
        double_encode=True,
    )
    assert aws_sigv4.canonical_uri("/a%20b/c", "s3") == "/a%20b/c"
    assert aws_sigv4.canonical_uri("/a%20b/c", "dynamodb") == "/a%2520b/c"
    assert "temp-secret" not in repr(key)
    assert "session-token" not in repr(key)
