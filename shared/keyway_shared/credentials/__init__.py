"""Obtaining and renewing credentials: token endpoints, JWT-minted tokens, parsing responses."""

from .errors import PermanentTokenError, TokenRequestError, TransientTokenError
from .oauth2_client import request_token
from .tokens import js_iso, oauth2_credentials, parse_expires_at, parse_token_body

__all__ = [
    "PermanentTokenError",
    "TokenRequestError",
    "TransientTokenError",
    "js_iso",
    "oauth2_credentials",
    "parse_expires_at",
    "parse_token_body",
    "request_token",
]
