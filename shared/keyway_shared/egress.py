"""Outbound HTTP that cannot be pointed at the inside of the network (SSRF guard).

Every address a request would connect to must be globally routable, unless it is inside the
operator's ``KEYWAY_EGRESS_ALLOWLIST``. Names are vetted in the resolver itself, so the address
checked is the address connected to (no window for a DNS answer to change in between); literal IP
hosts, which aiohttp never resolves, are vetted when the request starts. IPv6 forms that carry an
IPv4 address (mapped, translated, compatible, 6to4, NAT64 well-known and local-use) are judged by
the address they embed; deprecated site-local addresses, which Python calls global, are refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = [
    "EgressRefusedError",
    "GuardedResolver",
    "Network",
    "failure_reason",
    "guarded_session",
    "is_allowed",
    "refusal_for_host",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible (:: and ::1 live here too)


class EgressRefusedError(aiohttp.ClientConnectionError):
    """The target is private, loopback, link-local or otherwise not public, and not allowlisted.

    Its message is for the log: told to whoever chose the URL (a browser with the public key), "resolves
    to non-public addresses" next to "could not be reached" would tell which internal names exist.
    Callers give one answer ("could not be reached") for every kind of failure and log
    :func:`failure_reason`.
    """


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _NAT64_LOCAL or address in _TRANSLATED or address in _COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_allowed(address: Address, allowlist: Sequence[Network]) -> bool:
    if any(address in network for network in allowlist):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_allowed(embedded, allowlist)
        if address.is_site_local:
            return False
    return address.is_global and not address.is_multicast


def refusal_for_host(host: str, allowlist: Sequence[Network]) -> str | None:
    """Why a literal IP host may not be reached; None when it may (or when it is a name)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if is_allowed(address, allowlist):
        return None
    return f"the address {address} is private, loopback or otherwise not public"


def failure_reason(exc: BaseException) -> str:
    """Why a call failed, for a log line: the guard's refusal or the connector's error (host and port
    only), else the exception's class; never the text of other errors, which may quote a whole URL."""
    if isinstance(exc, EgressRefusedError | aiohttp.ClientConnectorError):
        return f"{exc.__class__.__name__}: {exc}"
    return exc.__class__.__name__


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and keeps only the answers that may be reached: aiohttp connects to
    exactly what this returns, so a name cannot be re-resolved to another address in between."""

    def __init__(self, allowlist: Sequence[Network], *, inner: AbstractResolver | None = None) -> None:
        self._allowlist = list(allowlist)
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if is_allowed(ipaddress.ip_address(r["host"]), self._allowlist)]
        if not allowed:
            raise EgressRefusedError(f"{host} resolves only to addresses that are not public")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(
    allowlist: Sequence[Network],
    *,
    timeout: aiohttp.ClientTimeout | None = None,
    resolver: AbstractResolver | None = None,
    limit: int = 200,
    trace_configs: Sequence[aiohttp.TraceConfig] = (),
    **kwargs: Any,
) -> aiohttp.ClientSession:
    """A client session that refuses non-public targets; redirects are judged hop by hop.

    ``resolver`` is the one the guard asks (tests give a fake one); ``limit`` caps open connections;
    ``trace_configs`` are traced after the guard's own.
    """
    allow = list(allowlist)

    async def vet_literal_host(_session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any) -> None:
        reason = refusal_for_host(params.url.host or "", allow)
        if reason is not None:
            raise EgressRefusedError(reason)

    async def vet_redirect_target(_session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any) -> None:
        # aiohttp reports the URL that was redirected, not where to, and starts no new request for
        # the next hop: judge the Location here (a name there still meets the guarded resolver).
        location = params.response.headers.get("Location") or params.response.headers.get("URI")
        if not location:
            return
        try:
            target = params.url.join(type(params.url)(location))  # a yarl URL, as aiohttp gives
        except ValueError:
            return  # aiohttp refuses it too
        reason = refusal_for_host(target.host or "", allow)
        if reason is not None:
            raise EgressRefusedError(f"redirect refused: {reason}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(vet_literal_host)
    trace.on_request_redirect.append(vet_redirect_target)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow, inner=resolver), limit=limit, ttl_dns_cache=60)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout or aiohttp.ClientTimeout(total=15, connect=5),
        trace_configs=[trace, *trace_configs],
        **kwargs,
    )
