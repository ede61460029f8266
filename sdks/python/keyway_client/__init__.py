"""keyway-client: Keyway's backend API from Python, with the operations of Nango's node SDK.

    from keyway_client import Client

    with Client(host="http://127.0.0.1:3003", secret_key=SECRET) as keyway:
        token = keyway.get_token("github", "customer-1")
        repos = keyway.get(provider_config_key="github", connection_id="customer-1", endpoint="/user/repos")

``AsyncClient`` has the same methods as coroutines. ``verify_webhook`` checks the signatures on the
webhooks Keyway sends (Standard Webhooks, ``X-Nango-Hmac-Sha256``, ``X-Nango-Signature``).

The clients' methods call Nango's 2024 routes; ``keyway.current`` calls its current ones (what
``@nangohq/node`` 0.71 calls), with the node SDK's method names::

    conns = keyway.current.list_connections(end_user_id="u-1", tags={"plan": "pro"})
    session = keyway.current.create_connect_session(end_user={"id": "u-1"}, allowed_integrations=["github"])

Every exception raised on purpose is a ``KeywayError``::

    KeywayError
    ├── ApiError(status, code, message, payload)   the gateway answered an error status
    │   ├── AuthenticationError                    401: the secret key is missing, malformed or unknown
    │   ├── NotFoundError                          404, unknown_connection, unknown_provider_config
    │   ├── RateLimitedError(retry_after)          429: wait retry_after seconds
    │   └── ValidationError                        400, 409, 422: the request was refused as invalid
    ├── TransportError                             no usable answer: unreachable, timed out, unreadable
    └── WebhookVerificationError                   verify_webhook refused the request

``code`` is the error envelope's code (``duplicate_provider_config``, ``missing_client_id``, …);
``ProxyResponse.raise_for_status`` raises the same classes for the upstream API's own errors.
"""

from __future__ import annotations

from ._async_client import AsyncClient, ProxyCall
from ._credentials import (
    ApiKeyCredentials,
    AppCredentials,
    AppStoreCredentials,
    AwsSigV4Credentials,
    BasicCredentials,
    BillCredentials,
    ClientCredentials,
    Credentials,
    JwtCredentials,
    NoCredentials,
    OAuth1Credentials,
    OAuth2Credentials,
    SignatureCredentials,
    TbaCredentials,
    TwoStepCredentials,
    UnknownCredentials,
)
from ._current_async import AsyncCurrentApi
from ._current_models import (
    ConnectionIssue,
    ConnectSession,
    ConnectSessionToken,
    CurrentConnection,
    CurrentConnectionSummary,
    CurrentIntegration,
    EndUser,
    EndUserOrganization,
    IntegrationApp,
    Provider,
)
from ._current_sync import CurrentApi
from ._errors import (
    ApiError,
    AuthenticationError,
    KeywayError,
    NotFoundError,
    RateLimitedError,
    TransportError,
    ValidationError,
    WebhookVerificationError,
)
from ._models import Connection, ConnectionSummary, Integration, IntegrationSummary, ProxyResponse, Timeout
from ._sync_client import Client
from ._version import VERSION
from ._webhooks import verify_webhook

__version__ = VERSION

__all__ = [
    "ApiError",
    "ApiKeyCredentials",
    "AppCredentials",
    "AppStoreCredentials",
    "AsyncClient",
    "AsyncCurrentApi",
    "AuthenticationError",
    "AwsSigV4Credentials",
    "BasicCredentials",
    "BillCredentials",
    "Client",
    "ClientCredentials",
    "ConnectSession",
    "ConnectSessionToken",
    "Connection",
    "ConnectionIssue",
    "ConnectionSummary",
    "Credentials",
    "CurrentApi",
    "CurrentConnection",
    "CurrentConnectionSummary",
    "CurrentIntegration",
    "EndUser",
    "EndUserOrganization",
    "Integration",
    "IntegrationApp",
    "IntegrationSummary",
    "JwtCredentials",
    "KeywayError",
    "NoCredentials",
    "NotFoundError",
    "OAuth1Credentials",
    "OAuth2Credentials",
    "Provider",
    "ProxyCall",
    "ProxyResponse",
    "RateLimitedError",
    "SignatureCredentials",
    "TbaCredentials",
    "Timeout",
    "TransportError",
    "TwoStepCredentials",
    "UnknownCredentials",
    "ValidationError",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
