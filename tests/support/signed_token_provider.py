"""A small provider on 127.0.0.1 that takes only tokens its customers sign themselves, for tests:

- ``/snowflake/…``: a Bearer RS256 JWT, checked with the customer's *public* key, whose ``iss`` is
  ``ACCOUNT.USER.SHA256:<fingerprint of that key>`` (Snowflake's key-pair authentication);
- ``/ghost/…``: ``Authorization: Ghost <HS256 JWT>``, the header's ``kid`` the key id and the secret
  the hex-decoded key secret, ``aud: /admin/``, at most five minutes long (Ghost's Admin API);
- ``/emarsys/…``: an ``X-WSSE`` UsernameToken whose digest is recomputed from the password, created
  within five minutes and with a nonce never seen before (Emarsys's WSSE).

Checked here from the specifications (RFC 7515/7518, the WSSE UsernameToken profile) with
``cryptography`` and ``hmac``, independently of the authlib code that signs them in Keyway. Every
token a route accepted is kept, so a test can tell a new token from the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .procs import free_port

_WSSE = re.compile(r'UsernameToken Username="([^"]*)", PasswordDigest="([^"]*)", Nonce="([^"]*)", Created="([^"]*)"')


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_rsa_key() -> tuple[str, rsa.RSAPublicKey]:
    """A PKCS#8 PEM private key and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


