"""A small Bill Connect API on 127.0.0.1, for tests: ``POST /connect/v3/login`` and the API under it.

As Bill documents it: the login takes ``{username, password, organizationId, devKey}`` as JSON and
answers a ``sessionId``; every other call must send that session and the same developer key in the
``sessionId`` and ``devKey`` headers, and a session ends (here after ``lifetime``) or when a newer
login replaces it. Wrong logins are 400 with Bill's error list; unauthenticated calls 401.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from .procs import free_port


@dataclass
class FakeBill:
    username: str = "ap@acme.example"
    password: str = "bill-pass-72"
    organization_id: str = "00801ABCDEFGHIJ"
    dev_key: str = "bill-dev-key-19"
    user_id: str = "00601XYZ"
    lifetime: timedelta = timedelta(minutes=35)
    port: int = field(default_factory=free_port)
    sessions: dict[str, datetime] = field(default_factory=dict)  # session id -> when it ends
    logins: list[dict[str, Any]] = field(default_factory=list)
    api_calls: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def template(self) -> dict[str, Any]:
        return {
            "auth_mode": "BILL",
            "display_name": "Bill (fake)",
            "token_url": f"{self.base}/connect/v3/login",
            "proxy": {"base_url": f"{self.base}/connect"},
        }

    @property
    def login(self) -> dict[str, str]:
        """What a person types, as the SDK's credentials name it."""
        return {
            "username": self.username,
            "password": self.password,
            "organization_id": self.organization_id,
            "dev_key": self.dev_key,
        }

    async def __aenter__(self) -> FakeBill:
        app = web.Application()
        app.router.add_post("/connect/v3/login", self._login)
        app.router.add_route("*", "/connect/v3/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or request.content_type != "application/json":
            return web.json_response([{"code": "BDC_1001", "message": "Invalid JSON"}], status=400)
        self.logins.append({k: v for k, v in body.items() if k != "password"})
        expected = {
            "username": self.username,
            "password": self.password,
            "organizationId": self.organization_id,
            "devKey": self.dev_key,
        }
        if body != expected:
            return web.json_response([{"code": "BDC_1109", "message": "Sign in failed"}], status=400)
        session = secrets.token_hex(16)
        self.sessions[session] = datetime.now(UTC) + self.lifetime
        return web.json_response({"sessionId": session, "organizationId": self.organization_id, "userId": self.user_id})

    async def _api(self, request: web.Request) -> web.Response:
        session = request.headers.get("sessionId", "")
        ends = self.sessions.get(session)
        if request.headers.get("devKey") != self.dev_key or ends is None or ends <= datetime.now(UTC):
            self.refused.append(request.path)
            return web.json_response([{"code": "BDC_1361", "message": "Session is invalid"}], status=401)
        self.api_calls.append({"path": request.path, "session": session})
        return web.json_response({"results": [], "path": request.match_info["tail"]})
