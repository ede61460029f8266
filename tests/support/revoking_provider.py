"""The test OAuth 2 server plus an RFC 7009 revocation endpoint at ``/revoke``, on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .oauth_provider import OAuthProvider

__all__ = ["RevokingProvider"]


@dataclass
class RevokingProvider(OAuthProvider):
    """``revoke_mode``: ok | error_500; ``revocations`` lists each token revoked, with its hint."""

    revoke_mode: str = "ok"
    revocations: list[dict[str, Any]] = field(default_factory=list)

    async def start(self) -> RevokingProvider:
        app = web.Application()
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_post("/revoke", self._revoke)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def _revoke(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        client_id, client_secret = self._client(request, form)
        if self.revoke_mode == "error_500":
            return web.Response(status=503, text="down: token " + form.get("token", ""))
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.revocations.append({"token": form.get("token"), "hint": form.get("token_type_hint")})
        return web.Response(status=200)