def fingerprint(public: rsa.RSAPublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, the signed input and the signature (unverified)."""
    head, body, signature = token.split(".")
    return json.loads(_b64url(head)), json.loads(_b64url(body)), f"{head}.{body}".encode(), _b64url(signature)


@dataclass
class SignedTokenProvider:
    account: str = "KEYWAY-TEST1"
    user: str = "ANALYST"
    ghost_key_id: str = "6489fa1b2c3d4e5f6a7b8c9d"
    ghost_secret: str = "a1" * 32  # 64 hex digits
    wsse_user: str = "keyway_test001"
    wsse_password: str = "s3cr3t-wsse-password"
    port: int = field(default_factory=free_port)
    rsa_pem: str = ""
    rsa_public: rsa.RSAPublicKey | None = None
    accepted: dict[str, list[str]] = field(default_factory=lambda: {"snowflake": [], "ghost": [], "emarsys": []})
    rejected: list[str] = field(default_factory=list)  # why, for a failing test's message
    seen_nonces: set[str] = field(default_factory=set)
    busy_once: set[str] = field(default_factory=set)  # paths answered 503 once, after the token is spent
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ghost_api_key(self) -> str:
        return f"{self.ghost_key_id}:{self.ghost_secret}"

    async def start(self) -> SignedTokenProvider:
        self.rsa_pem, self.rsa_public = new_rsa_key()
        app = web.Application()
        app.router.add_route("*", "/snowflake/{tail:.*}", self._snowflake)
        app.router.add_route("*", "/ghost/{tail:.*}", self._ghost)
        app.router.add_route("*", "/emarsys/{tail:.*}", self._emarsys)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refuse(self, why: str) -> web.Response:
        self.rejected.append(why)
        return web.json_response({"error": why}, status=401)

    def _fresh(self, claims: dict[str, Any], longest: int) -> str | None:
        now = int(time.time())
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "iat and exp must be numbers"
        if not iat - 60 <= now < exp:
            return "expired or not yet valid"
        if exp - iat > longest:
            return "lives too long"
        return None

    async def _snowflake(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Snowflake-Authorization-Token-Type") != "KEYPAIR_JWT":
            return self._refuse("token type header missing")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token.count(".") != 2:
            return self._refuse("no bearer JWT")
        header, claims, signed, signature = decode_jwt(token)
        if header.get("alg") != "RS256":
            return self._refuse("not RS256")
        assert self.rsa_public is not None
        try:
            self.rsa_public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self._refuse("bad RS256 signature")
        expected = f"{self.account}.{self.user}"
        if claims.get("sub") != expected or claims.get("iss") != f"{expected}.{fingerprint(self.rsa_public)}":
            return self._refuse("wrong iss or sub")
        if (stale := self._fresh(claims, 3600)) is not None:
            return self._refuse(stale)
        self.accepted["snowflake"].append(token)
        return web.json_response({"data": [["2026-01-01"]], "path": request.path})

    async def _ghost(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Ghost" or token.count(".") != 2:
            return self._refuse("no Ghost token")
        if request.headers.get("Accept-Version") != "v5.0":
            return self._refuse("no accept-version")
        header, claims, signed, signature = decode_jwt(token)
        if header.get("alg") != "HS256" or header.get("kid") != self.ghost_key_id:
            return self._refuse("wrong alg or kid")
        expected = hmac.new(bytes.fromhex(self.ghost_secret), signed, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            return self._refuse("bad HS256 signature")
        if claims.get("aud") != "/admin/":
            return self._refuse("wrong audience")
        if (stale := self._fresh(claims, 300)) is not None:
            return self._refuse(stale)
        self.accepted["ghost"].append(token)
        return web.json_response({"users": [{"id": "1"}], "path": request.path})

    async def _emarsys(self, request: web.Request) -> web.Response:
        match = _WSSE.fullmatch(request.headers.get("X-WSSE", ""))
        if match is None:
            return self._refuse("no WSSE token")
        username, digest, nonce, created = match.groups()
        if username != self.wsse_user:
            return self._refuse("unknown user")
        recomputed = hashlib.sha1((nonce + created + self.wsse_password).encode()).hexdigest()  # noqa: S324 # WSSE's
        if not hmac.compare_digest(base64.b64encode(recomputed.encode()).decode(), digest):
            return self._refuse("bad WSSE digest")
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
        if abs(datetime.now(UTC) - moment) > timedelta(minutes=5):
            return self._refuse("WSSE token too old")
        if nonce in self.seen_nonces:
            return self._refuse("WSSE nonce replayed")
        self.seen_nonces.add(nonce)
        if request.path in self.busy_once:  # a busy moment: the client retries, with a token of its own
            self.busy_once.discard(request.path)
            return web.json_response({"error": "busy"}, status=503)
        self.accepted["emarsys"].append(request.headers["X-WSSE"])
        return web.json_response({"replyCode": 0, "data": {"path": request.path}})

    def templates(self) -> dict[str, dict[str, Any]]:
        """The catalog's snowflake-jwt, ghost-admin and emarsys entries, pointed at this provider."""
        return {
            "test-snowflake-jwt": {
                "display_name": "Snowflake (JWT), local",
                "auth_mode": "JWT",
                "signature": {"protocol": "RSA"},
                "token": {
                    "signing_key": "${credentials.privateKey}",
                    "expires_in_ms": 3600000,
                    "header": {"alg": "RS256", "typ": "JWT"},
                    "payload": {
                        "iss": "${credentials.accountIdentifier}.${credentials.userName}."
                        "${fingerprint(${credentials.privateKey})}",
                        "sub": "${credentials.accountIdentifier}.${credentials.userName}",
                    },
                },
                "proxy": {
                    "base_url": f"{self.base}/snowflake",
                    "headers": {
                        "authorization": "Bearer ${accessToken}",
                        "x-snowflake-authorization-token-type": "KEYPAIR_JWT",
                    },
                    "verification": {
                        "method": "POST",
                        "endpoints": ["/api/v2/statements"],
                        "data": {"statement": "SELECT CURRENT_TIMESTAMP"},
                    },
                },
                "credentials": {
                    "accountIdentifier": {"type": "string", "title": "Account Identifier"},
                    "userName": {"type": "string", "title": "User Name"},
                    "privateKey": {"type": "string", "title": "Private Key", "secret": True},
                },
            },
            "test-ghost-admin": {
                "display_name": "Ghost (Admin API), local",
                "auth_mode": "JWT",
                "signature": {"protocol": "HMAC"},
                "token": {
                    "signing_key": "${credentials.privateKey.secret}",
                    "expires_in_ms": 300000,
                    "header": {"alg": "HS256", "kid": "${credentials.privateKey.id}"},
                    "payload": {"aud": "/admin/"},
                },
                "proxy": {
                    "base_url": f"{self.base}/ghost/ghost/api/admin/",
                    "headers": {
                        "accept-version": "${connectionConfig.version}",
                        "authorization": "Ghost ${accessToken}",
                    },
                    "verification": {"method": "GET", "endpoints": ["/users"]},
                },
                "connection_config": {"version": {"type": "string", "title": "API Version", "pattern": r"^v\d+\.\d+$"}},
                "credentials": {
                    "privateKey": {
                        "type": "string",
                        "title": "API Key",
                        "pattern": "^[a-fA-F0-9]{24}:[a-fA-F0-9]{64}$",
                    }
                },
            },
            "test-emarsys": {
                "display_name": "Emarsys (WSSE), local",
                "auth_mode": "SIGNATURE",
                "signature": {"protocol": "WSSE"},
                "token": {"expires_in_ms": 300000},
                "proxy": {
                    "base_url": f"{self.base}/emarsys",
                    "headers": {"content-type": "application/json", "x-wsse": "${accessToken}"},
                    "verification": {"method": "GET", "endpoints": ["/api/v2/settings"]},
                },
            },
        }
