"""Binding a popup flow to the browser that started it (RFC 9700 §4.7, "CSRF" and consent phishing).

The ``state`` travels in the provider's URLs, so on its own it proves nothing about who comes back:
an attacker may start a flow, send the provider's consent page to a victim, and the victim's consent
would complete the attacker's flow. So ``/oauth/connect`` gives the browser a random nonce in a
cookie, the flow's session keeps only its SHA-256, and the callback goes on only when the same
browser brings the nonce back.

The cookie is HttpOnly; SameSite=Lax, because the callback is the provider's top-level GET redirect
(a custom callback URL on the app's domain forwards the browser to the gateway, which then gets it
too); Path=/ (``/oauth/callback`` and ``/app-auth/connect``); it lives as long as the flow's session;
Secure, with the ``__Host-`` prefix that a sibling subdomain cannot plant, when the gateway's public
URL is https. Its name derives from the nonce's hash: flows started side by side in one browser each
keep their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from ...operations.flow_sessions import SESSION_TTL
from ...resources import SETTINGS

__all__ = ["BrowserBinding", "forget_browser", "is_same_browser"]


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def _secure(request: web.Request) -> bool:
    return request.app[SETTINGS].public_url.lower().startswith("https://")


def _cookie_name(digest: str, *, secure: bool) -> str:
    # 64 bits of the digest tell flows apart; the nonce itself stays 256 bits.
    return ("__Host-" if secure else "") + f"keyway-flow-{digest[:16]}"


@dataclass(frozen=True)
class BrowserBinding:
    """A new flow's nonce (for the browser's cookie) and its digest (for the flow's session)."""

    nonce: str
    digest: str

    @classmethod
    def new(cls) -> BrowserBinding:
        nonce = secrets.token_urlsafe(32)
        return cls(nonce=nonce, digest=_digest(nonce))

    def give_to(self, request: web.Request, response: web.StreamResponse) -> None:
        secure = _secure(request)
        response.set_cookie(
            _cookie_name(self.digest, secure=secure),
            self.nonce,
            max_age=int(SESSION_TTL.total_seconds()),
            path="/",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )


def is_same_browser(request: web.Request, digest: str | None) -> bool:
    """Whether the request carries the nonce whose digest the flow's session kept."""
    if not digest:
        return False  # a session from before browser binding: it cannot be proven, so it is refused
    nonce = request.cookies.get(_cookie_name(digest, secure=_secure(request)))
    return bool(nonce) and hmac.compare_digest(_digest(nonce or ""), digest)


def forget_browser(request: web.Request, response: web.StreamResponse, digest: str | None) -> None:
    """The flow has ended: the browser drops its cookie."""
    if digest:
        secure = _secure(request)
        response.del_cookie(_cookie_name(digest, secure=secure), path="/", secure=secure, httponly=True, samesite="Lax")
