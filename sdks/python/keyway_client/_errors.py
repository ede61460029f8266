"""The exception tree (drawn in the package docstring) and the mapping from an error answer to a class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationError",
    "KeywayError",
    "NotFoundError",
    "RateLimitedError",
    "TransportError",
    "ValidationError",
    "WebhookVerificationError",
    "error_from_response",
]


class KeywayError(Exception):
    """Base of everything this package raises on purpose."""


class ApiError(KeywayError):
    """The gateway answered with an error status.

    ``code`` is the envelope's ``error.code`` (``unknown_connection``, ``duplicate_provider_config``, …),
    or None when the body was not Keyway's envelope (a load balancer's HTML page, say). ``payload`` is
    ``error.payload`` and ``errors`` the field-by-field list validated endpoints add; ``body`` is the
    whole decoded body.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        payload: Any = None,
        *,
        errors: list[Any] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code or 'error'}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.payload = payload
        self.errors = errors
        self.body = body


class AuthenticationError(ApiError):
    """The secret key is missing, malformed or unknown (401)."""


class NotFoundError(ApiError):
    """The connection or integration does not exist (404, or Nango's 400 ``unknown_provider_config``)."""


class RateLimitedError(ApiError):
    """The environment spent its requests for this window (429); retry after ``retry_after`` seconds."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        payload: Any = None,
        *,
        retry_after: float | None = None,
        errors: list[Any] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(status, code, message, payload, errors=errors, body=body)
        self.retry_after = retry_after


class ValidationError(ApiError):
    """The request was refused as invalid (400, 409, 422): a missing field, a duplicate key, …"""


class TransportError(KeywayError):
    """No usable answer: the gateway could not be reached, timed out, or sent something unreadable."""


class WebhookVerificationError(KeywayError):
    """A webhook's signature headers are missing, stale or do not match: do not trust the body."""


# Codes decide first: Nango answers some "not found" cases with 400, and the class should say what happened.
_NOT_FOUND_CODES = frozenset({"unknown_connection", "unknown_provider_config", "not_found"})
_AUTH_CODES = frozenset(
    {"missing_auth_header", "malformed_auth_header", "invalid_secret_key_format", "unknown_user_account"}
)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from Keyway, and the reset header says the same


def error_from_response(status: int, headers: Mapping[str, str], body: Any, text: str) -> ApiError:
    """The exception for an error answer, from its status, headers and (decoded, if JSON) body."""
    code: str | None = None
    message = text[:500] or f"HTTP {status}"
    payload: Any = None
    errors: list[Any] | None = None
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict):
        code = inner.get("code") if isinstance(inner.get("code"), str) else None
        message = str(inner.get("message") or code or message)
        payload = inner.get("payload")
        errors = inner.get("errors") if isinstance(inner.get("errors"), list) else None
    elif isinstance(inner, str) and isinstance(body, dict):  # the envelope before Nango 0.40.8
        code = body.get("type") if isinstance(body.get("type"), str) else None
        message = inner
        payload = body.get("payload")
    if status == 429 or code == "too_many_request":
        return RateLimitedError(
            status, code, message, payload, retry_after=_retry_after(headers), errors=errors, body=body
        )
    cls: type[ApiError]
    if code in _AUTH_CODES or status == 401:
        cls = AuthenticationError
    elif code in _NOT_FOUND_CODES or status == 404:
        cls = NotFoundError
    elif status in (400, 409, 422):
        cls = ValidationError
    else:
        cls = ApiError
    return cls(status, code, message, payload, errors=errors, body=body)
