"""The provider APIs post-connection enrichment asks, on 127.0.0.1, answering as each provider
documents the call (shapes from the providers' reference pages, trimmed to what matters):

- Atlassian ``GET /oauth/token/accessible-resources``, Jira ``/ex/jira/{id}/rest/api/3/myself``,
  Confluence ``/ex/confluence/{id}/wiki/rest/api/user/current``
- Xero ``GET /connections``; HubSpot ``GET /account-info/v3/details``; Mailchimp ``GET /oauth2/metadata``
- DocuSign ``GET /oauth/userinfo``; Linear ``POST /graphql``; Attio ``GET /v2/self``
- Calendly ``GET /users/me``; Gusto ``GET /v1/token_info``; Basecamp ``GET /authorization.json``;
  Workable ``GET /spi/v3/accounts``

Every call must carry ``Authorization: Bearer <token>`` with a token :attr:`accepts` takes; a path
can be made to fail (:attr:`failures`: a status, ``hang`` or ``huge``), and :attr:`requests` keeps
what was asked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .procs import free_port

__all__ = ["ProviderApis", "jwt_with", "with_origins"]


def jwt_with(claims: dict[str, Any]) -> str:
    """An access token that is a JWT with these claims (unsigned: enrichment only reads it)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


_ORIGIN = re.compile(r"https://[A-Za-z0-9.${}_-]+")


def with_origins(entry: Any, base: str) -> Any:
    """A catalog entry with every https origin in it (proxy, base_url_override, …) replaced by ``base``."""
    if isinstance(entry, str):
        return _ORIGIN.sub(base, entry)
    if isinstance(entry, dict):
        return {key: with_origins(value, base) for key, value in entry.items()}
    if isinstance(entry, list):
        return [with_origins(value, base) for value in entry]
    return entry


