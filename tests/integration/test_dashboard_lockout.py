"""Wrong dashboard passwords from anyone must not lock the real admin out (issue 14, item 11).

Performed over HTTP against a real gateway, through the sign-in form with its CSRF cookie: wrong
passwords lock the address they come from, while the admin signs in from another; from many
addresses (a trusted proxy's X-Forwarded-For) they only slow tries at the user name down, one turn
per growing delay, for addresses that have failed themselves. The sign-in store's clock is frozen and
moved by hand.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from auth_gateway.dashboard.passwords import hash_password
from auth_gateway.dashboard.state import DASHBOARD
from keyway_shared.events import utcnow

from .gateway_app import Gateway, StartGateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

ADMIN, PASSWORD = "admin", "the admin's long password"
PASSWORD_HASH = hash_password(PASSWORD)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OTHER_ADDRESS = "127.0.0.2"  # on the loopback interface like 127.0.0.1, so a real second peer


@asynccontextmanager
async def browser_at(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser whose connections come from ``address`` (cookies kept, as for any host)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def form_token(browser: aiohttp.ClientSession, gw: Gateway, headers: dict[str, str]) -> str:
    """The sign-in form's CSRF token (its double-submit cookie stays in the browser)."""
    async with browser.get(f"{gw.url}/dashboard/signin", headers=headers, allow_redirects=False) as form:
        assert form.status == 200
        return CSRF.findall(await form.text())[0]


async def submit(
    browser: aiohttp.ClientSession, gw: Gateway, token: str, password: str, headers: dict[str, str]
) -> tuple[int, str]:
    data = {"username": ADMIN, "password": password, "csrf_token": token}
    async with browser.post(f"{gw.url}/dashboard/signin", data=data, headers=headers, allow_redirects=False) as resp:
        assert resp.status != 403, "CSRF refused"
        if resp.status == 429:  # says how long to wait, in seconds
            return resp.status, f"Retry-After: {resp.headers.get('Retry-After')}\n{await resp.text()}"
        return resp.status, resp.headers.get("Location") or await resp.text()


async def sign_in(
    browser: aiohttp.ClientSession, gw: Gateway, password: str, *, forwarded_for: str | None = None
) -> tuple[int, str]:
    """The form, then its submission: (status, page text or redirect target)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await submit(browser, gw, await form_token(browser, gw, headers), password, headers)


def freeze_signin_clock(gw: Gateway) -> Callable[[timedelta], None]:
    """Freeze the sign-in store's clock; the returned function moves it forward."""
    now: list[datetime] = [utcnow()]
    gw.client.app[DASHBOARD].lockouts.clock = lambda: now[0]

    def advance(by: timedelta) -> None:
        now[0] += by

    return advance


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(
        admin_user=ADMIN, admin_password_hash=PASSWORD_HASH, trusted_proxies="127.0.0.3/32"
    ) as gateway:
        yield gateway


async def test_wrong_passwords_lock_their_address_not_the_admin(gw: Gateway) -> None:
    freeze_signin_clock(gw)
    async with browser_at("127.0.0.1") as attacker:
        statuses = [(await sign_in(attacker, gw, f"guess {n}"))[0] for n in range(5)]
        assert statuses == [401, 401, 401, 401, 429]
        status, text = await sign_in(attacker, gw, PASSWORD)  # locked: even the right password
        assert status == 429
        assert "Too many failed sign-ins. Try again in 15 min." in text
    async with browser_at(OTHER_ADDRESS) as admin:
        status, location = await sign_in(admin, gw, PASSWORD)
        assert status == 303, location
        assert location == "/dashboard/dev/integrations"
        async with admin.get(f"{gw.url}{location}", allow_redirects=False) as page:
            assert page.status == 200  # a real session
    assert text.startswith("Retry-After: 900\n")  # the lockout's length, for fail2ban-style tools


async def admin_signs_in(gw: Gateway, forwarded_for: str) -> bool:
    """The admin's own browser, through the same trusted proxy."""
    async with browser_at("127.0.0.3") as admin:
        status, location = await sign_in(admin, gw, PASSWORD, forwarded_for=forwarded_for)
        return status == 303 and location == "/dashboard/dev/integrations"


async def test_many_addresses_slow_the_name_down_but_never_lock_the_admin_out(gw: Gateway) -> None:
    advance = freeze_signin_clock(gw)
    async with browser_at("127.0.0.3") as proxy:  # the trusted proxy, relaying every client below

        async def attempt(client: str, password: str) -> int:
            return (await sign_in(proxy, gw, password, forwarded_for=client))[0]

        # Five addresses, one wrong password each: the name has had five failures.
        assert [await attempt(f"203.0.113.{n}", "guess") for n in range(5)] == [401] * 5
        # An address that has failed now takes turns at the name: one check, then a wait.
        assert await attempt("203.0.113.0", "guess again") == 401
        assert await attempt("203.0.113.1", "guess again") == 429
        status, text = await sign_in(proxy, gw, "guess again", forwarded_for="203.0.113.2")
        assert status == 429
        assert "for this user name. Try again in 1 s." in text
        assert text.startswith("Retry-After: 1\n")
        # The real admin, from an address without failures, is checked at once and signs in.
        assert await admin_signs_in(gw, "198.51.100.10")
        # The turns grow apart with each failure: 1 s after the sixth, then 2 s after the seventh.
        advance(timedelta(seconds=1))
        assert await attempt("203.0.113.1", "guess") == 401
        assert await attempt("203.0.113.3", "guess") == 429
        advance(timedelta(seconds=1))
        assert await attempt("203.0.113.3", "guess") == 429
        advance(timedelta(seconds=1))
        assert await attempt("203.0.113.3", "guess") == 401
        # A slowed-down try is not counted against its address: 203.0.113.3 failed twice, so it has
        # three checks left, the last of which locks it.
        for expected in (401, 401, 429):
            advance(timedelta(minutes=1))
            assert await attempt("203.0.113.3", "guess") == expected
        advance(timedelta(minutes=1))
        status, text = await sign_in(proxy, gw, PASSWORD, forwarded_for="203.0.113.3")
        assert status == 429
        assert "Too many failed sign-ins. Try again in" in text
        # Meanwhile the admin, from their own address, still gets in at the first try.
        assert await admin_signs_in(gw, "198.51.100.11")


async def test_parallel_guesses_from_one_address_get_no_more_checks(gw: Gateway, db: Any) -> None:
    freeze_signin_clock(gw)
    async with browser_at("127.0.0.1") as attacker:
        token = await form_token(attacker, gw, {})
        answers = await asyncio.gather(*(submit(attacker, gw, token, f"guess {n}", {}) for n in range(12)))
    assert {status for status, _ in answers} <= {401, 429}
    # Every checked password is a failure counted at the user name: no more than the address's five.
    name = await db["dashboard_signin_failures"].find_one({"_id": {"$regex": "^user:"}})
    assert name is not None
    assert 1 <= name["failures"] <= 5
    async with browser_at(OTHER_ADDRESS) as admin:
        status, location = await sign_in(admin, gw, PASSWORD)
        assert status == 303, location
