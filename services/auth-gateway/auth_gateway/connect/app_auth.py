"""``GET /app-auth/connect``: where GitHub sends the browser after a GitHub App installation (its
"Setup URL"). With our ``state`` it is the popup callback; without one the installation was started
on github.com, not through the SDK, and the browser goes back where it came from (spec §2.4).

Nothing in this query is trusted on its own: without the state of a live flow nothing is minted or
stored, and with one the flow's finisher (``connect.modes.github_app``) has GitHub confirm the installation.
"""

from __future__ import annotations

from aiohttp import web

from ..openapi_spec import no_credential
from .oauth import oauth_callback

__all__ = ["app_auth_connect"]


@no_credential  # the flow's state and the browser that started it, as at /oauth/callback
async def app_auth_connect(request: web.Request) -> web.StreamResponse:
    return await oauth_callback(request)  # which also sends installations started on github.com back
