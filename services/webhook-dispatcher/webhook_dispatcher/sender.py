"""One signed POST of a webhook body, and what came of it.

Headers: Nango's ``X-Nango-Signature`` (sha256 of secret key + body, the 2024 scheme) and
``X-Nango-Hmac-Sha256`` (HMAC-SHA256 of the body keyed by the environment's webhook signing key, as
Nango signs it today), plus the Standard Webhooks trio. Nango signs its legacy header with the signing
key too; Keyway keeps it on the secret key, the only key a 2024 SDK's ``verifyWebhookSignature`` has.
``webhook-id`` is derived from the event and the URL, so it is the same on every retry and a receiver
can deduplicate; ``webhook-timestamp`` is fresh per attempt; ``webhook-signature`` holds one signature
per live signing key (two during a rotation).
Redirects are not followed (a 3xx is a failure), and at most 4 KB of the answer is read.

The session (:func:`webhook_session`) is ``keyway_shared.egress.guarded_session`` without its
per-request trace: names are vetted in its resolver as there, and literal IP hosts, which aiohttp
never resolves, here, once per URL. The guard's trace costs a fifth of a POST's CPU (it builds
trace contexts and parameter objects for every request), and its other half, judging redirect
targets, has nothing to judge when redirects are not followed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from keyway_shared.egress import EgressRefusedError, GuardedResolver, Network, refusal_for_host
from keyway_shared.events import ErrorInfo
from keyway_shared.webhook_signing import nango_hmac_signature, nango_signature, standard_signature

__all__ = ["MAX_RESPONSE_BYTES", "Attempt", "WebhookSender", "signed_headers", "webhook_session"]

MAX_RESPONSE_BYTES = 4096
USER_AGENT = "Keyway-Webhooks"
_MAX_TARGETS = 4096  # URLs whose parse and verdict are kept


def webhook_session(allowlist: Sequence[Network], *, limit: int, **kwargs: Any) -> aiohttp.ClientSession:
    """A session whose connections reach only public addresses or the allowlist: every name is
    resolved through the guard. Literal IP hosts are for :class:`WebhookSender` to vet."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowlist), limit=limit, ttl_dns_cache=60)
    return aiohttp.ClientSession(connector=connector, **kwargs)


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
    """POSTs through a session from :func:`webhook_session` (or ``guarded_session``), which refuses
    names that resolve to private, loopback and other non-public addresses (outside ``allowlist``);
    a URL whose host is such an address written out is refused here, before any connection."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout: float, allowlist: Sequence[Network]) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allowlist = list(allowlist)
        self._targets: dict[str, tuple[URL, str | None]] = {}

    def _target(self, url: str) -> URL:
        """``url`` parsed (as aiohttp would parse it), once it passed the guard for literal hosts."""
        known = self._targets.get(url)
        if known is None:
            try:
                parsed = URL(url)
            except ValueError as exc:
                raise aiohttp.InvalidUrlClientError(url) from exc  # what aiohttp raises for it
            # A URL aiohttp will refuse anyway (another scheme, no host) is left to it, for its error.
            vetted = parsed.scheme in ("http", "https") and bool(parsed.raw_host)
            known = (parsed, refusal_for_host(parsed.host or "", self._allowlist) if vetted else None)
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = known
        parsed, refusal = known
        if refusal is not None:
            raise EgressRefusedError(refusal)
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
            async with self._session.post(
                self._target(url), data=body, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as response:
                text = (await response.content.read(MAX_RESPONSE_BYTES)).decode("utf-8", "replace")
                if 200 <= response.status < 300:
                    return done(response.status, None, None, text)
                error = ErrorInfo(type="http_error", description=f"the receiver answered HTTP {response.status}")
                return done(response.status, error, "HTTPStatus", text, retry_after=response.headers.get("Retry-After"))
        except EgressRefusedError as exc:
            return done(None, ErrorInfo(type="egress_refused", description=str(exc)), "EgressRefused")
        except TimeoutError as exc:
            description = f"no answer within {self._timeout.total:g} s"
            return done(
                None, ErrorInfo(type="timeout", description=description), exc.__class__.__name__, timed_out=True
            )
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL aiohttp cannot parse
            error = ErrorInfo(type="network_error", description=f"{exc.__class__.__name__}: {exc}")
            return done(None, error, exc.__class__.__name__)
