"""A lean HTTP/1.1 client for webhook POSTs: keep-alive connections, the egress guard, a total timeout.

Why not aiohttp's client, which the rest of Keyway uses: a webhook POST needs none of its machinery
(cookies, redirects, proxies, traces, compression, streamed bodies, multipart), and building the
request and response objects that carry it cost the dispatcher about 0.1 ms of CPU per webhook,
half of what the whole POST costs. This client does one thing: it writes one prepared request on a
kept-alive connection and parses the answer with ``httptools`` (llhttp, the parser Node.js uses and
aiohttp's own C parser is built on), reading at most ``max_body`` bytes of it.

Guard: a name is resolved through :class:`~keyway_shared.egress.GuardedResolver`, so only public
(or allowlisted) addresses are connected to; a literal IP host is judged by
:func:`~keyway_shared.egress.refusal_for_host`; a numeric host in a legacy IPv4 form (``2130706434``,
``127.1``), which the system resolver would turn into an address, is refused as an invalid URL, as
aiohttp refuses it. Connections are only ever made to vetted addresses, so reusing one needs no check.

Failures raise the classes below. Their names are those aiohttp gives the same failures: the
attempt records show them as ``error_class``, and what operators filter on stays the same.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import httptools
from aiohttp.abc import AbstractResolver
from yarl import URL

from keyway_shared.egress import EgressRefusedError, GuardedResolver, Network, refusal_for_host

__all__ = [
    "ClientConnectorCertificateError",
    "ClientConnectorError",
    "ClientPayloadError",
    "ClientResponseError",
    "ClientSSLError",
    "HttpClientError",
    "InvalidUrlClientError",
    "NonHttpUrlClientError",
    "Response",
    "ServerDisconnectedError",
    "WebhookHttpClient",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpClientError(Exception):
    """Any failure of a request other than the guard's refusal and the timeout."""


class InvalidUrlClientError(HttpClientError, ValueError):
    """Not a URL a request can go to: no host, or a host in a form that is not allowed."""


class NonHttpUrlClientError(InvalidUrlClientError):
    """A scheme other than http and https."""


class ClientConnectorError(HttpClientError, OSError):
    """No connection could be made: the name did not resolve, or every address refused."""


class ClientSSLError(ClientConnectorError):
    """The TLS handshake failed."""


class ClientConnectorCertificateError(ClientSSLError):
    """The receiver's certificate was not valid for its name."""


class ServerDisconnectedError(HttpClientError):
    """The receiver closed the connection before its answer was complete."""


class ClientPayloadError(HttpClientError):
    """The answer's body ended before the length its headers announced."""


class ClientResponseError(HttpClientError):
    """The answer was not HTTP/1.x."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    retry_after: str | None  # the Retry-After header, as sent
    body: bytes  # at most the client's max_body bytes of it


_Key = tuple[str, str, int]  # scheme, host as written in the URL, port


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, and the parse of the answer to its one request in flight."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._retry_after: str | None = None
        self._body = bytearray()
        self._headers_done = False
        self._framed = False  # the body's end is known (a length, chunks, or no body at all)
        self.reusable = False  # the last answer was read to its end on a connection kept alive
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._framed:
            self._finish()  # a body that runs until the connection closes has ended
        elif self._headers_done:
            waiter.set_exception(ClientPayloadError("the answer's body ended early"))
        else:
            waiter.set_exception(ServerDisconnectedError("the receiver closed the connection without an answer"))

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # nothing was asked: a connection that talks out of turn is not reused
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not waiter.done():
                waiter.set_exception(ClientResponseError(f"not an HTTP/1.x answer: {exc.__class__.__name__}"))
            self.close()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif lowered in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        if self._status < 200 or self._status in (204, 304):
            self._framed = True

    def on_body(self, body: bytes) -> None:
        room = self._max_body - len(self._body)
        if len(body) <= room:
            self._body += body
            return
        self._body += body[:room]
        self._finish()  # enough read: the rest is not wanted, and this connection goes
        self.close()

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._begin_answer()
            return
        self.reusable = self._parser.should_keep_alive()
        self._finish()

    # -- the request ---------------------------------------------------------------------------

    def _begin_answer(self) -> None:
        self._status = 0
        self._retry_after = None
        self._body = bytearray()
        self._headers_done = False
        self._framed = False

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status=self._status, retry_after=self._retry_after, body=bytes(self._body)))

    async def exchange(self, request: bytes) -> Response:
        """Send ``request`` and wait for the answer's status, headers and up to ``max_body`` of its body."""
        assert self._transport is not None
        self._begin_answer()
        self.reusable = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self._transport is not None:
            self._transport.close()


