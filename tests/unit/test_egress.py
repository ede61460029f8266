"""The SSRF guard: which addresses are refused (IPv4, and every IPv6 form that hides one), and that
the address connected to is the address the resolver vetted, with a real server on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from keyway_shared.egress import EgressRefusedError, guarded_session, is_allowed, refusal_for_host

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",  # link-local
    "fe80::1%eth0",  # with a zone
    "fc00::1",  # unique local
    "fd12:3456::1",
    "fec0::1",  # deprecated site-local, which Python calls global
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
    "::127.0.0.1",  # deprecated IPv4-compatible
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
]
ALLOWED = [
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_and_hidden_forms_are_refused(address: str) -> None:
    assert not is_allowed(ipaddress.ip_address(address), [])
    assert refusal_for_host(f"[{address}]" if ":" in address else address, []) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert is_allowed(ipaddress.ip_address(address), [])


def test_the_allowlist_opens_a_range_also_through_its_ipv6_forms() -> None:
    loopback = [ipaddress.ip_network("127.0.0.1/32")]
    assert is_allowed(ipaddress.ip_address("127.0.0.1"), loopback)
    assert is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), loopback)
    assert not is_allowed(ipaddress.ip_address("127.0.0.2"), loopback)
    assert not is_allowed(ipaddress.ip_address("::1"), loopback)
    assert refusal_for_host("hooks.example", []) is None  # names are judged by the resolver


class ScriptedResolver(AbstractResolver):
    """Answers from a list per call: the first lookup gets the first answer, and so on (DNS rebinding)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in answer
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[str]]]:
    """A server on 127.0.0.1 only; it records the address each request arrived on."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        seen.append(sockname[0] if sockname else "?")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, seen
    await runner.cleanup()


ALLOW_LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


async def test_the_connection_goes_to_the_vetted_address_only(server: tuple[int, list[str]]) -> None:
    port, seen = server
    # The name resolves to a private address (refused) and to the allowlisted one; a second lookup
    # would rebind it to the private one. The guard vets once, and aiohttp connects to what it kept.
    resolver = ScriptedResolver(["10.0.0.5", "127.0.0.1"], ["10.0.0.5"])
    async with guarded_session(ALLOW_LOOPBACK, resolver=resolver) as session:
        for _ in range(3):
            async with session.post(f"http://hooks.example:{port}/hook", data=b"{}") as resp:
                assert resp.status == 200
    assert seen == ["127.0.0.1"] * 3
    assert resolver.calls == 1  # later requests reuse the vetted answer (or its connection)


async def test_a_name_resolving_only_to_refused_addresses_is_not_connected(server: tuple[int, list[str]]) -> None:
    port, seen = server
    resolver = ScriptedResolver(["10.0.0.5", "::1", "169.254.169.254"])
    async with guarded_session(ALLOW_LOOPBACK, resolver=resolver) as session:
        with pytest.raises(EgressRefusedError, match="not public"):
            await session.post(f"http://hooks.example:{port}/hook", data=b"{}")
    assert seen == []


async def test_literal_addresses_are_vetted_before_connecting(server: tuple[int, list[str]]) -> None:
    port, seen = server
    async with guarded_session([]) as session:
        for host in ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"):
            with pytest.raises(EgressRefusedError):
                await session.post(f"http://{host}:{port}/hook", data=b"{}")
    assert seen == []


async def test_a_redirect_to_a_private_address_is_refused_hop_by_hop(server: tuple[int, list[str]]) -> None:
    port, seen = server

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{port}/hook")

    app = web.Application()
    app.router.add_get("/", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    other = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with guarded_session([ipaddress.ip_network("127.0.0.2/32")]) as session:
            with pytest.raises(aiohttp.ClientError):
                await session.get(f"http://127.0.0.2:{other}/")
    finally:
        await runner.cleanup()
    assert seen == []
