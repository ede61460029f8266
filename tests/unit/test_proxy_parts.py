"""The proxy's pure parts: reading the retry headers, the waits they ask for, the upstream request."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from auth_gateway.http.errors import ApiError
from auth_gateway.proxy.retry import RetryPolicy, header_delay, parse_retries, parse_retry_on
from auth_gateway.proxy.target import build_target
from keyway_shared.credentials import parse_credentials
from keyway_shared.providers.template import ProviderTemplate, ProxyRetry
from keyway_shared.store import Connection

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 0), ("", 0), ("3", 3), (" 2 ", 2), ("-1", 0), ("x", 0), ("99", 10)]
)
def test_parse_retries(value: str | None, expected: int) -> None:
    assert parse_retries(value) == expected


def test_parse_retry_on() -> None:
    assert parse_retry_on("409, 423,abc,,700, 99") == frozenset({409, 423})
    assert parse_retry_on(None) == frozenset()


def test_header_delay_sources() -> None:
    headers = CIMultiDict({"retry-after": "7"})
    assert header_delay(headers, None, now=NOW) == 7
    assert header_delay(CIMultiDict({"Retry-After": formatdate(NOW + 30, usegmt=True)}), None, now=NOW) == 30
    assert header_delay(CIMultiDict({"Retry-After": "soon"}), None, now=NOW) is None
    assert header_delay(CIMultiDict(), None, now=NOW) is None
    at = ProxyRetry(at="x-ratelimit-reset")
    assert header_delay(CIMultiDict({"X-RateLimit-Reset": str(int(NOW) + 12)}), at, now=NOW) == 12
    assert header_delay(CIMultiDict({"X-RateLimit-Reset": str(int(NOW) - 5)}), at, now=NOW) == 0  # already past
    assert header_delay(CIMultiDict({"X-RateLimit-Reset": "15"}), at, now=NOW) == 15  # seconds, not a Unix time
    after = ProxyRetry(after="x-wait")
    assert header_delay(CIMultiDict({"X-Wait": "2", "Retry-After": "9"}), after, now=NOW) == 2  # the template wins
    assert header_delay(CIMultiDict({"Retry-After": "9"}), after, now=NOW) == 9


def test_retryable_statuses_and_bounded_waits() -> None:
    policy = RetryPolicy(retries=2, retry_on=frozenset({409}))
    empty: CIMultiDict[str] = CIMultiDict()
    assert all(policy.retryable_status(s, empty) for s in (500, 503, 429, 409))
    assert not any(policy.retryable_status(s, empty) for s in (400, 401, 404, 403))
    assert policy.retryable_status(403, CIMultiDict({"X-RateLimit-Remaining": "0"}))
    assert policy.delay_after_response(0, CIMultiDict({"Retry-After": "3600"}), None) is None
    for attempt in range(12):
        assert 0 < policy.backoff(attempt) <= policy.max_delay


def connection(credentials: dict[str, object], config: dict[str, object] | None = None) -> Connection:
    return Connection(
        environment="dev",
        provider_config_key="k",
        connection_id="c",
        provider="p",
        auth_mode=str(credentials.get("type", "NONE")),
        credentials=parse_credentials(credentials),
        connection_config=config or {},
    )


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def test_target_for_client_credentials_and_precedence() -> None:
    template = ProviderTemplate.model_validate(
        {"auth_mode": "OAUTH2_CC", "proxy": {"base_url": "https://api.example.com/v1/", "headers": {"X-T": "t"}}}
    )
    target = build_target(
        connection=connection({"type": "OAUTH2_CC", "token": "cc-token"}),
        template=template,
        client_headers=headers(
            Authorization="Bearer keyway-secret", Nango_Proxy_X_T="mine", Nango_Proxy_Content_Length="1"
        ),
        raw_endpoint="/items/",
        raw_query="a=1",
    )
    assert str(target.url) == "https://api.example.com/v1/items/?a=1"
    assert target.headers["Authorization"] == "Bearer cc-token"
    assert target.headers["X-T"] == "mine"  # the caller's Nango-Proxy-* header wins over the template's
    assert "Content-Length" not in target.headers  # framing is never the caller's to set
    assert target.headers["Accept-Encoding"] == "identity"


def test_target_leaves_signing_to_each_attempt_and_refuses_what_it_cannot_sign() -> None:
    template = ProviderTemplate.model_validate({"auth_mode": "OAUTH1", "proxy": {"base_url": "https://x.io"}})
    # OAUTH1 and TBA sign every attempt anew (proxy/signing.py): the target itself carries no Authorization.
    target = build_target(
        connection=connection({"type": "OAUTH1", "oauth_token": "t", "oauth_token_secret": "s"}),
        template=template,
        client_headers=headers(),
        raw_endpoint="/",
        raw_query="",
    )
    assert "Authorization" not in target.headers
    with pytest.raises(ApiError) as caught:  # a stored OAUTH1 document without its secret: nothing to sign with
        build_target(
            connection=connection({"type": "OAUTH1", "oauth_token": "t"}),
            template=template,
            client_headers=headers(),
            raw_endpoint="/",
            raw_query="",
        )
    assert caught.value.code == "invalid_credentials"  # incomplete, as any type's stored document may be


def test_a_header_of_optional_fields_the_connection_lacks_is_left_out() -> None:
    """Google Ads: login-customer-id is optional; Nango leaves the header out, and so does Keyway.
    A header needing a required field is still refused, unless the app sends it itself."""
    template = ProviderTemplate.model_validate(
        {
            "auth_mode": "OAUTH2",
            "proxy": {
                "base_url": "https://googleads.googleapis.com",
                "headers": {
                    "login-customer-id": "${connectionConfig.login_customer_id}",
                    "developer-token": "${connectionConfig.developer_token}",
                },
            },
            "connection_config": {
                "login_customer_id": {"type": "string", "optional": True},
                "developer_token": {"type": "string"},
            },
        }
    )
    oauth = {"type": "OAUTH2", "access_token": "at"}

    def target_for(config: dict[str, str], **sent: str) -> CIMultiDict[str]:
        return build_target(
            connection=connection(oauth, config),
            template=template,
            client_headers=headers(**sent),
            raw_endpoint="/v18/customers:listAccessibleCustomers",
            raw_query="",
        ).headers

    sent = target_for({"developer_token": "dev"})
    assert sent["developer-token"] == "dev"
    assert "login-customer-id" not in sent
    assert (
        target_for({"developer_token": "dev", "login_customer_id": "1234567890"})["login-customer-id"] == "1234567890"
    )
    with pytest.raises(ApiError) as caught:
        target_for({})
    assert caught.value.code == "missing_connection_config"
    assert target_for({}, Nango_Proxy_Developer_Token="from-app")["developer-token"] == "from-app"