@dataclass
class ProviderApis:
    accepts: Callable[[str], bool] = field(default=lambda token: bool(token))
    port: int = field(default_factory=free_port)
    sites: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "id": "1324a887-45db-1bf4-1e99-ef0ff456d421",
                "name": "Site name",
                "url": "https://your-domain.atlassian.net",
                "scopes": ["write:jira-work", "read:jira-user", "manage:jira-configuration"],
                "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/flag.png",
            }
        ]
    )
    tenants: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "id": "e1eede29-f875-4a5d-8470-17f6a29a88b1",
                "authEventId": "d99ecdfe-391d-43d2-b834-17636ba90e8d",
                "tenantId": "70784a63-d24b-46a9-a4db-0e70a274b056",
                "tenantType": "ORGANISATION",
                "tenantName": "Maple Florists",
                "createdDateUtc": "2019-07-09T23:40:30.1833130",
                "updatedDateUtc": "2020-05-15T01:35:13.8491980",
            }
        ]
    )
    failures: dict[str, str] = field(default_factory=dict)  # path -> "500" | "hang" | "huge"
    requests: list[dict[str, Any]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ProviderApis:
        app = web.Application(middlewares=[self._guard])
        routes = {
            "/oauth/token/accessible-resources": lambda _r: self.sites,
            "/ex/jira/{site}/rest/api/3/myself": self._jira_myself,
            "/ex/confluence/{site}/wiki/rest/api/user/current": self._confluence_user,
            "/connections": lambda _r: self.tenants,
            "/account-info/v3/details": lambda _r: {
                "portalId": 62515,
                "timeZone": "US/Eastern",
                "companyCurrency": "USD",
                "accountType": "STANDARD",
                "dataHostingLocation": "na1",
                "uiDomain": "app.hubspot.com",
            },
            "/oauth2/metadata": lambda _r: {
                "dc": "us6",
                "role": "owner",
                "accountname": "Freddie's Jokes",
                "user_id": 42,
                "login": {"email": "freddie@example.com", "login_id": 42, "login_name": "freddie"},
                "login_url": "https://login.mailchimp.com",
                "api_endpoint": "https://us6.api.mailchimp.com",
            },
            "/oauth/userinfo": lambda _r: {
                "sub": "4799e5e9-1559-4915-9862-cf4713bbcacc",
                "name": "Susan Smart",
                "email": "susan.smart@example.com",
                "accounts": [
                    {
                        "account_id": "a4ec37d6-xxxx-xxxx-xxxx-9d5e9e0d3b52",
                        "is_default": False,
                        "account_name": "Other Corp",
                        "base_uri": "https://eu.docusign.net",
                    },
                    {
                        "account_id": "18b4799a-xxxx-xxxx-xxxx-b5b4b8a97604",
                        "is_default": True,
                        "account_name": "Susan Corp",
                        "base_uri": "https://demo.docusign.net",
                    },
                ],
            },
            "/v2/self": lambda _r: {
                "active": True,
                "scope": "record_permission:read",
                "client_id": "attio-client",
                "token_type": "Bearer",
                "workspace_id": "14beef7a-99f7-4534-a87e-70b564330a4c",
                "workspace_name": "Acme",
                "workspace_slug": "acme",
            },
            "/users/me": lambda _r: {
                "resource": {
                    "uri": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA",
                    "name": "John Doe",
                    "current_organization": "https://api.calendly.com/organizations/BBBBBBBBBBBBBBBB",
                }
            },
            "/v1/token_info": lambda _r: {
                "scope": "companies:read",
                "resource": {"type": "Company", "uuid": "c1a2b3c4-d5e6-47f8-9a0b-1c2d3e4f5a6b"},
                "resource_owner": {"type": "CompanyAdmin", "uuid": "u9a8b7c6"},
            },
            "/spi/v3/accounts": lambda _r: {
                "accounts": [{"id": "5cd9a5", "name": "Acme Corp", "subdomain": "acme", "description": None}]
            },
            "/authorization.json": lambda _r: {
                "expires_at": "2030-01-01T00:00:00Z",
                "identity": {"id": 9999999, "first_name": "Jason", "email_address": "jason@example.com"},
                "accounts": [
                    {
                        "product": "bc3",
                        "id": 99999999,
                        "name": "Honcho Design",
                        "href": "https://3.basecampapi.com/99999999",
                        "app_href": "https://3.basecamp.com/99999999",
                    }
                ],
            },
        }
        for path, answer in routes.items():
            app.router.add_get(path, self._answering(answer))
        app.router.add_post("/graphql", self._linear)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def asked(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.text()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "authorizations": request.headers.getall("Authorization", []),
                "body": body,
            }
        )
        failure = self.failures.get(request.path)
        if failure == "hang":
            await asyncio.sleep(3600)
        if failure == "huge":
            return web.Response(body=b"[" + b"0," * (2 * 1024 * 1024) + b"0]", content_type="application/json")
        if failure:
            return web.json_response({"status": "error", "message": "failing on purpose"}, status=int(failure))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not self.accepts(token):
            return web.json_response({"code": 401, "message": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def _answering(answer: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def view(request: web.Request) -> web.Response:
            return web.json_response(answer(request))

        return view

    def _jira_myself(self, request: web.Request) -> dict[str, Any]:
        return {"accountId": f"jira-account-of-{request.match_info['site'][:8]}", "displayName": "Mia Krystof"}

    def _confluence_user(self, request: web.Request) -> dict[str, Any]:
        return {"type": "known", "accountId": f"confluence-account-of-{request.match_info['site'][:8]}"}

    async def _linear(self, request: web.Request) -> web.Response:
        query = (await request.json()).get("query", "")
        if "organization" not in query:
            return web.json_response({"errors": [{"message": "Cannot query field"}]}, status=400)
        return web.json_response({"data": {"organization": {"id": "2e0c2b5a-1b4f-4a4c-9d2e-5b0a7f1c3d9e"}}})
