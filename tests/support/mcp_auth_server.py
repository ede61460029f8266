"""An MCP server and its authorization server on 127.0.0.1, for tests, as strict as the MCP spec's.

- ``/.well-known/oauth-protected-resource/mcp`` (RFC 9728) names the authorization server ``/as``,
  whose metadata (RFC 8414) is at ``/.well-known/oauth-authorization-server/as``;
- ``/as/register`` (RFC 7591) takes JSON client metadata and issues a client (a public one unless
  ``issue_secrets``); a client ID that is an URL is a client ID metadata document, fetched and checked
  (its ``client_id`` is its own URL, the redirect URI is one of its ``redirect_uris``) when
  ``cimd_supported``;
- ``/as/authorize`` and ``/as/token``: PKCE with S256 required, the ``resource`` indicator checked
  against the protected resource's identifier (when ``expected_resource``), the redirect URI the
  client registered, the client's secret when it has one; refresh tokens rotate;
- ``/mcp`` answers a JSON-RPC call only with a current Bearer token issued for the resource.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from .procs import free_port


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class McpAuthServer:
    issue_secrets: bool = False
    cimd_supported: bool = False
    refuse_registration: bool = False
    registration_delay: float = 0.0  # seconds: lets two connects register at once
    expected_resource: bool = True  # the resource indicator must name the MCP server (RFC 8707)
    token_lifetime: int = 3600
    port: int = field(default_factory=free_port)
    clients: dict[str, Client] = field(default_factory=dict)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    metadata_fetches: list[str] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> client id
    access_tokens: dict[str, tuple[float, str]] = field(default_factory=dict)  # token -> (expiry, resource)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    mcp_calls: list[dict[str, Any]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    def template(self, registration: str = "dynamic") -> dict[str, Any]:
        """An MCP_OAUTH2 catalog entry for this server, written as Nango's entries are."""
        entry: dict[str, Any] = {
            "display_name": "Test (MCP)",
            "auth_mode": "MCP_OAUTH2",
            "client_registration": registration,
            "authorization_url": f"{self.base}/as/authorize",
            "token_url": f"{self.base}/as/token",
            "authorization_params": {"response_type": "code", "resource": self.mcp_url},
            "registration_params": {"response_types": ["code"], "grant_types": ["authorization_code", "refresh_token"]},
            "token_params": {"grant_type": "authorization_code"},
            "refresh_params": {"grant_type": "refresh_token"},
            "proxy": {"base_url": self.base, "headers": {"accept": "application/json,text/event-stream"}},
        }
        if registration == "dynamic":
            entry["registration_url"] = f"{self.base}/as/register"
        return entry

    async def start(self) -> McpAuthServer:
        app = web.Application()
        app.router.add_get("/.well-known/oauth-protected-resource/mcp", self._resource_metadata)
        app.router.add_get("/.well-known/oauth-authorization-server/as", self._server_metadata)
        app.router.add_post("/as/register", self._register)
        app.router.add_get("/as/authorize", self._authorize)
        app.router.add_post("/as/token", self._token)
        app.router.add_post("/mcp", self._mcp)
        app.router.add_post("/mcp/", self._mcp)  # a proxy call to the server URL itself (endpoint "/")
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _resource_metadata(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"resource": self.mcp_url, "authorization_servers": [f"{self.base}/as"], "scopes_supported": ["mcp:tools"]}
        )

    async def _server_metadata(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": f"{self.base}/as",
                "authorization_endpoint": f"{self.base}/as/authorize",
                "token_endpoint": f"{self.base}/as/token",
                "registration_endpoint": f"{self.base}/as/register",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "client_id_metadata_document_supported": self.cimd_supported,
            }
        )

    async def _register(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "invalid_client_metadata"}, status=400)
        self.registrations.append(body)
        await asyncio.sleep(self.registration_delay)
        if self.refuse_registration:
            return web.json_response({"error": "invalid_client_metadata"}, status=400)
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            return web.json_response({"error": "invalid_redirect_uri"}, status=400)
        secret = secrets.token_urlsafe(16) if self.issue_secrets else ""
        client = Client(client_id="mcp-" + secrets.token_hex(6), client_secret=secret, redirect_uris=uris)
        self.clients[client.client_id] = client
        answer: dict[str, Any] = {"client_id": client.client_id, "redirect_uris": uris, **body}
        if secret:
            answer |= {"client_secret": secret, "token_endpoint_auth_method": "client_secret_post"}
        return web.json_response(answer, status=201)

    async def _client(self, client_id: str) -> Client | None:
        if client_id in self.clients:
            return self.clients[client_id]
        if not (self.cimd_supported and client_id.startswith("http")):
            return None
        self.metadata_fetches.append(client_id)
        async with aiohttp.ClientSession() as session, session.get(client_id) as response:
            if response.status != 200:
                return None
            document = await response.json()
        if document.get("client_id") != client_id or document.get("token_endpoint_auth_method") != "none":
            return None
        return Client(client_id=client_id, client_secret="", redirect_uris=list(document.get("redirect_uris") or []))

    def _resource_ok(self, value: str | None) -> bool:
        return not self.expected_resource or value == self.mcp_url

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorize_requests.append(query)
        client = await self._client(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            return web.Response(status=400, text="unknown client or redirect URI")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return web.Response(status=400, text="PKCE with S256 is required")
        if query.get("response_type") != "code" or not self._resource_ok(query.get("resource")):
            return web.Response(status=400, text="bad response_type or resource")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"client_id": client.client_id, "redirect_uri": redirect_uri, **query}
        raise web.HTTPFound(f"{redirect_uri}?{urlencode({'code': code, 'state': query.get('state', '')})}")

    def _error(self, error: str, description: str = "") -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=400)

    def _issue(self, client_id: str, resource: str) -> web.Response:
        access = "mcp_at_" + secrets.token_urlsafe(16)
        refresh = "mcp_rt_" + secrets.token_urlsafe(16)
        self.access_tokens[access] = (time.time() + self.token_lifetime, resource)
        self.refresh_tokens[refresh] = client_id
        body = {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime}
        return web.json_response(body | {"refresh_token": refresh})

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        client = await self._client(form.get("client_id", ""))
        if client is None or (client.client_secret and form.get("client_secret") != client.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        if not client.client_secret and "client_secret" in form:
            return web.json_response({"error": "invalid_client", "error_description": "public client"}, status=401)
        if not self._resource_ok(form.get("resource")):
            return self._error("invalid_target", "the resource is not this MCP server")
        if form.get("grant_type") == "authorization_code":
            entry = self.codes.pop(form.get("code", ""), None)
            if (
                entry is None
                or entry["client_id"] != client.client_id
                or entry["redirect_uri"] != form.get("redirect_uri")
            ):
                return self._error("invalid_grant", "bad code")
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != entry["code_challenge"]:
                return self._error("invalid_grant", "PKCE failed")
            return self._issue(client.client_id, form.get("resource", ""))
        if form.get("grant_type") == "refresh_token":
            owner = self.refresh_tokens.pop(form.get("refresh_token", ""), None)  # rotated: usable once
            if owner != client.client_id:
                return self._error("invalid_grant", "unknown refresh token")
            return self._issue(client.client_id, form.get("resource", ""))
        return self._error("unsupported_grant_type")

    async def _mcp(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        entry = self.access_tokens.get(token)
        if entry is None or entry[0] < time.time() or not self._resource_ok(entry[1]):
            metadata = f"{self.base}/.well-known/oauth-protected-resource/mcp"
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": f'Bearer resource_metadata="{metadata}"'},
            )
        call = await request.json()
        self.mcp_calls.append(call)
        return web.json_response({"jsonrpc": "2.0", "id": call.get("id"), "result": {"tools": []}})
