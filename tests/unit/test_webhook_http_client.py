"""The dispatcher's HTTP/1.1 client against real sockets on 127.0.0.1: what it sends, how it reads
every way an answer can be framed, when it keeps a connection and when it drops it, the egress
guard, TLS, and every failure it names. A scripted server answers each request with raw bytes.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import uvloop
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from keyway_shared.egress import EgressRefusedError, Network
from webhook_dispatcher.http1 import (
    ClientConnectorCertificateError,
    ClientConnectorError,
    ClientPayloadError,
    ClientResponseError,
    InvalidUrlClientError,
    NonHttpUrlClientError,
    Response,
    ServerDisconnectedError,
    WebhookHttpClient,
)

from ..support.certificates import self_signed
from ..support.raw_http import read_request

LOOPBACK: list[Network] = [ipaddress.ip_network("127.0.0.1/32")]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Script = Callable[[int], bytes | None]  # request number (from 0) -> raw answer; None: close without one


@dataclass
class ScriptedServer:
    script: Script
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)  # each request's head and body, as received
    hold: asyncio.Event = field(default_factory=asyncio.Event)  # set: answers go out; clear: they wait
    close_after_answer: bool = False  # as a receiver whose keep-alive timeout is zero

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request = await read_request(reader)
                number = len(self.requests)
                self.requests.append(request)
                await self.hold.wait()
                answer = self.script(number)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer or b"Connection: close" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> URL:
        return URL(f"http://127.0.0.1:{self.port}/hooks/in?x=1")


@asynccontextmanager
async def scripted(script: Script, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(script)
    server.hold.set()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


@asynccontextmanager
async def client(**kwargs: object) -> AsyncIterator[WebhookHttpClient]:
    values: dict[str, object] = {"timeout": 5.0, "limit": 10, "max_body": 64} | kwargs
    the_client = WebhookHttpClient(LOOPBACK, **values)  # type: ignore[arg-type]
    try:
        yield the_client
    finally:
        await the_client.close()


async def post(the_client: WebhookHttpClient, url: URL, body: bytes = b'{"a":1}') -> Response:
    return await the_client.post(url, body=body, headers={"Content-Type": "application/json", "X-Sig": "abc"})


# -- what goes out ---------------------------------------------------------------------------------


async def test_the_request_is_a_post_with_host_length_and_the_given_headers() -> None:
    async with scripted(lambda _: OK) as server, client() as c:
        response = await post(c, server.url)
    assert (response.status, response.body, response.retry_after) == (200, b"ok", None)
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hooks/in?x=1 HTTP/1.1"
    assert set(lines[1:]) == {
        f"Host: 127.0.0.1:{server.port}".encode(),
        b"Content-Type: application/json",
        b"X-Sig: abc",
        b"Content-Length: 7",
    }
    assert body == b'{"a":1}'


async def test_credentials_in_the_url_go_as_basic_auth_and_not_in_the_request_line() -> None:
    async with scripted(lambda _: OK) as server, client() as c:
        await post(c, URL(f"http://hook%40user:s%3Acret@127.0.0.1:{server.port}/in"))
    head = server.requests[0].split(b"\r\n\r\n")[0].decode()
    assert head.startswith("POST /in HTTP/1.1\r\n")
    assert f"Authorization: Basic {base64.b64encode(b'hook@user:s:cret').decode()}" in head.split("\r\n")


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b"])
async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(value: str) -> None:
    async with scripted(lambda _: OK) as server, client() as c:
        with pytest.raises(InvalidUrlClientError):
            await c.post(server.url, body=b"{}", headers={"X-Sig": value})
    assert server.connections == 0


# -- reading the answer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "body", "connections"),
    [
        pytest.param(
            b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
            1,
            id="chunked: read whole, kept",
        ),
        pytest.param(
            b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\nall of it",
            b"all of it",
            2,
            id="no length: read until the receiver closes, not reused",
        ),
        pytest.param(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 64\r\n\r\n" + b"y" * 64,
            b"y" * 64,
            1,
            id="exactly max_body: kept",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
            b"ok",
            1,
            id="interim answers skipped",
        ),
        pytest.param(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", b"", 1, id="empty body: kept"),
        pytest.param(b"HTTP/1.0 202 Accepted\r\nContent-Length: 2\r\n\r\nok", b"ok", 2, id="HTTP/1.0: not kept"),
    ],
)
async def test_how_an_answer_is_framed_decides_what_is_read_and_whether_its_connection_is_kept(
    answer: bytes, body: bytes, connections: int
) -> None:
    async with scripted(lambda _: answer) as server, client(max_body=64) as c:
        first = await post(c, server.url)
        second = await post(c, server.url)
    assert [(r.status, r.body) for r in (first, second)] == [(202, body)] * 2
    assert server.connections == connections


async def test_a_204_has_no_body_and_keeps_its_connection() -> None:
    async with scripted(lambda _: b"HTTP/1.1 204 No Content\r\n\r\n") as server, client() as c:
        statuses = [(await post(c, server.url)).status for _ in range(2)]
    assert statuses == [204, 204]
    assert server.connections == 1


async def test_only_max_body_bytes_are_read_and_that_connection_is_dropped() -> None:
    big = b"x" * 1000
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 1000\r\nRetry-After: 120\r\n\r\n" + big
    async with scripted(lambda _: answer) as server, client(max_body=64) as c:
        response = await post(c, server.url)
        await post(c, server.url)
    assert (response.status, response.body, response.retry_after) == (500, big[:64], "120")
    assert server.connections == 2


# -- failures --------------------------------------------------------------------------------------


async def test_a_close_without_an_answer_is_server_disconnected() -> None:
    async with scripted(lambda _: None) as server, client() as c:
        with pytest.raises(ServerDisconnectedError):
            await post(c, server.url)


async def test_a_body_shorter_than_announced_is_a_payload_error() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc"
    async with scripted(lambda _: answer) as server, client() as c:
        with pytest.raises(ClientPayloadError):
            await post(c, server.url)


async def test_an_answer_that_is_not_http_is_a_response_error() -> None:
    async with scripted(lambda _: b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as server, client() as c:
        with pytest.raises(ClientResponseError):
            await post(c, server.url)


async def test_a_refused_connection_is_a_connector_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client() as c:
        with pytest.raises(ClientConnectorError, match=f"127.0.0.1:{port}"):
            await post(c, URL(f"http://127.0.0.1:{port}/"))


async def test_a_slow_receiver_times_out_and_its_connection_is_not_reused() -> None:
    async with scripted(lambda _: OK) as server, client(timeout=0.3) as c:
        server.hold.clear()
        with pytest.raises(TimeoutError):
            await post(c, server.url)
        server.hold.set()
        response = await post(c, server.url)
    assert response.status == 200
    assert server.connections == 2  # the timed-out connection's late answer is never read as this one


async def test_a_connection_the_receiver_closed_while_idle_is_not_used() -> None:
    async with scripted(lambda _: OK) as server, client() as c:
        server.close_after_answer = True  # it said nothing of closing, and closes once idle
        await post(c, server.url)
        await asyncio.sleep(0.1)  # the close reaches the client while the connection sits idle
        response = await post(c, server.url)
    assert response.status == 200
    assert server.connections == 2


async def test_a_connection_idle_past_idle_seconds_is_closed_not_reused() -> None:
    async with scripted(lambda _: OK) as server, client(idle_seconds=0.05) as c:
        await post(c, server.url)
        await asyncio.sleep(0.1)
        await post(c, server.url)
    assert server.connections == 2


async def test_limit_caps_the_requests_in_flight() -> None:
    async with scripted(lambda _: OK) as server, client(limit=2) as c:
        server.hold.clear()
        posts = [asyncio.create_task(post(c, server.url)) for _ in range(5)]
        await asyncio.sleep(0.2)
        in_flight = len(server.requests)
        server.hold.set()
        await asyncio.gather(*posts)
    assert in_flight == 2
    assert server.connections == 2


# -- the egress guard ------------------------------------------------------------------------------


class FakeResolver(AbstractResolver):
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        address = self.answers[host]
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def test_a_literal_private_address_is_refused_without_connecting() -> None:
    async with scripted(lambda _: OK) as server, client() as c:
        for host in ("127.0.0.2", "[::1]", "[::ffff:127.0.0.2]", "10.0.0.1", "169.254.169.254"):
            with pytest.raises(EgressRefusedError):
                await post(c, URL(f"http://{host}:{server.port}/"))
    assert server.connections == 0


@pytest.mark.parametrize("host", ["2130706434", "127.1", "0177.0.0.1"])
async def test_a_legacy_numeric_host_is_an_invalid_url(host: str) -> None:
    async with client() as c:
        with pytest.raises(InvalidUrlClientError, match="canonical"):
            await post(c, URL(f"http://{host}:80/"))


async def test_a_name_is_connected_to_only_at_an_allowed_address_and_resolved_once() -> None:
    resolver = FakeResolver({"hooks.example": "127.0.0.1", "inside.example": "10.1.2.3"})
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    async with scripted(lambda _: closing) as server, client(resolver=resolver) as c:
        for _ in range(3):
            assert (await post(c, URL(f"http://hooks.example:{server.port}/"))).status == 200
        with pytest.raises(EgressRefusedError):
            await post(c, URL(f"http://inside.example:{server.port}/"))
        with pytest.raises(ClientConnectorError, match=r"cannot resolve nowhere\.example"):
            await post(c, URL(f"http://nowhere.example:{server.port}/"))
    assert server.connections == 3
    assert resolver.asked.count("hooks.example") == 1
    assert b"Host: hooks.example:" in server.requests[0]


@pytest.mark.parametrize(
    ("url", "error"),
    [("ftp://127.0.0.1/x", NonHttpUrlClientError), ("http:///no-host", InvalidUrlClientError)],
)
async def test_urls_that_are_not_http_targets_are_refused(url: str, error: type[Exception]) -> None:
    async with client() as c:
        with pytest.raises(error):
            await post(c, URL(url))


# -- TLS -------------------------------------------------------------------------------------------


async def test_https_checks_the_certificate_against_the_name() -> None:
    server_tls, pem = self_signed(names=["hooks.example"])
    trusting = ssl.create_default_context(cadata=pem.decode())
    resolver = FakeResolver({"hooks.example": "127.0.0.1", "other.example": "127.0.0.1"})
    async with scripted(lambda _: OK, tls=server_tls) as server:
        async with client(resolver=resolver, ssl_context=trusting) as c:
            first = await post(c, URL(f"https://hooks.example:{server.port}/in"))
            second = await post(c, URL(f"https://hooks.example:{server.port}/in"))
            with pytest.raises(ClientConnectorCertificateError):
                await post(c, URL(f"https://other.example:{server.port}/in"))  # not the certificate's name
        async with client(resolver=resolver) as default_trust:
            with pytest.raises(ClientConnectorCertificateError):
                await post(default_trust, URL(f"https://hooks.example:{server.port}/in"))  # not a known CA
    assert (first.status, second.status) == (200, 200)
    assert server.requests[0].startswith(b"POST /in HTTP/1.1\r\n")


# -- under uvloop, as the services run -------------------------------------------------------------


def test_under_uvloop_a_connection_is_made_and_kept() -> None:
    async def scenario() -> tuple[int, int, int]:
        async with scripted(lambda _: OK) as server, client() as c:
            first = await post(c, server.url)
            second = await post(c, server.url)
            return first.status, second.status, server.connections

    with ThreadPoolExecutor(1) as pool:  # a thread of its own: uvloop.run must not replace the test's loop
        assert pool.submit(uvloop.run, scenario()).result(timeout=60) == (200, 200, 1)
