"""A GitHub-like App server and an App Store Connect-like token endpoint on 127.0.0.1, for tests.

GitHub side: the installation page (``/apps/<slug>/installations/new``) that installs the app for
``user`` (or changes their installation ``install_into``) and sends the browser to the app's setup
URL (with an OAuth code when the app asks for user authorization), GitHub's OAuth code exchange,
``POST /app/installations/<id>/access_tokens`` and ``GET /app/installations/<id>``, which accept only
an RS256 JWT signed by the app's key, issued by that app, and living at most ten minutes (and know
only that app's installations), and ``GET /user/installations`` (paginated like GitHub's), which
lists the installations of the app behind a user token that the token's user can access.
App Store side: ``POST /appstore/token`` accepts only an ES256 JWT signed by a registered key
(found by ``kid``), for the registered issuer and audience ``appstoreconnect-v1``.
JWTs are verified with ``cryptography`` alone, independently of the signing code under test.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .procs import free_port

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def rsa_key_pem() -> tuple[str, rsa.RSAPublicKey]:
    """A fresh RSA key in GitHub's download format (PKCS#1, ``BEGIN RSA PRIVATE KEY``) and its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return pem.decode(), key.public_key()


def ec_key_pem() -> tuple[str, ec.EllipticCurvePublicKey]:
    """A fresh P-256 key in Apple's ``.p8`` format (PKCS#8) and its public half."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def verify_jwt(token: str, key: PublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWT whose signature ``key`` verifies; ValueError otherwise."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header, claims = json.loads(_b64url(header_b64)), json.loads(_b64url(claims_b64))
        signature, signed = _b64url(signature_b64), f"{header_b64}.{claims_b64}".encode()
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError("not a compact JWT") from exc
    if header.get("typ") != "JWT":
        raise ValueError("typ is not JWT")
    try:
        if isinstance(key, rsa.RSAPublicKey) and header.get("alg") == "RS256":
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey) and header.get("alg") == "ES256":
            if len(signature) != 64:  # JWS carries r || s, not DER
                raise ValueError("an ES256 signature is 64 bytes")
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        else:
            raise ValueError(f"unexpected alg {header.get('alg')}")
    except InvalidSignature:
        raise ValueError("bad signature") from None
    return header, claims


@dataclass
class GitHubApp:
    app_id: str
    slug: str
    public_key: rsa.RSAPublicKey
    setup_url: str = ""  # where the browser goes after installing; set once the gateway runs
    client_id: str | None = None  # set when the app requests user authorization (OAuth) on install
    client_secret: str | None = None


@dataclass
class Installation:
    app_id: str
    account: str  # the user or organization the app is installed on
    members: set[str]  # the users who can access it (the account's members)
    created_at: datetime
    updated_at: datetime

    def as_json(self, installation_id: str) -> dict[str, Any]:
        """The fields of GitHub's installation object that matter here."""
        return {
            "id": int(installation_id),
            "app_id": int(self.app_id),
            "account": {"login": self.account},
            "target_type": "Organization" if self.account not in self.members else "User",
            "access_tokens_url": f"/app/installations/{installation_id}/access_tokens",
            "created_at": _github_time(self.created_at),
            "updated_at": _github_time(self.updated_at),
        }


def _github_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class AppStoreKey:
    issuer_id: str
    public_key: ec.EllipticCurvePublicKey


