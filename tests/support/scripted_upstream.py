"""A third-party API on 127.0.0.1 for proxy tests: records every request, answers from a script.

A path with scripted steps answers them in order (a status with headers, or ``"drop"``: the
connection closes without an answer), then behaves as usual:

- ``/…/status/{code}`` → that status, ``{"upstream": code}``, ``X-Upstream: status``;
- ``/big?size=N`` → N bytes streamed in 64 KiB chunks with no Content-Length;
- ``/gzip`` → a gzip-encoded JSON body; ``/slow?seconds=S`` → answers after S seconds;
- ``/cut`` → 200, some of a chunked body, then the connection drops;
- ``/redirect`` → 302 to the relative ``/echo/after``;
- anything else → 200 echoing what it received, with headers a proxy must filter or keep.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from .procs import free_port

Step = tuple[int, dict[str, str]] | str


def big_body(size: int) -> bytes:
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: CIMultiDict[str]
    body: bytes
    at: float


@dataclass
class ScriptedUpstream:
    port: int = field(default_factory=free_port)
    calls: list[Seen] = field(default_factory=list)
    script: dict[str, list[Step]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def then(self, path: str, *steps: Step) -> None:
        self.script.setdefault(path, []).extend(steps)

    def calls_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.calls if seen.path == path]

    async def start(self) -> ScriptedUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query={k: request.query.getall(k) for k in request.query},
            headers=CIMultiDict(request.headers),
            body=await request.read(),
            at=time.monotonic(),
        )
        self.calls.append(seen)
        steps = self.script.get(request.path)
        if steps:
            step = steps.pop(0)
            if step == "drop":
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            status, headers = step if isinstance(step, tuple) else (500, {})
            return web.json_response({"scripted": status}, status=status, headers=headers)
        parts = request.path.strip("/").split("/")
        if "status" in parts and parts.index("status") + 1 < len(parts):
            code = int(parts[parts.index("status") + 1])
            body = None if code in (204, 304) else json.dumps({"upstream": code}).encode()
            return web.Response(
                status=code, body=body, content_type="application/json", headers={"X-Upstream": "status"}
            )
        if request.path == "/big":
            return await self._big(request, int(request.query.get("size", "0")))
        if request.path == "/gzip":
            payload = gzip.compress(json.dumps({"compressed": True}).encode())
            return web.Response(body=payload, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if request.path == "/slow":
            await asyncio.sleep(float(request.query.get("seconds", "5")))
            return web.json_response({"slow": True})
        if request.path == "/cut":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"x" * 100_000)
            assert request.transport is not None
            request.transport.abort()
            return response
        if request.path == "/redirect":
            raise web.HTTPFound("/echo/after")
        return web.json_response(self._echo(seen), headers=self._echo_headers())

    @staticmethod
    def _echo(seen: Seen) -> dict[str, Any]:
        return {
            "method": seen.method,
            "path": seen.path,
            "query": seen.query,
            "headers": {k.lower(): v for k, v in seen.headers.items()},
            "body": seen.body.decode(errors="replace"),
        }

    @staticmethod
    def _echo_headers() -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        headers["X-Upstream"] = "echo"
        headers["X-RateLimit-Remaining"] = "42"  # the provider's own rate headers reach the caller
        headers["Set-Cookie"] = "upstream_session=abc; Path=/"
        headers["Access-Control-Allow-Origin"] = "https://upstream.example"
        headers.add("X-Multi", "one")
        headers.add("X-Multi", "two")
        return headers

    async def _big(self, request: web.Request, size: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = big_body(size)
        for offset in range(0, size, 65536):
            await response.write(data[offset : offset + 65536])
        await response.write_eof()
        return response
