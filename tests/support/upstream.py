"""A third-party API stand-in on 127.0.0.1 for proxy tests: it echoes what it received.

- ``ANY /…/echo/{tail}`` → 200 ``{"method", "path", "query", "headers", "body"}`` and ``X-Upstream: echo``;
- ``ANY /…/status/{code}`` → that status with ``{"upstream": code}``;
- ``ANY /…/flaky/{name}?times=N&code=C`` → C (default 503) the first N times per name, then like echo.

Every request is also kept in ``requests`` so a test can count attempts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .procs import free_port


@dataclass
class EchoUpstream:
    port: int = field(default_factory=free_port)
    requests: list[dict[str, Any]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> EchoUpstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode(errors="replace")
        seen = {
            "method": request.method,
            "path": request.path,
            "query": {k: request.query.getall(k) for k in request.query},
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
        }
        self.requests.append(seen)
        parts = request.path.strip("/").split("/")
        if "status" in parts and parts.index("status") + 1 < len(parts):
            code = int(parts[parts.index("status") + 1])
            return web.json_response({"upstream": code}, status=code, headers={"X-Upstream": "status"})
        if "flaky" in parts:
            name = request.path
            self.attempts[name] += 1
            if self.attempts[name] <= int(request.query.get("times", "1")):
                code = int(request.query.get("code", "503"))
                return web.json_response({"attempt": self.attempts[name]}, status=code)
            return web.json_response({**seen, "attempt": self.attempts[name]}, headers={"X-Upstream": "flaky"})
        return web.json_response(seen, headers={"X-Upstream": "echo"})
