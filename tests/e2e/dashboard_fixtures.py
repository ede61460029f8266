"""What the dashboard's browser tests share: Chromium, the OAuth 2 provider on 127.0.0.1, a gateway
with the dashboard on (and the activity-log service beside it), and ``Visits``, which checks every
page for console errors and unlabelled inputs and screenshots it under ``test-output/dashboard/``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from activity_log.app import create_app as create_activity_log
from activity_log.settings import ActivityLogSettings
from auth_gateway.dashboard.passwords import hash_password

from ..integration.gateway_app import Gateway, StartGateway, providers_yaml
from ..support.inproc import running
from ..support.oauth_provider import OAuthProvider

__all__ = [
    "ADMIN",
    "PASSWORD",
    "PASSWORD_HASH",
    "Visits",
    "gw",
    "is_true",
    "new_context",
    "shots",
    "sign_in",
    "tab_to",
]

ADMIN, PASSWORD = "admin", "a long dashboard password"
PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture
async def gw(
    provider: OAuthProvider,
    tmp_path: Path,
    start_gateway: StartGateway,
    service_settings: dict[str, Any],
    encryption_key: str,
) -> AsyncIterator[Gateway]:
    template = provider.template(display_name="Local Test OAuth", docs=f"{provider.base}/docs")
    api_key_template = {
        "display_name": "Local API key service",
        "auth_mode": "API_KEY",
        "proxy": {"base_url": provider.base, "headers": {"authorization": "Bearer ${apiKey}"}},
        "connection_config": {"region": {"type": "string", "title": "Region", "example": "eu"}},
    }
    cc_template = {
        "display_name": "Local machine-to-machine",
        "auth_mode": "OAUTH2_CC",
        "token_url": f"{provider.base}/token",
    }
    catalog = {"local-test-oauth": template, "local-api-key": api_key_template, "local-cc": cc_template}
    activity_settings = ActivityLogSettings(**service_settings, encryption_key=encryption_key, batch_delay_ms=20)
    async with (
        running(create_activity_log(activity_settings)),
        start_gateway(
            providers_file=providers_yaml(tmp_path, catalog),
            egress_allowlist="127.0.0.0/8",
            provider_timeout_seconds=2.0,
            admin_user=ADMIN,
            admin_password_hash=PASSWORD_HASH,
        ) as gateway,
    ):
        yield gateway


async def is_true(value: bool) -> bool:
    return value


class Visits:
    """Every page a test opens: console errors and page errors collected, a screenshot each, labels checked."""

    def __init__(self, page: Page, output: Path, prefix: str) -> None:
        self.page = page
        self.output = output
        self.prefix = prefix
        self.errors: list[str] = []
        self.count = 0
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def expect_failed_loads(self, *statuses: str) -> None:
        """Refusals the test provoked: the browser logs each non-2xx answer as a failed load."""
        found = [re.search(r"Failed to load resource: .* status of (\d+)", e) for e in self.errors]
        assert [m.group(1) if m else None for m in found] == list(statuses), self.errors
        self.errors.clear()

    async def check(self, name: str) -> None:
        await self.page.wait_for_load_state("load")
        self.count += 1
        await self.page.screenshot(path=str(self.output / f"{self.prefix}-{self.count:02d}-{name}.png"), full_page=True)
        unlabelled = await self.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter((el) => el.type !== 'hidden')
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                                && !el.getAttribute('aria-labelledby'))
                .map((el) => el.outerHTML)"""
        )
        assert unlabelled == [], f"inputs without a label on {name}: {unlabelled}"
        assert self.errors == [], f"errors on {name}: {self.errors}"


@pytest.fixture
def shots(output_dir: Path) -> Path:
    path = output_dir / "dashboard"
    path.mkdir(exist_ok=True)
    return path


async def sign_in(page: Page, gw: Gateway, *, password: str = PASSWORD) -> None:
    await page.goto(f"{gw.url}/dashboard/signin")
    await page.fill("#username", ADMIN)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state("load")


async def tab_to(page: Page, element_id: str, *, presses: int = 60) -> None:
    """Press Tab until the element has the focus, as a keyboard user would."""
    for _ in range(presses):
        if await page.evaluate("document.activeElement ? document.activeElement.id : ''") == element_id:
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


async def new_context(browser: Browser) -> BrowserContext:
    return await browser.new_context(viewport={"width": 1280, "height": 900})