class WebhookHttpClient:
    """POSTs to public receivers over kept-alive HTTP/1.1 connections.

    ``timeout`` bounds each request as a whole: waiting for a slot, connecting, sending and reading.
    ``limit`` caps the requests in flight (each holds one connection) and the idle connections kept;
    an idle connection is closed after ``idle_seconds``. Resolved and vetted addresses are kept for
    ``dns_seconds``. ``resolver`` is what the guard asks (tests give a fake one).
    """

    def __init__(
        self,
        allowlist: list[Network],
        *,
        timeout: float,
        limit: int = 100,
        max_body: int = 4096,
        idle_seconds: float = 15.0,
        dns_seconds: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.timeout = timeout
        self._allowlist = allowlist
        self._resolver = GuardedResolver(allowlist, inner=resolver)
        self._slots = asyncio.Semaphore(limit)
        self._max_idle = limit
        self._max_body = max_body
        self._idle_seconds = idle_seconds
        self._dns_seconds = dns_seconds
        self._ssl = ssl_context or ssl.create_default_context()
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._idle_count = 0
        self._addresses: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self._swept = time.monotonic()
        self._closed = False

    async def post(self, url: URL, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to ``url``; the answer once its headers and up to ``max_body`` of its body
        are in. Raises TimeoutError after ``timeout``."""
        key = _key(url)
        request = _request_bytes(url, key, body, headers)
        async with asyncio.timeout(self.timeout), self._slots:
            connection = self._take_idle(key) or await self._connect(key)
            try:
                response = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
            self._put_idle(key, connection)
            return response

    async def close(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0
        await self._resolver.close()

    # -- connections ---------------------------------------------------------------------------

    def _take_idle(self, key: _Key) -> _Connection | None:
        connections = self._idle.get(key)
        now = time.monotonic()
        while connections:
            connection = connections.pop()  # the most recently used: the likeliest to be alive
            self._idle_count -= 1
            if not self._spent(connection, now):
                return connection
            connection.close()
        return None

    def _spent(self, connection: _Connection, now: float) -> bool:
        """Closed by the receiver, or idle long enough that it may be about to be."""
        return connection.closed or now - connection.idle_since >= self._idle_seconds

    def _put_idle(self, key: _Key, connection: _Connection) -> None:
        if not connection.reusable or connection.closed or self._closed:
            connection.close()
            return
        now = time.monotonic()
        if now - self._swept > 1.0:
            self._sweep(now)
        if self._idle_count >= self._max_idle:
            connection.close()
            return
        connection.idle_since = now
        self._idle.setdefault(key, deque()).append(connection)
        self._idle_count += 1

    def _sweep(self, now: float) -> None:
        """Close the connections idle too long (a receiver never called again keeps none open)."""
        self._swept = now
        for key, connections in list(self._idle.items()):
            alive: deque[_Connection] = deque()
            for connection in connections:
                if self._spent(connection, now):
                    connection.close()
                    self._idle_count -= 1
                else:
                    alive.append(connection)
            if alive:
                self._idle[key] = alive
            else:
                del self._idle[key]

    async def _connect(self, key: _Key) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._ssl if scheme == "https" else None
        failure: OSError | None = None
        for address, family in await self._vetted_addresses(host, port):
            connection = _Connection(self._max_body)
            try:
                await loop.create_connection(
                    lambda connection=connection: connection,
                    host=address,
                    port=port,
                    family=family,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
            except ssl.SSLCertVerificationError as exc:
                raise ClientConnectorCertificateError(f"{host}:{port}: {exc.verify_message}") from exc
            except ssl.SSLError as exc:
                raise ClientSSLError(f"{host}:{port}: {exc.reason or exc.__class__.__name__}") from exc
            except OSError as exc:
                failure = exc
                continue
            return connection
        reason = (failure.strerror or failure.__class__.__name__) if failure is not None else "no address"
        raise ClientConnectorError(f"cannot connect to {host}:{port}: {reason}") from failure

    async def _vetted_addresses(self, host: str, port: int) -> list[tuple[str, int]]:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            refusal = refusal_for_host(host, self._allowlist)
            if refusal is not None:
                raise EgressRefusedError(refusal)
            return [(host, socket.AF_INET6 if literal.version == 6 else socket.AF_INET)]
        if host.replace(".", "").isdigit():
            # 2130706434, 127.1: not an address as written, but the system resolver makes one of it.
            raise InvalidUrlClientError(f"{host} is not a canonical IPv4 address")
        now = time.monotonic()
        known = self._addresses.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        try:
            results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except EgressRefusedError:
            raise
        except OSError as exc:
            raise ClientConnectorError(f"cannot resolve {host}: {exc.strerror or exc.__class__.__name__}") from exc
        addresses = [(r["host"], r["family"]) for r in results]
        if len(self._addresses) >= 4096:
            self._addresses.clear()
        self._addresses[(host, port)] = (now + self._dns_seconds, addresses)
        return addresses


def _key(url: URL) -> _Key:
    scheme = url.scheme
    if scheme not in _DEFAULT_PORTS:
        raise NonHttpUrlClientError(f"{scheme or 'no'} scheme: only http and https are sent to")
    host = url.raw_host
    if not host:
        raise InvalidUrlClientError("the URL has no host")
    return scheme, host, url.port or _DEFAULT_PORTS[scheme]


def _request_bytes(url: URL, key: _Key, body: bytes, headers: Mapping[str, str]) -> bytes:
    scheme, host, port = key
    target = url.raw_path_qs or "/"
    authority = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        authority = f"{authority}:{port}"
    lines = [f"POST {target} HTTP/1.1", f"Host: {authority}"]
    if url.raw_user is not None:  # credentials in the URL are sent as Basic auth, as browsers and aiohttp do
        credentials = f"{url.user or ''}:{url.password or ''}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(credentials).decode('ascii')}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines)
    # Every line break must be one of ours: a CR or LF in a value would start a header of its own.
    if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1 or "\0" in head or " " in target:
        raise InvalidUrlClientError("a line break, NUL or space in the request line or a header")
    try:
        return f"{head}\r\n\r\n".encode("latin-1") + body
    except UnicodeEncodeError as exc:
        raise InvalidUrlClientError("a header that is not Latin-1 text") from exc
