"""What an enrichment step or hook works with: the new connection, and calls to its provider made
as the proxy makes them (the template's base URL, Bearer or Basic from the credentials, the
template's ``proxy.headers`` and ``proxy.query``), bounded in time and in the size of the answer.

An :class:`EnrichmentError` is a step that could not fill its fields; its message is for the
activity log and names no secret (never a token, never an answer's body).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from multidict import CIMultiDict

from ...credentials.bounded_body import ResponseTooLargeError, read_bounded
from ...credentials.shapes import Credentials, UnusableCredentialsError
from ...egress import failure_reason
from ...logging import get_logger, redact_url
from ..interpolation import TemplateParamError, interpolate
from ..template import ProviderTemplate

__all__ = ["CallRecord", "EnrichmentContext", "EnrichmentError", "EnrichmentLimits", "jwt_claims"]

log = get_logger(__name__)


class EnrichmentError(Exception):
    """A step or hook could not fill its fields: the call failed, or the answer lacked them."""


@dataclass(frozen=True, kw_only=True)
class EnrichmentLimits:
    # One call's bound, and all of a connection's enrichment (a hook may make several calls):
    # the user waits on the popup meanwhile.
    call_seconds: float = 10.0
    total_seconds: float = 20.0
    # An answer larger than this is refused unread: Jira's accessible-resources or Basecamp's
    # authorization list are a few KiB even for large customers.
    max_body_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class CallRecord:
    """One call made, for the activity log: method, URL (redacted), status, time taken."""

    method: str
    url: str
    status: int | None
    duration_ms: float


def jwt_claims(token: str | None) -> dict[str, Any]:
    """The payload of a JWT, unverified: the token came straight from the provider's token endpoint
    and is read only for what the provider says about the grant (Microsoft's ``tid``, Xero's
    ``authentication_event_id``). ``{}`` when the token is not a JWT."""
    parts = (token or "").split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return payload if isinstance(payload, dict) else {}


@dataclass(kw_only=True)
class EnrichmentContext:
    """The connection being made and the means to ask its provider about it."""

    provider: str
    provider_config_key: str
    template: ProviderTemplate
    credentials: Credentials
    connection_config: Mapping[str, Any]  # as the flow gives it, before any step
    http: aiohttp.ClientSession
    limits: EnrichmentLimits = field(default_factory=EnrichmentLimits)
    calls: list[CallRecord] = field(default_factory=list)  # every call made, for the activity log

    def access_token(self) -> str | None:
        return self.credentials.template_variables().get("accessToken")

    def access_token_claims(self) -> dict[str, Any]:
        return jwt_claims(self.access_token())

    def token_response(self) -> dict[str, Any]:
        raw = self.credentials.dump().get("raw")
        return raw if isinstance(raw, dict) else {}

    def token_origin(self) -> str | None:
        """The origin of the template's token URL: where a provider's identity endpoints live
        (Basecamp's launchpad), wherever the catalog or a test points it."""
        url = self.template.token_url_for()
        parts = urlsplit(url) if url and "${" not in url else None
        return f"{parts.scheme}://{parts.netloc}" if parts and parts.scheme and parts.netloc else None

    def given(self, name: str) -> bool:
        value = self.connection_config.get(name)
        return value is not None and value != ""

    async def request(
        self,
        endpoint: str,
        *,
        method: str = "GET",
        base_url_override: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        authorization: str | None = None,
    ) -> Any:
        """The JSON answer of one call to the provider, or EnrichmentError. ``authorization``
        replaces the credentials' own header (Checkr's partner API wants the token as Basic)."""
        url, sent_headers = self._prepare(endpoint, base_url_override, headers or {}, query or {}, authorization)
        shown = redact_url(url.split("?", 1)[0])
        loop = asyncio.get_running_loop()
        started = loop.time()
        status: int | None = None
        try:
            async with asyncio.timeout(self.limits.call_seconds):
                async with self.http.request(
                    method, url, headers=sent_headers, json=body, allow_redirects=False
                ) as response:
                    status = response.status
                    if not 200 <= status < 300:
                        raise EnrichmentError(f"{method} {shown} answered HTTP {status}")
                    data = await read_bounded(response, self.limits.max_body_bytes)
        except ResponseTooLargeError:
            raise EnrichmentError(f"{method} {shown} answered more than {self.limits.max_body_bytes} bytes") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("enrichment call failed", provider=self.provider, url=shown, reason=failure_reason(exc))
            raise EnrichmentError(f"{method} {shown} could not be reached") from None
        finally:
            self.calls.append(CallRecord(method, shown, status, (loop.time() - started) * 1000))
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise EnrichmentError(f"{method} {shown} did not answer JSON") from None

    def _prepare(
        self,
        endpoint: str,
        base_url_override: str | None,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        authorization: str | None,
    ) -> tuple[str, CIMultiDict[str]]:
        template, proxy = self.template, self.template.proxy
        config = dict(self.connection_config)
        values = {**config, **self.credentials.template_variables()}
        base = base_url_override or (proxy.base_url if proxy else None)
        if not base:
            raise EnrichmentError(f"the provider '{self.provider}' has no base URL to call")
        try:
            # As the proxy fills them: a URL from the configuration only, headers and query with the
            # credentials too, every value checked against where it goes (see ..rendering).
            base = template.render_url(base, config, stored=True)
            # Case-insensitive: a template's ``authorization`` header replaces the credentials' one.
            sent: CIMultiDict[str] = CIMultiDict(Accept="application/json")
            own = authorization or self.credentials.authorization()
            if own:
                sent["Authorization"] = own
            for name, value in {**(proxy.headers if proxy else {}), **headers}.items():
                sent[name] = template.render_header(str(value), values)
            if authorization:
                sent["Authorization"] = authorization
            all_query = {**(proxy.query if proxy else {}), **query}
            params = {name: interpolate(str(value), values) for name, value in all_query.items()}
        except TemplateParamError as exc:
            raise EnrichmentError(f"the call cannot be made: {exc}") from None
        except UnusableCredentialsError as exc:
            raise EnrichmentError(exc.message) from None
        url = base.rstrip("/") + "/" + endpoint.lstrip("/")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        return url, sent
