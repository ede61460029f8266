"""GitHub App installation tokens (spec §5.9 APP and CUSTOM): the app proves itself with an RS256 JWT
signed by its private key, and GitHub answers with a token for one installation, valid an hour.

Also the two questions a connect flow asks GitHub before minting one, since the ``installation_id``
a browser brings back proves nothing (GitHub's "About the setup URL" warns it can be spoofed): what
GitHub knows of an installation (asked as the app), and whether a user can access it (asked with
the user's token). Both go to the API the installation token URL lives on, so a GitHub Enterprise
host or a test's fake GitHub is reached the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from .errors import PermanentTokenError
from .jwt_signing import sign_jwt
from .shapes import AppCredentials
from .token_http import call_token_endpoint
from .tokens import js_iso, parse_expires_at

__all__ = [
    "GitHubApiUrls",
    "app_installation",
    "app_jwt",
    "find_user_installation",
    "github_api_urls",
    "installation_token",
]

# GitHub refuses a JWT living over 10 minutes and one issued "in the future": backdate a minute for
# clock drift and stay under the limit.
_BACKDATE = timedelta(seconds=60)
_LIFETIME = timedelta(minutes=9)

_TOKEN_PATH = re.compile(r"^(?P<base>.*)/app/installations/(?P<id>[0-9]+)/access_tokens$")
_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "Keyway"}
_PER_PAGE = 100  # GitHub's maximum
_MAX_PAGES = 10  # a user with over a thousand installations of one app is not someone connecting through a popup


def app_jwt(*, app_id: str, private_key: str, now: datetime) -> str:
    claims = {
        "iat": int((now - _BACKDATE).timestamp()),
        "exp": int((now + _LIFETIME).timestamp()),
        "iss": app_id,
    }
    return sign_jwt(private_key=private_key, algorithm="RS256", claims=claims)


async def installation_token(
    session: aiohttp.ClientSession,
    *,
    token_url: str,
    app_id: str,
    private_key: str,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> tuple[AppCredentials, datetime | None]:
    """``{type: "APP", access_token, expires_at, raw}`` for the installation ``token_url`` names."""
    headers = {
        "Authorization": f"Bearer {app_jwt(app_id=app_id, private_key=private_key, now=now)}",
        "Accept": "application/vnd.github.v3+json",
        "User-Agent": "Keyway",
    }
    raw = await call_token_endpoint(session, "POST", token_url, headers=headers, timeout_seconds=timeout_seconds)
    token = raw.get("token")
    if not isinstance(token, str) or not token:
        raise PermanentTokenError("invalid_token_response", "GitHub's answer has no installation token.")
    expires_at = parse_expires_at(raw, now)
    credentials = AppCredentials(
        access_token=token, expires_at=js_iso(expires_at) if expires_at is not None else None, raw=raw
    )
    return credentials, expires_at


@dataclass(frozen=True)
class GitHubApiUrls:
    installation: str  # GET as the app: the installation
    user_installations: str  # GET with a user's token: the app's installations the user can access


def github_api_urls(token_url: str, installation_id: str) -> GitHubApiUrls:
    """The API URLs next to a rendered installation token URL (``<api>/app/installations/<id>/access_tokens``).

    ValueError when the URL has another shape, or names another installation.
    """
    base, _, query = token_url.partition("?")
    match = _TOKEN_PATH.match(base)
    if match is None or query:
        raise ValueError("the installation token URL does not end in /app/installations/<id>/access_tokens")
    if match["id"] != installation_id:
        raise ValueError("the installation token URL names another installation")
    api = match["base"]
    return GitHubApiUrls(
        installation=f"{api}/app/installations/{installation_id}",
        user_installations=f"{api}/user/installations",
    )


async def app_installation(
    session: aiohttp.ClientSession,
    *,
    installation_url: str,
    app_id: str,
    private_key: str,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> dict[str, Any]:
    """GitHub's record of an installation, asked as the app: GitHub answers 404 for another app's."""
    headers = {**_API_HEADERS, "Authorization": f"Bearer {app_jwt(app_id=app_id, private_key=private_key, now=now)}"}
    return await call_token_endpoint(session, "GET", installation_url, headers=headers, timeout_seconds=timeout_seconds)


async def find_user_installation(
    session: aiohttp.ClientSession,
    *,
    user_installations_url: str,
    user_token: str,
    installation_id: str,
    timeout_seconds: float = 15.0,
) -> dict[str, Any] | None:
    """The installation among those of the app the user's token can access (``GET /user/installations``,
    page by page), or None. PermanentTokenError past a thousand installations."""
    headers = {**_API_HEADERS, "Authorization": f"Bearer {user_token}"}
    seen = 0
    for page in range(1, _MAX_PAGES + 1):
        url = f"{user_installations_url}?per_page={_PER_PAGE}&page={page}"
        body = await call_token_endpoint(session, "GET", url, headers=headers, timeout_seconds=timeout_seconds)
        items = body.get("installations")
        if not isinstance(items, list):
            raise PermanentTokenError("invalid_installations_response", "GitHub's answer lists no installations.")
        for item in items:
            if isinstance(item, dict) and str(item.get("id")) == installation_id:
                return item
        seen += len(items)
        total = body.get("total_count")
        if len(items) < _PER_PAGE or (isinstance(total, int) and seen >= total):
            return None
    raise PermanentTokenError(
        "too_many_installations",
        f"The user can access over {_MAX_PAGES * _PER_PAGE} installations of the app; Keyway does not look further.",
    )
