"""Bill's Connect API sessions (``BILL``): a login for a session id, at connect time and again before
the session expires (the token-refresher calls :func:`bill_login` too).

As Nango's ``packages/shared/lib/auth/bill.ts``: ``POST <token_url>`` with the JSON body
``{username, password, organizationId, devKey}``; the answer's ``sessionId`` (and ``userId``) is the
session. Bill ends a session after 35 minutes without a call, and its answer gives no lifetime, so
the session is taken to last 35 minutes from the login and is renewed before then. A refused login
is ``invalid_bill_credentials``; neither the password nor the session is ever in an error.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import aiohttp

from .errors import PermanentTokenError
from .shapes import BillCredentials
from .token_http import call_token_endpoint
from .tokens import js_iso

__all__ = ["SESSION_LIFETIME", "bill_login"]

SESSION_LIFETIME = timedelta(minutes=35)


async def bill_login(
    http: aiohttp.ClientSession,
    *,
    token_url: str,
    username: str,
    password: str,
    organization_id: str,
    dev_key: str,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> tuple[BillCredentials, datetime]:
    """A new session, as the connection's credentials (the login kept to sign in again), and its end."""
    body = {"username": username, "password": password, "organizationId": organization_id, "devKey": dev_key}
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    try:
        raw = await call_token_endpoint(
            http, "POST", token_url, headers=headers, data=json.dumps(body), timeout_seconds=timeout_seconds
        )
    except PermanentTokenError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            raise PermanentTokenError(
                "invalid_bill_credentials", f"Bill refused the login ({exc.status}).", status=exc.status
            ) from None
        raise
    session_id = raw.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise PermanentTokenError("incomplete_raw_credentials", "Bill's login answer has no sessionId.")
    expires_at = now + SESSION_LIFETIME
    user_id = raw.get("userId")
    credentials = BillCredentials(
        username=username,
        password=password,
        organization_id=str(raw.get("organizationId") or organization_id),
        dev_key=dev_key,
        raw=raw,
        session_id=session_id,
        user_id=user_id if isinstance(user_id, str) else None,
        expires_at=js_iso(expires_at),
    )
    return credentials, expires_at
