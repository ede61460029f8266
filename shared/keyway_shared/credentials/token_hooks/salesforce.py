"""Salesforce: token responses carry no ``expires_in``; the token lives as long as the org's session
timeout (15 minutes to 24 hours, 2 hours by default, extended by use), which only introspection
tells (RFC 7662, ``POST {instance_url}/services/oauth2/introspect``; Nango introspects too).

The expiry is asked at connect time and after each refresh, so the refresher renews the token
before it dies. When introspection fails the connection is kept all the same: the template's
``token_expires_in_ms`` (one hour in the catalog) stands in, and the next refresh asks again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from ...logging import get_logger
from ...providers.interpolation import TemplateParamError
from ..errors import TokenRequestError
from ..oauth2_client import client_request
from ..shapes import OAuth2Credentials
from ..token_http import call_token_endpoint
from .base import TokenCall, TokenHook

__all__ = ["INTROSPECTION_URL", "Salesforce"]

log = get_logger(__name__)

# The origin is the token response's ``instance_url``: checked as every stored origin is (https, a
# host name, nothing else), so a value that is not one is not sent the client secret.
INTROSPECTION_URL = "${connectionConfig.instance_url}/services/oauth2/introspect"


class Salesforce(TokenHook):
    async def expiry(self, call: TokenCall, credentials: OAuth2Credentials) -> datetime | None:
        try:
            url = call.template.render_url(INTROSPECTION_URL, call.connection_config, stored=True)
        except TemplateParamError as exc:
            log.warning("salesforce introspection skipped", reason=type(exc).__name__)
            return None
        headers, body = client_request(
            url=url,
            template=call.template,
            params={"token": credentials.access_token, "token_type_hint": "access_token"},
            client_id=call.client_id,
            client_secret=call.client_secret,
        )
        try:
            answer = await call_token_endpoint(
                call.http, "POST", url, headers=headers, data=body, timeout_seconds=call.timeout_seconds
            )
        except TokenRequestError as exc:
            log.warning("salesforce introspection failed", host=urlsplit(url).hostname, error=exc.type)
            return None
        exp = answer.get("exp")
        if answer.get("active") is not True or not isinstance(exp, int | float) or isinstance(exp, bool):
            log.warning("salesforce introspection gave no expiry", host=urlsplit(url).hostname)
            return None
        expires_at = datetime.fromtimestamp(exp, UTC)
        return expires_at if expires_at > call.now else None
