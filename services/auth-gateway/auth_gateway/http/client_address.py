"""Who is asking: the client's address, for the per-client limits on browser routes and the dashboard.

The address is the socket's peer. ``X-Forwarded-For`` is read only when the peer is one of
``KEYWAY_TRUSTED_PROXIES`` (the Ingress controller, a load balancer): then the hops are walked from
the right, past every trusted proxy, and the first address that is not one is the client. A
browser that sends its own ``X-Forwarded-For`` only adds hops further left, which are never
reached, so it cannot choose the address it is counted under. Without trusted proxies the header
is ignored entirely.

IPv6 clients are counted by their /64: one host usually holds a whole /64, and counting each of
its addresses apart would give it 2**64 budgets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from contextvars import ContextVar

from aiohttp import web

__all__ = ["CURRENT_CLIENT", "Networks", "client_address", "client_key"]

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The client of the browser request being served (its ``client_key``), set by the rate-limit
# middleware on public routes, for code that is handed the application rather than the request.
CURRENT_CLIENT: ContextVar[str | None] = ContextVar("keyway_current_client", default=None)


def _parse(text: str) -> IpAddress | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IpAddress, proxies: Networks) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_address(request: web.Request, trusted_proxies: Networks) -> str:
    """The client's IP address as text ("unknown" when the socket has none, e.g. a Unix socket)."""
    peer = _parse(request.remote or "")
    if peer is None:
        return "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return str(peer)
    hops = [hop for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")]
    nearest = peer  # the nearest address known to be a proxy we trust, or the client
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # a hop no proxy of ours wrote: count the request under the proxy that passed it on
        nearest = address
        if not _trusted(address, trusted_proxies):
            break
    return str(nearest)


def client_key(address: str) -> str:
    """The key a client is counted under: its IPv4 address, or its IPv6 /64."""
    parsed = _parse(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address
