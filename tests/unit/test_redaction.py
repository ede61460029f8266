"""A secret handed to a log call never reaches the output, whatever its shape.

``structlog.testing.capture_logs`` bypasses the processor chain (so it would never see redaction);
these tests configure logging exactly as a service does and read what it wrote to stderr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from keyway_shared.cipher import CredentialCipher, generate_key
from keyway_shared.logging import REDACTED, configure_logging, get_logger, is_secret_key, redact
from keyway_shared.webhook_signing import generate_signing_key

ACCESS_TOKEN = "gho_accessTOKEN0123456789abcdef"
REFRESH_TOKEN = "ghr_refreshTOKEN0123456789"
API_KEY = "phc_apiKEY0123456789abcdefXYZ"
PASSWORD = "hunter2-correct-horse"
CLIENT_SECRET = "cs_0123456789clientSECRET"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBg"
BEARER = "eyJhbGciOiJIUzI1NiJ9.bearerPAYLOAD.signature"
OAUTH_CODE = "authCODE0123456789xyz"
URL_TOKEN = "urlACCESStoken0123456789"
CONTEXT_TOKEN = "ctxTOKEN0123456789abcdef"
EXC_TOKEN = "excBEARERtoken0123456789"
EXC_QUERY_SECRET = "excQUERYsecret0123456789"
NESTED_SECRET = "nestedSECRET0123456789"
HEADER_SECRET = "headerBASICcredentials0123"
BODY_TOKEN = "bodyACCESStoken0123456789"
REPR_SECRET = "reprCLIENTsecret0123456789"
CIPHERTEXT = CredentialCipher(current_key=generate_key()).encrypt(b"anything")
SIGNING_KEY = generate_signing_key()

SECRETS = [
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    API_KEY,
    PASSWORD,
    CLIENT_SECRET,
    PRIVATE_KEY,
    BEARER,
    OAUTH_CODE,
    URL_TOKEN,
    CONTEXT_TOKEN,
    EXC_TOKEN,
    EXC_QUERY_SECRET,
    NESTED_SECRET,
    HEADER_SECRET,
    BODY_TOKEN,
    REPR_SECRET,
    CIPHERTEXT,
    SIGNING_KEY,
    SIGNING_KEY.removeprefix("whsec_"),
]


@pytest.fixture
def configured() -> Iterator[None]:
    """Logging as a service configures it; structlog and the root logger restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def _log_every_shape() -> None:
    log = get_logger("keyway.test")
    structlog.contextvars.bind_contextvars(request_id="req-1", session_token=CONTEXT_TOKEN)
    log.info(
        "connection saved",
        provider_config_key="github-dev",
        connection_id="user-42",
        access_token=ACCESS_TOKEN,
        apiKey=API_KEY,
        password=PASSWORD,
        client_secret=CLIENT_SECRET,
        private_key=PRIVATE_KEY,
    )
    log.info(
        "nested credentials",
        connection_id="user-42",
        credentials={"type": "OAUTH2", "access_token": ACCESS_TOKEN, "raw": {"refresh_token": REFRESH_TOKEN}},
        response={"items": [{"data": {"client_secret": NESTED_SECRET}}]},
        headers=[("Authorization", f"Basic {HEADER_SECRET}")],
    )
    log.info(f"calling the provider with Authorization: Bearer {BEARER}", provider_config_key="github-dev")
    log.warning(
        "callback",
        url=f"https://app.example/callback?state=abc&code={OAUTH_CODE}",
        next=f"https://api.example/me?access_token={URL_TOKEN}&page=2",
    )
    body = json.dumps({"access_token": BODY_TOKEN, "token_type": "bearer"})
    log.error(f"unexpected token response: {body}", status=400)
    log.info(f"integration {dict(client_id='abc', client_secret=REPR_SECRET)}")
    log.info("stored", value=CIPHERTEXT, note=f"ciphertext {CIPHERTEXT} written")
    log.info(f"signing with {SIGNING_KEY}", provider_config_key="github-dev")
    try:
        raise RuntimeError(f"provider said 401 for Bearer {EXC_TOKEN} on /x?client_secret={EXC_QUERY_SECRET}")
    except RuntimeError:
        log.exception("refresh failed", connection_id="user-42")
    try:
        raise ValueError(f"Bearer {EXC_TOKEN}")
    except ValueError as exc:
        log.error("refresh failed", error=exc, reason=str(exc))


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "console"])
def test_structlog_output_never_holds_a_secret(capsys: pytest.CaptureFixture[str], as_json: bool) -> None:
    configure_logging(json=as_json, service="test-service")
    _log_every_shape()
    err = capsys.readouterr().err
    assert err.count("\n") >= 8, err  # every call wrote a line (the traceback adds more)
    for secret in SECRETS:
        assert secret not in err, f"secret {secret[:6]}… leaked"
    assert REDACTED in err
    # What is not secret survives, so logs stay useful.
    visible_parts = ("github-dev", "user-42", "req-1", "test-service", "connection saved", "RuntimeError", "state=abc")
    for visible in (*visible_parts, "token_type", "client_id"):
        assert visible in err


@pytest.mark.usefixtures("configured")
def test_json_lines_keep_structure(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    get_logger("x").info("saved", provider_config_key="zendesk", connection_id="c-1", access_token=ACCESS_TOKEN)
    line = json.loads(capsys.readouterr().err.strip())
    assert line["event"] == "saved"
    assert line["provider_config_key"] == "zendesk"
    assert line["connection_id"] == "c-1"
    assert line["access_token"] == REDACTED
    assert line["level"] == "info"


@pytest.mark.usefixtures("configured")
def test_stdlib_logging_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    library = logging.getLogger("x")
    library.info("request with Authorization: Bearer %s failed", BEARER)
    library.warning(f"GET https://api.example/me?access_token={URL_TOKEN}")
    try:
        raise RuntimeError(f"Bearer {EXC_TOKEN} rejected")
    except RuntimeError:
        library.exception("library error for connection user-42")
    err = capsys.readouterr().err
    for secret in (BEARER, URL_TOKEN, EXC_TOKEN):
        assert secret not in err
    assert "request with Authorization" in err
    assert "user-42" in err
    assert err.count(REDACTED) >= 3


@pytest.mark.usefixtures("configured")
def test_level_filtering(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="WARNING")
    log = get_logger("x")
    log.info("hidden line")
    log.warning("shown line")
    err = capsys.readouterr().err
    assert "hidden line" not in err
    assert "shown line" in err


@pytest.mark.parametrize(
    "name",
    [
        *("access_token", "accessToken", "refresh-token", "refreshToken", "apiKey", "api_key", "API-KEY"),
        *("password", "client_secret", "clientSecret", "private_key", "privateKey", "credentials"),
        *("Authorization", "secret_key", "code", "hmac_key", "X-Nango-Signature"),
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    ["provider_config_key", "providerConfigKey", "connection_id", "connectionId", "event", "level", "key_id", "url"],
)
def test_names_that_are_not_secret(name: str) -> None:
    assert not is_secret_key(name)


def test_redact_leaves_plain_values_alone() -> None:
    value = {"provider_config_key": "gh", "count": 3, "ok": True, "nothing": None, "items": ["a", 1.5]}
    assert redact(value) == value
    assert redact({"password": "", "token": None}) == {"password": "", "token": None}
