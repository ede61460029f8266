"""What every dashboard page shares: the session, the environment, CSRF, rendering, redirects.

A view is ``async def view(page: Page) -> web.StreamResponse`` wrapped in ``@page``: the wrapper
signs the visitor in or sends them to the sign-in form, reads the environment from the path,
refuses any POST whose CSRF token does not match the session's, and sets the security headers.
It marks the view as checking ``dashboard_session``, the auth column of its route-table line.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from keyway_shared.store import DEFAULT_ENVIRONMENTS, Environment

from ..openapi_spec import declare_auth
from ..resources import SETTINGS, STORES
from ..settings import GatewaySettings
from .render import harden, render
from .sessions import DashboardSession
from .state import DASHBOARD, Dashboard

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "PREFIX",
    "Page",
    "cookie_options",
    "html_message",
    "page",
    "redirect",
    "safe_next",
]

PREFIX = "/dashboard"
COOKIE = "keyway_dashboard"
CSRF_HEADER = "X-CSRF-Token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Messages shown after a redirect, by code: the query string never carries text of its own.
NOTICES = {
    "integration_created": "Integration created. Connect it below to try it.",
    "integration_updated": "Integration saved.",
    "integration_deleted": "Integration deleted.",
    "connection_deleted": "Connection deleted.",
    "connection_revoked": "Connection deleted; its tokens were revoked at the provider.",
    "connection_revoke_failed": (
        "Connection deleted here, but revoking its tokens at the provider failed: the grant may still be "
        "live there. The Activity tab has the provider's answer."
    ),
    "settings_saved": "Settings saved.",
    "key_rotated": "A new key was created. Both keys work until you activate or revert it.",
    "key_activated": "The new key is now the only key; the old one is refused.",
    "key_reverted": "The new key was dropped; the current key stays.",
    "webhook_key_rotated": "A new signing key signs from now on; the old one keeps signing during its grace period.",
    "webhook_signing_key_rotated": "A new webhook signing key signs X-Nango-Hmac-Sha256; the old one no longer does.",
    "replay_requested": "The delivery will be sent again; its attempts appear below as they happen.",
    "endpoint_enabled": "The webhook URL receives deliveries again.",
}


def cookie_options(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "path": PREFIX,
        "httponly": True,
        "samesite": "Lax",
        "secure": settings.public_url.lower().startswith("https://"),
    }


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def safe_next(value: str | None, default: str) -> str:
    """Only a path inside the dashboard: never an open redirect to another site."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def html_message(request: web.Request, title: str, text: str, *, status: int) -> web.Response:
    dashboard = request.app[DASHBOARD]
    return render(dashboard.templates, request, "message.html", status=status, title=title, text=text)


@dataclass(frozen=True, kw_only=True)
class Page:
    request: web.Request
    session: DashboardSession
    env: Environment
    form: MultiDictProxy[Any] = field(default_factory=lambda: MultiDictProxy(MultiDict()))

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def dashboard(self) -> Dashboard:
        return self.app[DASHBOARD]

    @property
    def settings(self) -> GatewaySettings:
        return self.app[SETTINGS]

    def url(self, *parts: str, **query: str | None) -> str:
        path = f"{PREFIX}/{self.env.name}" + "".join("/" + quote(part, safe="") for part in parts)
        given = {k: v for k, v in query.items() if v}
        return path + ("?" + urlencode(given) if given else "")

    def field(self, name: str) -> str:
        value = self.form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    def render(self, name: str, *, status: int = 200, **values: Any) -> web.Response:
        notice = NOTICES.get(self.request.query.get("notice", ""))
        common = {
            "env": self.env,
            "environments": DEFAULT_ENVIRONMENTS,
            "user": self.session.user,
            "csrf_token": self.session.csrf_token,
            "notice": notice,
            "page": self,
        }
        return render(self.dashboard.templates, self.request, name, status=status, **(common | values))

    def redirect(self, *parts: str, notice: str | None = None, **query: str | None) -> web.Response:
        return redirect(self.url(*parts, notice=notice, **query))


async def _csrf_token_of(request: web.Request) -> tuple[str | None, MultiDictProxy[Any] | None]:
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        token = form.get("csrf_token")
        return (token if isinstance(token, str) else None), form
    return request.headers.get(CSRF_HEADER), None


def page(view: Callable[[Page], Awaitable[web.StreamResponse]]) -> Handler:
    @functools.wraps(view)
    async def handler(request: web.Request) -> web.StreamResponse:
        if not request.app[SETTINGS].dashboard_enabled:
            return html_message(
                request,
                "The dashboard is off",
                "Set KEYWAY_ADMIN_USER and KEYWAY_ADMIN_PASSWORD_HASH to turn it on.",
                status=404,
            )
        session = await request.app[DASHBOARD].sessions.find(request.cookies.get(COOKIE))
        if session is None:
            target = request.path_qs if request.method in ("GET", "HEAD") else ""
            query = "?" + urlencode({"next": target}) if target else ""
            return harden(redirect(f"{PREFIX}/signin{query}"), request)
        name = request.match_info.get("env", "dev")
        env = await request.app[STORES].environments.get(name) if name in DEFAULT_ENVIRONMENTS else None
        if env is None:
            return html_message(request, "Not found", f"There is no environment '{name}'.", status=404)
        form: MultiDictProxy[Any] | None = None
        if request.method not in ("GET", "HEAD"):
            token, form = await _csrf_token_of(request)
            if not session.csrf_ok(token):
                return html_message(
                    request,
                    "Refused",
                    "This form did not come from your dashboard session (its CSRF token is missing or wrong). "
                    "Go back, reload the page and try again.",
                    status=403,
                )
        built = Page(request=request, session=session, env=env, **({"form": form} if form is not None else {}))
        return harden(await view(built), request)

    return declare_auth("dashboard_session", handler)


def form_values(form: Mapping[str, Any], *names: str) -> dict[str, str]:
    return {name: str(form.get(name, "")).strip() for name in names}
