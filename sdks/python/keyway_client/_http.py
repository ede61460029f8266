"""The HTTP layer under the clients: one aiohttp session per event loop, requests, answers, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from ._errors import TransportError, error_from_response
from ._models import Timeout
from ._version import USER_AGENT

__all__ = ["Params", "Transport", "flag", "is_envelope", "query_pairs", "segment"]

Params = Mapping[str, str | int | float | bool | Sequence[str]]


def segment(value: str) -> str:
    """One path segment, every reserved character escaped: connection ids may hold ``/``, ``?`` or spaces."""
    return quote(value, safe="")


def flag(value: bool) -> str:
    return "true" if value else "false"


def query_pairs(params: Params | None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in (params or {}).items():
        if isinstance(value, bool):
            pairs.append((name, flag(value)))
        elif isinstance(value, str | int | float):
            pairs.append((name, str(value)))
        else:
            pairs.extend((name, str(item)) for item in value)
    return pairs


def is_envelope(body: Any) -> bool:
    """Keyway's own error body, ``{"error": {"code": c, …}, "type": c}``, which upstream APIs do not send."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    code = body["error"].get("code")
    return isinstance(code, str) and body.get("type") == code


class Transport:
    """Sends requests to one gateway with one secret key.

    The aiohttp session opens on the first request, on the loop running it; a later request from
    another loop is refused rather than silently using a session bound elsewhere.
    """

    def __init__(self, *, host: str, secret_key: str, timeout: Timeout, user_agent: str | None) -> None:
        if not secret_key:
            raise ValueError("secret_key is required")
        try:
            parsed = URL(host)
        except ValueError:
            parsed = URL()
        if parsed.scheme not in {"http", "https"} or not parsed.host:
            raise ValueError(f"host must be an http(s) URL, not {host!r}")
        self.host = host.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout.total, connect=timeout.connect)
        self._headers = {
            "Authorization": f"Bearer {secret_key}",
            "User-Agent": f"{USER_AGENT}; {user_agent}" if user_agent else USER_AGENT,
        }
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._loop = None

    def _session_for_this_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("an AsyncClient belongs to the event loop of its first call; make one per loop")
        return self._session

    async def send(
        self,
        method: str,
        url: URL,
        *,
        params: list[tuple[str, str]] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body) of whatever answered; TransportError when nothing did."""
        session = self._session_for_this_loop()
        try:
            async with session.request(
                method, url, params=params or None, json=json_body, data=data, headers=headers
            ) as resp:
                return resp.status, resp.headers.copy(), await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} {url.path}: {type(exc).__name__}: {exc}") from exc

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json_body: Any = None,
        authorization: str | None = None,
    ) -> Any:
        """One API call: the decoded JSON of a 2xx answer (None when empty), else the mapped ApiError.

        ``authorization`` replaces the secret key's header for this call (a connect session's token).
        """
        url = URL(self.host + path, encoded=True)  # the path's segments are escaped already
        sent = {"Accept": "application/json"}
        if authorization is not None:
            sent["Authorization"] = authorization
        status, headers, content = await self.send(method, url, params=params, json_body=json_body, headers=sent)
        text = content.decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(content) if content else None
        except ValueError:
            body = None
            if 200 <= status < 300:
                raise TransportError(f"{method} {path}: the answer is not JSON ({text[:100]!r})") from None
        if not 200 <= status < 300:
            raise error_from_response(status, headers, body, text)
        return body