@dataclass
class GitHubLikeProvider:
    install_mode: str = "install"  # install | request (an organization owner must approve)
    token_mode: str = "ok"  # ok | error_500
    user: str = "octocat"  # who uses the browser: installs the app, authorizes it
    install_into: str | None = None  # an installation id: the install page changes it instead of creating one
    port: int = field(default_factory=free_port)
    apps: dict[str, GitHubApp] = field(default_factory=dict)  # by slug
    installations: dict[str, Installation] = field(default_factory=dict)  # by id
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # OAuth code -> (client id, user)
    user_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # user token -> (app id, user)
    app_store_keys: dict[str, AppStoreKey] = field(default_factory=dict)  # by kid
    jwts: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # accepted (header, claims)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    api_requests: list[dict[str, Any]] = field(default_factory=list)  # GET /app/installations/<id>, /user/installations
    rejected: list[str] = field(default_factory=list)
    _next_id: int = 1000
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def installation_token_url(self) -> str:
        return f"{self.base}/app/installations/${{connectionConfig.installation_id}}/access_tokens"

    def add_installation(
        self, app_id: str, account: str, members: Iterable[str], *, age: timedelta = timedelta(0)
    ) -> str:
        """A new installation of the app, created and last changed ``age`` ago; its id."""
        installation_id = str(self._next_id)
        self._next_id += 1
        when = datetime.now(UTC) - age
        self.installations[installation_id] = Installation(app_id, account, set(members), when, when)
        return installation_id

    def minted_for(self, installation_id: str) -> int:
        """How many installation tokens were asked for that installation (accepted or not)."""
        path = f"/app/installations/{installation_id}/access_tokens"
        return sum(1 for r in self.token_requests if r["path"] == path)

    async def start(self) -> GitHubLikeProvider:
        app = web.Application()
        app.router.add_get("/apps/{slug}/installations/new", self._install)
        app.router.add_post("/login/oauth/access_token", self._oauth_token)
        app.router.add_post("/app/installations/{installation_id}/access_tokens", self._installation_token)
        app.router.add_get("/app/installations/{installation_id}", self._installation)
        app.router.add_get("/user/installations", self._user_installations)
        app.router.add_post("/appstore/token", self._app_store_token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _install(self, request: web.Request) -> web.StreamResponse:
        app = self.apps.get(request.match_info["slug"])
        if app is None:
            return web.Response(status=404, text="no such app")
        params: dict[str, str] = {"setup_action": self.install_mode, "state": request.query.get("state", "")}
        if self.install_mode == "install" and self.install_into is not None:
            self.installations[self.install_into].updated_at = datetime.now(UTC)
            params |= {"installation_id": self.install_into, "setup_action": "update"}
        elif self.install_mode == "install":
            params["installation_id"] = self.add_installation(app.app_id, self.user, [self.user])
        if app.client_id:
            code = secrets.token_urlsafe(12)
            self.codes[code] = (app.client_id, self.user)
            params["code"] = code
        raise web.HTTPFound(f"{app.setup_url}?{urlencode(params)}")

    async def _oauth_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({"path": request.path, **form})
        app = next((a for a in self.apps.values() if a.client_id and a.client_id == form.get("client_id")), None)
        if app is None or form.get("client_secret") != app.client_secret:
            return web.json_response({"error": "incorrect_client_credentials"}, status=401)
        client_id, user = self.codes.pop(str(form.get("code", "")), (None, ""))
        if client_id != app.client_id:
            return web.json_response({"error": "bad_verification_code"}, status=400)
        access_token = "ghu_" + secrets.token_urlsafe(12)
        self.user_tokens[access_token] = (app.app_id, user)
        return web.json_response(
            {
                "access_token": access_token,
                "token_type": "bearer",
                "scope": "",
                "expires_in": 28800,
                "refresh_token": "ghr_" + secrets.token_urlsafe(12),
            }
        )

    def _bearer(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    def _app_of_jwt(self, request: web.Request) -> GitHubApp | web.Response:
        """The app whose key signed the request's JWT (issued by it, valid now), or GitHub's 401."""
        token = self._bearer(request)
        try:
            issuer = str(json.loads(_b64url(token.split(".")[1])).get("iss"))
            app = next(a for a in self.apps.values() if a.app_id == issuer)
            header, claims = verify_jwt(token, app.public_key)
            now = time.time()
            if not claims["iat"] <= now + 1 < claims["exp"] or claims["exp"] - claims["iat"] > 600:
                raise ValueError("JWT not valid now, or living over 10 minutes")
        except (ValueError, KeyError, TypeError, IndexError, StopIteration, json.JSONDecodeError) as exc:
            self.rejected.append(str(exc) or exc.__class__.__name__)
            return web.json_response({"message": "A JSON web token could not be decoded"}, status=401)
        self.jwts.append((header, claims))
        return app

    def _installation_of(self, app: GitHubApp, request: web.Request) -> Installation | None:
        installation = self.installations.get(request.match_info["installation_id"])
        return installation if installation is not None and installation.app_id == app.app_id else None

    async def _installation(self, request: web.Request) -> web.Response:
        self.api_requests.append({"path": request.path, "query": dict(request.query)})
        app = self._app_of_jwt(request)
        if isinstance(app, web.Response):
            return app
        installation = self._installation_of(app, request)
        if installation is None:  # another app's installations are not this app's business
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(installation.as_json(request.match_info["installation_id"]))

    async def _user_installations(self, request: web.Request) -> web.Response:
        self.api_requests.append({"path": request.path, "query": dict(request.query)})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").removeprefix("token ")
        if token not in self.user_tokens:
            return web.json_response({"message": "Bad credentials"}, status=401)
        app_id, user = self.user_tokens[token]
        visible = [
            installation.as_json(installation_id)
            for installation_id, installation in sorted(self.installations.items(), key=lambda item: int(item[0]))
            if installation.app_id == app_id and user in installation.members
        ]
        per_page = min(int(request.query.get("per_page", "30")), 100)
        page = int(request.query.get("page", "1"))
        window = visible[(page - 1) * per_page : page * per_page]
        return web.json_response({"total_count": len(visible), "installations": window})

    async def _installation_token(self, request: web.Request) -> web.Response:
        self.token_requests.append({"path": request.path, "accept": request.headers.get("Accept")})
        if self.token_mode == "error_500":
            return web.json_response({"message": "Server Error"}, status=500)
        app = self._app_of_jwt(request)
        if isinstance(app, web.Response):
            return app
        if self._installation_of(app, request) is None:
            return web.json_response({"message": "Not Found"}, status=404)
        expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        return web.json_response(
            {
                "token": "ghs_" + secrets.token_urlsafe(16),
                "expires_at": expires.isoformat().replace("+00:00", "Z"),
                "permissions": {"contents": "read"},
                "repository_selection": "all",
            },
            status=201,
        )

    async def _app_store_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.token_requests.append({"path": request.path, "body": body})
        unauthorized = {"errors": [{"status": "401", "code": "NOT_AUTHORIZED", "title": "Authentication failed"}]}
        token = self._bearer(request)
        try:
            kid = json.loads(_b64url(token.split(".")[0])).get("kid", "")
            entry = self.app_store_keys[kid]
            header, claims = verify_jwt(token, entry.public_key)
            now = time.time()
            if claims.get("iss") != entry.issuer_id or claims.get("aud") != "appstoreconnect-v1":
                raise ValueError("wrong issuer or audience")
            if not claims["iat"] <= now + 1 < claims["exp"] or claims["exp"] - claims["iat"] > 1200:
                raise ValueError("JWT not valid now, or living over 20 minutes")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self.rejected.append(str(exc))
            return web.json_response(unauthorized, status=401)
        self.jwts.append((header, claims))
        expires = datetime.now(UTC) + timedelta(minutes=20)
        return web.json_response({"token": "asc_" + secrets.token_urlsafe(16), "expires_at": expires.isoformat()})
