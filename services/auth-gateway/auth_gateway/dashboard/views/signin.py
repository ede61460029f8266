"""Signing in and out: the admin account from settings; repeated failures lock the client's address
out and slow tries at the user name down (``sessions.LockoutStore``)."""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
from urllib.parse import urlencode

from aiohttp import web

from keyway_shared.compare import secrets_equal
from keyway_shared.events import utcnow
from keyway_shared.logging import get_logger

from ...http.client_address import client_address
from ...openapi_spec import no_credential
from ...resources import SETTINGS
from ..pages import COOKIE, PREFIX, Page, cookie_options, html_message, page, redirect, safe_next
from ..passwords import verify_password
from ..render import harden, render
from ..sessions import Refusal
from ..state import DASHBOARD

__all__ = ["home", "signin_form", "signin_submit", "signout"]

log = get_logger(__name__)
# Before there is a session, the sign-in form is protected by a double-submit cookie.
PRE_COOKIE = "keyway_dashboard_signin"
HOME = f"{PREFIX}/dev/integrations"


def _disabled(request: web.Request) -> web.Response | None:
    if request.app[SETTINGS].dashboard_enabled:
        return None
    return html_message(
        request,
        "The dashboard is off",
        "Set KEYWAY_ADMIN_USER and KEYWAY_ADMIN_PASSWORD_HASH to turn it on.",
        status=404,
    )


def _form(request: web.Request, *, error: str | None = None, status: int = 200, user: str = "") -> web.Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request.app[DASHBOARD].templates,
        request,
        "signin.html",
        status=status,
        error=error,
        user=user,
        csrf_token=token,
        next=safe_next(request.query.get("next"), ""),
        signed_out=request.query.get("signed_out") == "1" and error is None,
    )
    options = cookie_options(request.app[SETTINGS])
    response.set_cookie(PRE_COOKIE, token, max_age=3600, **options)
    return response


@no_credential
async def home(request: web.Request) -> web.StreamResponse:
    return harden(redirect(HOME), request)


@no_credential
async def signin_form(request: web.Request) -> web.StreamResponse:
    disabled = _disabled(request)
    if disabled is not None:
        return disabled
    if await request.app[DASHBOARD].sessions.find(request.cookies.get(COOKIE)) is not None:
        return harden(redirect(safe_next(request.query.get("next"), HOME)), request)
    return _form(request)


def _refused(request: web.Request, refusal: Refusal, *, user: str) -> web.Response:
    """429 with the wait: this address is locked out, or this user name is being slowed down."""
    now = request.app[DASHBOARD].lockouts.clock()
    seconds = max(1, math.ceil((refusal.until - now).total_seconds()))
    if refusal.reason == "address_locked":
        error = f"Too many failed sign-ins. Try again in {max(1, math.ceil(seconds / 60))} min."
    else:
        error = f"Too many failed sign-ins for this user name. Try again in {seconds} s."
    response = _form(request, error=error, status=429, user=user)
    response.headers["Retry-After"] = str(seconds)
    return response


@no_credential
async def signin_submit(request: web.Request) -> web.StreamResponse:
    disabled = _disabled(request)
    if disabled is not None:
        return disabled
    settings = request.app[SETTINGS]
    dashboard = request.app[DASHBOARD]
    form = await request.post()
    user, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    presented, expected = str(form.get("csrf_token", "")), request.cookies.get(PRE_COOKIE, "")
    if not presented or not expected or not secrets_equal(expected, presented):
        return html_message(
            request,
            "Refused",
            "This sign-in form did not come from this dashboard (its CSRF token is missing or wrong). "
            "Reload the sign-in page and try again.",
            status=403,
        )
    address = client_address(request, settings.trusted_proxies)
    refusal = await dashboard.lockouts.admit(user, address)
    if refusal is not None:
        return _refused(request, refusal, user=user)
    configured = settings.admin_password_hash.get_secret_value() if settings.admin_password_hash else None
    # scrypt takes a fraction of a second of CPU: off the event loop, so other requests keep flowing.
    password_ok = await asyncio.to_thread(verify_password, password, configured)
    user_ok = hmac.compare_digest(user.encode(), (settings.admin_user or "").encode())
    if not (password_ok and user_ok):
        refusal = await dashboard.lockouts.failed(user, address)
        log.warning("dashboard sign-in failed", remote=address, locked=refusal is not None)
        if refusal is not None:
            return _refused(request, refusal, user=user)
        return _form(request, error="Wrong user name or password.", status=401, user=user)
    await dashboard.lockouts.succeeded(address)
    token, session = await dashboard.sessions.create(user)
    log.info("dashboard sign-in", user=user, remote=address)
    response = redirect(safe_next(str(form.get("next", "")), HOME))
    options = cookie_options(settings)
    max_age = int((session.expires_at - utcnow()).total_seconds())
    response.set_cookie(COOKIE, token, max_age=max_age, **options)
    response.del_cookie(PRE_COOKIE, path=options["path"])
    return harden(response, request)


@page
async def signout(page: Page) -> web.StreamResponse:
    await page.dashboard.sessions.delete(page.session.id)
    response = redirect(f"{PREFIX}/signin?" + urlencode({"signed_out": "1"}))
    response.del_cookie(COOKIE, path=PREFIX)
    return response
