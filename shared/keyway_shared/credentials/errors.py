"""Why a call to a provider's token endpoint failed, in a form both callers and events can use.

    TokenRequestError
    ├── TransientTokenError     network error, timeout, 5xx, 429: try again later
    └── PermanentTokenError     the provider refused (invalid_grant, invalid_client, …) or answered nonsense

``type`` is the stable code that reaches the SDK, the webhook and the activity log; ``description``
is for people. Neither ever holds a token or a client secret.
"""

from __future__ import annotations

__all__ = ["PermanentTokenError", "TokenRequestError", "TransientTokenError"]


class TokenRequestError(Exception):
    def __init__(
        self,
        type: str,
        description: str,
        *,
        status: int | None = None,
        provider_error: str | None = None,
    ) -> None:
        super().__init__(description)
        self.type = type
        self.description = description
        self.status = status
        self.provider_error = provider_error  # the OAuth ``error`` code, e.g. invalid_grant


class TransientTokenError(TokenRequestError):
    def __init__(
        self, type: str, description: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(type, description, status=status)
        self.retry_after = retry_after


class PermanentTokenError(TokenRequestError):
    pass
