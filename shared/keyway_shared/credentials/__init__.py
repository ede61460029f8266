"""Obtaining and renewing credentials: token endpoints, JWT-minted tokens, parsing responses."""

from .errors import PermanentTokenError, TokenRequestError, TransientTokenError
from .oauth2_client import request_token
from .shapes import Credentials, oauth2_credentials, parse_credentials
from .tokens import js_iso, parse_expires_at, parse_token_body

__all__ = [
    "Credentials",
    "PermanentTokenError",
    "TokenRequestError",
    "TransientTokenError",
    "js_iso",
    "oauth2_credentials",
    "parse_credentials",
    "parse_expires_at",
    "parse_token_body",
    "request_token",
]
