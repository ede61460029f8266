"""One signed POST of a webhook body, and what came of it.

Headers: Nango's ``X-Nango-Signature`` (sha256 of secret key + body, the 2024 scheme) and
``X-Nango-Hmac-Sha256`` (HMAC-SHA256 of the body keyed by the environment's webhook signing key, as
Nango signs it today), plus the Standard Webhooks trio. Nango signs its legacy header with the signing
key too; Keyway keeps it on the secret key, the only key a 2024 SDK's ``verifyWebhookSignature`` has.
``webhook-id`` is derived from the event and the URL, so it is the same on every retry and a receiver
can deduplicate; ``webhook-timestamp`` is fresh per attempt; ``webhook-signature`` holds one signature
per live signing key (two during a rotation).
Redirects are not followed (a 3xx is a failure), and at most 4 KB of the answer is read.

The POST goes through :class:`~.http1.WebhookHttpClient`, which connects only to public (or
allowlisted) addresses; see there why it is not aiohttp's client.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from yarl import URL

from keyway_shared.egress import EgressRefusedError, Network
from keyway_shared.events import ErrorInfo
from keyway_shared.webhook_signing import nango_hmac_signature, nango_signature, standard_signature

from .http1 import HttpClientError, InvalidUrlClientError, WebhookHttpClient

__all__ = ["MAX_RESPONSE_BYTES", "Attempt", "WebhookSender", "signed_headers", "webhook_client"]

MAX_RESPONSE_BYTES = 4096
USER_AGENT = "Keyway-Webhooks"
_MAX_TARGETS = 4096  # URLs whose parse is kept


def webhook_client(allowlist: Sequence[Network], *, timeout: float, limit: int) -> WebhookHttpClient:
    """The client webhooks go through: public addresses or the allowlist only, 4 KB of each answer."""
    return WebhookHttpClient(list(allowlist), timeout=timeout, limit=limit, max_body=MAX_RESPONSE_BYTES)


def signed_headers(
    *,
    secret_key: str,
    webhook_signing_key: str,
    signing_keys: Sequence[str],
    msg_id: str,
    body: bytes,
    timestamp: int,
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,  # here rather than in the session's defaults: no merge per request
        "X-Nango-Signature": nango_signature(secret_key, body),
        "X-Nango-Hmac-Sha256": nango_hmac_signature(webhook_signing_key, body),
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if signing_keys:
        headers["webhook-signature"] = standard_signature(signing_keys, msg_id=msg_id, timestamp=timestamp, body=body)
    return headers


@dataclass(frozen=True, kw_only=True)
class Attempt:
    url: str
    status: int | None
    duration_ms: float
    error: ErrorInfo | None  # None exactly when the receiver answered 2xx
    error_class: str | None
    response_body: str | None
    retry_after: str | None = None  # the receiver's Retry-After header, as sent
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def receiver_unwell(self) -> bool:
        """A failure that says the receiver is down or overloaded (what trips the circuit breaker)."""
        if self.ok or self.error_class == "EgressRefused":
            return False
        return self.status is None or self.status >= 500 or self.status == 429


class WebhookSender:
    """POSTs a signed body and tells what came of it, as an :class:`Attempt` (never an exception)."""

    def __init__(self, client: WebhookHttpClient) -> None:
        self._client = client
        self._targets: dict[str, URL] = {}

    def _target(self, url: str) -> URL:
        """``url`` parsed, once per URL."""
        parsed = self._targets.get(url)
        if parsed is None:
            try:
                parsed = URL(url)
            except ValueError as exc:
                raise InvalidUrlClientError(f"not a URL: {exc}") from exc
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = parsed
        return parsed

    async def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> Attempt:
        started = time.perf_counter()

        def done(
            status: int | None,
            error: ErrorInfo | None,
            error_class: str | None,
            text: str | None = None,
            *,
            retry_after: str | None = None,
            timed_out: bool = False,
        ) -> Attempt:
            duration = round((time.perf_counter() - started) * 1000, 3)
            return Attempt(
                url=url,
                status=status,
                duration_ms=duration,
                error=error,
                error_class=error_class,
                response_body=text,
                retry_after=retry_after,
                timed_out=timed_out,
            )

        try:
            response = await self._client.post(self._target(url), body=body, headers=headers)
        except EgressRefusedError as exc:
            return done(None, ErrorInfo(type="egress_refused", description=str(exc)), "EgressRefused")
        except TimeoutError as exc:
            description = f"no answer within {self._client.timeout:g} s"
            return done(
                None, ErrorInfo(type="timeout", description=description), exc.__class__.__name__, timed_out=True
            )
        except HttpClientError as exc:
            error = ErrorInfo(type="network_error", description=f"{exc.__class__.__name__}: {exc}")
            return done(None, error, exc.__class__.__name__)
        text = response.body.decode("utf-8", "replace")
        if 200 <= response.status < 300:
            return done(response.status, None, None, text)
        error = ErrorInfo(type="http_error", description=f"the receiver answered HTTP {response.status}")
        return done(response.status, error, "HTTPStatus", text, retry_after=response.retry_after)
