"""Which address a request is counted under: the peer, or behind trusted proxies the first hop they did not add."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from auth_gateway.http.client_address import client_address, client_key
from keyway_shared.settings import parse_cidrs

PROXIES = parse_cidrs("10.0.0.0/8, fd00::/8")


def request(peer: str, *forwarded: str) -> object:
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 443) if name == "peername" else default
    return make_mocked_request("GET", "/", headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.7", ("203.0.113.1",), [], "198.51.100.7"),  # no trusted proxy: the header is ignored
        ("198.51.100.7", ("203.0.113.1",), PROXIES, "198.51.100.7"),  # the peer is no proxy of ours
        ("10.1.2.3", ("203.0.113.1",), PROXIES, "203.0.113.1"),
        ("10.1.2.3", ("192.0.2.66, 203.0.113.1",), PROXIES, "203.0.113.1"),  # the browser's own hop is ignored
        ("10.1.2.3", ("203.0.113.1, 10.9.9.9",), PROXIES, "203.0.113.1"),  # two proxies of ours
        ("10.1.2.3", ("192.0.2.66", "203.0.113.1"), PROXIES, "203.0.113.1"),  # the header twice
        ("10.1.2.3", ("10.4.4.4, 10.9.9.9",), PROXIES, "10.4.4.4"),  # all ours: the farthest
        ("10.1.2.3", ("nonsense, 10.9.9.9",), PROXIES, "10.9.9.9"),  # a hop no proxy wrote
        ("10.1.2.3", (), PROXIES, "10.1.2.3"),
        ("10.1.2.3", ("[2001:db8::5]:443",), PROXIES, "2001:db8::5"),
        ("10.1.2.3", ("203.0.113.1:5555",), PROXIES, "203.0.113.1"),
        ("::ffff:10.1.2.3", ("203.0.113.1",), PROXIES, "203.0.113.1"),  # IPv4-mapped peer
    ],
)
def test_client_address(peer: str, forwarded: tuple[str, ...], trusted: object, expected: str) -> None:
    assert client_address(request(peer, *forwarded), trusted) == expected  # type: ignore[arg-type]


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("203.0.113.1") == "203.0.113.1"
    assert client_key("unknown") == "unknown"
