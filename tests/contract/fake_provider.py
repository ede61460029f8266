"""One fake of every provider on 127.0.0.1, answering from a script of documented answers.

Two doors, one recorder:

- plain HTTP on ``port``, where a rewritten template sends everything: ``https://host/path`` in a
  built-in template becomes ``http://127.0.0.1:<port>/host/path`` (:func:`rewrite_origins`), so the
  first path segment says which host the request was meant for, and ``${connectionConfig.x}`` in
  the host (``https://${connectionConfig.subdomain}.zendesk.com``) renders as that segment;
- HTTPS on ``tls_port`` for the origins no template holds, which the provider's own answers name
  (Salesforce's ``instance_url``, Gong's ``api_base_url_for_customer``): the gateway accepts only an
  ``https`` origin there, so :func:`resolve_to_fake` makes those names resolve to this door and a
  throwaway certificate authority vouches for them (see the test module's fixture).

Every request is recorded as a :class:`Seen` (the URL it was meant for, method, query, headers,
parsed body) and answered by the first :class:`Answer` whose method, URL and ``when`` fit; anything
else gets a 404 that names what was asked, so a wrong URL shows in the failure.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..support.procs import free_port

__all__ = ["Answer", "FakeProviders", "Seen", "rewrite_origins"]

_HTTPS = re.compile(r"https://")

Body = Mapping[str, Any] | list[Any] | str | Callable[["Seen", list["Seen"]], Any]


@dataclass
class Seen:
    """One request that reached the fake."""

    url: str  # https://<host it was meant for><path>, without the query
    method: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    raw_body: bytes
    form: dict[str, str]  # the body's fields, form-encoded or JSON object alike
    answered: Any = None  # the body the fake answered with (None for a redirect or a 404)

    @property
    def host(self) -> str:
        return self.url.split("/")[2]

    def fields(self) -> dict[str, str]:
        """Query and body fields together (Gong documents its token parameters in the query)."""
        return {**self.query, **self.form}

    def __repr__(self) -> str:
        return f"{self.method} {self.url}"


@dataclass(frozen=True)
class Answer:
    """What the provider answers to ``method url`` (``url`` without query; ``when`` fields must match).

    ``body`` may be a callable of the request and of every request seen so far, this one included
    (answers that depend on the time or on how often they were asked);
    ``redirect`` makes a browser page: a 302 to the request's ``redirect_uri`` with ``code``, the
    request's ``state`` and the extra ``redirect`` fields (QuickBooks adds ``realmId``).
    ``form_unless_json`` answers ``application/x-www-form-urlencoded`` unless the request's Accept
    names JSON (GitHub's token endpoint).
    """

    method: str
    url: str
    body: Body = field(default_factory=dict)
    status: int = 200
    when: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    redirect: Mapping[str, str] | None = None
    form_unless_json: bool = False

    def fits(self, seen: Seen) -> bool:
        if self.method != seen.method or self.url != seen.url:
            return False
        fields = seen.fields()
        return all(fields.get(k) == v for k, v in self.when.items())


def rewrite_origins(value: Any, base: str) -> Any:
    """``value`` (a template, recursively) with each ``https://`` origin moved under ``base/``."""
    if isinstance(value, str):
        return _HTTPS.sub(base.rstrip("/") + "/", value)
    if isinstance(value, list):
        return [rewrite_origins(item, base) for item in value]
    if isinstance(value, dict):
        return {key: rewrite_origins(item, base) for key, item in value.items()}
    return value


class _FakeResolver(AbstractResolver):
    """Names the fake's HTTPS door serves resolve to it; nothing else resolves (no network in tests)."""

    def __init__(self, hosts: Mapping[str, int]) -> None:
        self._hosts = dict(hosts)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host in self._hosts:
            return [
                ResolveResult(
                    hostname=host, host="127.0.0.1", port=self._hosts[host], family=socket.AF_INET, proto=0, flags=0
                )
            ]
        raise OSError(f"the contract tests resolve no other name ({host})")

    async def close(self) -> None:
        return None


def _certificate(hosts: list[str]) -> tuple[bytes, bytes, bytes]:
    """(CA certificate PEM, leaf certificate PEM, leaf key PEM) for ``hosts``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyway contract tests CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        ca.public_bytes(pem),
        leaf.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


@dataclass
class FakeProviders:
    """The fake; ``answers`` are tried in order, ``setup_url`` is where GitHub's install page returns."""

    answers: list[Answer] = field(default_factory=list)
    tls_hosts: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)
    setup_url: str = ""
    ca_pem: bytes = b""
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, url: str, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.url == url and (method is None or s.method == method)]

    def resolver(self) -> AbstractResolver:
        return _FakeResolver(dict.fromkeys(self.tls_hosts, self.tls_port))

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the fake's authority (and nothing else)."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        return context

    async def start(self, tmp_dir: Any) -> FakeProviders:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        if self.tls_hosts:
            ca, cert, key = _certificate(self.tls_hosts)
            self.ca_pem = ca
            cert_file, key_file = tmp_dir / "fake-cert.pem", tmp_dir / "fake-key.pem"
            cert_file.write_bytes(cert + ca)
            key_file.write_bytes(key)
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(str(cert_file), str(key_file))
            await web.TCPSite(self._runner, "127.0.0.1", self.tls_port, ssl_context=server_ctx).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> Seen:
        if request.secure:
            host, path = (request.host or "").split(":")[0], request.path
        else:
            _, host, rest = (request.path + "/").split("/", 2)
            path = "/" + rest[:-1] if rest else "/"
        raw = await request.read()
        form: dict[str, str] = {}
        content_type = request.headers.get("Content-Type", "")
        if raw and "json" in content_type:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}
        elif raw and "x-www-form-urlencoded" in content_type:
            form = dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
        seen = Seen(
            url=f"https://{host}{path.rstrip('/') if path != '/' else ''}",
            method=request.method,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            raw_body=raw,
            form=form,
        )
        self.seen.append(seen)
        return seen

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = await self._record(request)
        for answer in self.answers:
            if answer.fits(seen):
                return self._respond(answer, seen)
        return web.json_response(
            {"error": "not_found", "message": f"the fake knows no documented answer to {seen!r}"}, status=404
        )

    def _respond(self, answer: Answer, seen: Seen) -> web.StreamResponse:
        if answer.redirect is not None:
            return self._redirect(answer, seen)
        body = answer.body(seen, self.seen) if callable(answer.body) else answer.body
        seen.answered = body
        if isinstance(body, str):
            return web.Response(text=body, status=answer.status, headers=dict(answer.headers))
        if answer.form_unless_json and "json" not in seen.headers.get("accept", ""):
            text = urlencode({k: v for k, v in dict(body).items()})
            return web.Response(
                text=text,
                status=answer.status,
                content_type="application/x-www-form-urlencoded",
                headers=dict(answer.headers),
            )
        return web.json_response(body, status=answer.status, headers=dict(answer.headers))

    def _redirect(self, answer: Answer, seen: Seen) -> web.StreamResponse:
        extra = dict(answer.redirect or {})
        target = extra.pop("_to", "") or seen.query.get("redirect_uri", "")
        if target == "setup_url":
            target = self.setup_url
        params = {**extra, "state": seen.query.get("state", "")}
        if "installation_id" not in extra:
            params = {"code": "documented-authorization-code", **params}
        separator = "&" if "?" in target else "?"
        raise web.HTTPFound(f"{target}{separator}{urlencode(params)}")
