"""Where a webhook may go: public addresses, plus whatever the egress allowlist names.

A first guard against SSRF: the target's host (an IP literal, or every address its name resolves
to) must be globally routable or inside ``KEYWAY_EGRESS_ALLOWLIST``. Issue 6 hardens it by
connecting to the very address vetted here, so a name cannot resolve differently a moment later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["Network", "refusal"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _allowed(address: Address, allowlist: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    if any(address in network for network in allowlist):
        return True
    return address.is_global


async def refusal(url: str, allowlist: Sequence[Network]) -> str | None:
    """Why ``url`` may not be called, or None when it may."""
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError:
        return "not a valid URL"
    host = parsed.hostname
    if parsed.scheme not in {"http", "https"} or not host:
        return "only http and https URLs with a host are allowed"
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return f"the host {host} does not resolve"
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not _allowed(address, allowlist):
            return f"the address {address} is private, loopback or otherwise not public"
    return None
