"""AWS_SIGV4 and BILL credentials: stored as Nango stores them, and how each reaches the provider;
the Python SDK reads both typed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keyway_client import AwsSigV4Credentials as SdkAws
from keyway_client import BillCredentials as SdkBill
from keyway_client._credentials import parse_credentials as sdk_parse
from keyway_shared.credentials import parse_credentials
from keyway_shared.credentials.aws_sts import aws_integration, check_region, role_matches
from keyway_shared.credentials.errors import PermanentTokenError
from keyway_shared.credentials.shapes import AwsSigV4Credentials, BillCredentials, UnusableCredentialsError

AWS: dict[str, Any] = {
    "type": "AWS_SIGV4",
    "raw": {"access_key_id": "ASIA1"},
    "role_arn": "arn:aws:iam::123456789012:role/R",
    "region": "eu-west-1",
    "service": "s3",
    "access_key_id": "ASIA1",
    "secret_access_key": "temp-secret",
    "session_token": "temp-token",
    "expires_at": "2026-12-06T10:00:00.000Z",
    "external_id": "6f1c2a4e-0000-4000-8000-000000000000",
}
BILL: dict[str, Any] = {
    "type": "BILL",
    "username": "u",
    "password": "p",
    "organization_id": "org",
    "dev_key": "dev",
    "raw": {"sessionId": "s1"},
    "session_id": "s1",
    "user_id": "usr",
    "expires_at": "2026-12-06T10:00:00.000Z",
}


@pytest.mark.parametrize(("document", "shape"), [(AWS, AwsSigV4Credentials), (BILL, BillCredentials)])
def test_a_stored_document_comes_back_exactly_and_no_secret_is_shown(document: dict[str, Any], shape: type) -> None:
    credentials = parse_credentials(json.loads(json.dumps(document)))
    assert type(credentials) is shape
    assert json.dumps(credentials.dump()) == json.dumps(document)
    assert credentials.refreshable
    assert "secret" not in repr(credentials)
    assert "temp-token" not in repr(credentials)


def test_aws_credentials_sign_each_request_and_add_no_header() -> None:
    credentials = parse_credentials(AWS)
    with pytest.raises(UnusableCredentialsError) as caught:
        credentials.authorization()
    assert caught.value.code == "invalid_auth_mode"
    assert credentials.proxy_headers() == {}
    # A stored AWS document missing its key fails closed too, rather than sending a request unsigned.
    broken = parse_credentials({key: value for key, value in AWS.items() if key != "session_token"})
    with pytest.raises(UnusableCredentialsError):
        broken.authorization()


def test_bill_credentials_send_the_session_and_dev_key() -> None:
    credentials = parse_credentials(BILL)
    assert credentials.authorization() is None
    assert credentials.proxy_headers() == {"devKey": "dev", "sessionId": "s1"}


def test_the_integration_settings_are_nangos_integration_config() -> None:
    builtin = aws_integration({"service": "s3", "awsAccessKeyId": "AKIA", "awsSecretAccessKey": "owner"})
    assert (builtin.sts_mode, builtin.default_region) == ("builtin", None)
    assert "owner" not in repr(builtin)
    custom = aws_integration(
        {"service": "execute-api", "stsMode": "custom", "stsEndpointUrl": "https://sts.example.com/assume",
         "stsAuthType": "api_key", "stsApiKey": "k", "defaultRegion": "us-east-1"}
    )  # fmt: skip
    assert (custom.sts_mode, custom.sts_headers, custom.default_region) == ("custom", {"x-api-key": "k"}, "us-east-1")
    for settings, code in [
        ({}, "missing_aws_sigv4_service"),
        ({"service": "s3"}, "missing_aws_sigv4_builtin_credentials"),
        ({"service": "s3", "stsMode": "custom"}, "missing_aws_sigv4_sts_endpoint"),
        ({"service": "s3", "stsMode": "custom", "stsEndpointUrl": "https://x", "stsAuthType": "basic"},
         "invalid_aws_sigv4_config"),
    ]:  # fmt: skip
        with pytest.raises(PermanentTokenError) as caught:
            aws_integration(settings)
        assert caught.value.type == code


@pytest.mark.parametrize("region", [None, "", "eu-west-1.evil.example", "169.254.169.254#", "EU-WEST-1"])
def test_a_region_is_one_or_refused(region: str | None) -> None:
    with pytest.raises(PermanentTokenError) as caught:
        check_region(region)
    assert caught.value.type in {"missing_aws_sigv4_region", "invalid_aws_sigv4_region"}


def test_the_caller_identity_must_be_a_session_of_the_role() -> None:
    role = "arn:aws:iam::123456789012:role/KeywayAccess"
    assert role_matches(role, "arn:aws:sts::123456789012:assumed-role/KeywayAccess/keyway-1")
    assert not role_matches(role, "arn:aws:sts::123456789012:assumed-role/Other/keyway-1")


def test_the_python_sdk_reads_both_typed() -> None:
    aws = sdk_parse(AWS)
    assert isinstance(aws, SdkAws)
    assert (aws.role_arn, aws.region, aws.service, aws.external_id) == (
        AWS["role_arn"], "eu-west-1", "s3", AWS["external_id"],
    )  # fmt: skip
    assert aws.expires_at is not None
    assert "temp-secret" not in repr(aws)
    bill = sdk_parse(BILL)
    assert isinstance(bill, SdkBill)
    assert (bill.session_id, bill.organization_id, bill.user_id) == ("s1", "org", "usr")
    assert "'p'" not in repr(bill)
    assert "dev" not in repr(bill)
