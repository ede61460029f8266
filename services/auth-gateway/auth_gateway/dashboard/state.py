"""The dashboard's state: its stores and templates, opened in one cleanup context and kept under one AppKey.

(The gateway's own resources, which the dashboard reads too, are ``auth_gateway/resources.py``.)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from keyway_shared.service import CIPHER, MONGO_DB
from keyway_shared.store import WebhookKeyStore

from ..settings import GatewaySettings
from .passwords import verify_password
from .render import template_environment
from .sessions import LockoutStore, SessionStore

if TYPE_CHECKING:
    import jinja2

__all__ = ["DASHBOARD", "Dashboard", "dashboard_context"]


@dataclass(frozen=True, kw_only=True)
class Dashboard:
    sessions: SessionStore
    lockouts: LockoutStore
    webhook_keys: WebhookKeyStore

    @functools.cached_property
    def templates(self) -> jinja2.Environment:
        """Built at start when the dashboard is on; otherwise (Jinja2 unloaded, a few MB less per
        replica) at its first page, the one saying it is off."""
        return template_environment()


DASHBOARD = web.AppKey("dashboard", Dashboard)


def dashboard_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if settings.dashboard_enabled and settings.admin_password_hash is not None:
            # A hash we cannot read fails the start, not the first sign-in (PasswordHashError).
            await asyncio.to_thread(verify_password, "", settings.admin_password_hash.get_secret_value())
        db = app[MONGO_DB]
        dashboard = Dashboard(
            sessions=SessionStore(db, lifetime=timedelta(hours=settings.dashboard_session_hours)),
            lockouts=LockoutStore(
                db,
                max_failures=settings.dashboard_lockout_failures,
                period=timedelta(minutes=settings.dashboard_lockout_minutes),
            ),
            webhook_keys=WebhookKeyStore(db, app[CIPHER]),
        )
        if settings.dashboard_enabled:
            _ = dashboard.templates
        await dashboard.sessions.ensure_indexes()
        await dashboard.lockouts.ensure_indexes()
        app[DASHBOARD] = dashboard
        yield

    return ctx
