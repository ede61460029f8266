"""structlog set-up: configured once per process, JSON off a TTY, secrets redacted.

The redaction processor is the last line of defence: code should not hand secrets to a logger, but
if it does (a whole credentials dict, a token in an error message), the value never reaches the
output. Keys that name a secret are masked whatever their value; values that look like bearer
tokens or Keyway ciphertexts are masked wherever they appear.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import structlog

__all__ = [
    "REDACTED",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "redact",
    "redact_secrets",
    "redact_url",
]

REDACTED = "[REDACTED]"

# Field names are normalised (camelCase split, lower case, '-' and ' ' to '_') before this test.
_SECRET_KEY_PATTERN = re.compile(
    r"(^|_)(password|passwd|secret|secrets|token|tokens|apikey|api_key|access_token|refresh_token|"
    r"client_secret|private_key|privatekey|authorization|auth|cookie|set_cookie|signature|hmac|hmac_key|"
    r"credentials|credential|code_verifier|code|key|keys|encryption_key|secret_key|public_key|"
    r"oauth_token|oauth_token_secret|oauth_verifier|token_secret|session_token|assertion|jwt|"
    r"x_nango_signature|x_nango_hmac_sha256|webhook_signature)$"
)
# Keys that end in a secret word but are not secrets themselves.
_NOT_SECRET = frozenset({"provider_config_key", "providerconfigkey", "unique_key", "event", "key_id", "level"})

# (pattern, replacement): the replacement keeps the label (``Bearer``, ``code=``) and masks the value.
_SECRET_FIELD = r"access_token|refresh_token|id_token|client_secret|api_key|apikey|password|private_key|code"  # noqa: S105 - field names, not a password
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    (re.compile(r"kw1:[0-9a-f]{8}:[A-Za-z0-9+/=]+"), REDACTED),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), REDACTED),
    # key=value, as in a URL's query string or a form body
    (re.compile(rf"(?i)((?:{_SECRET_FIELD})=)[^&\s\"']+"), rf"\1{REDACTED}"),
    # "key": "value" or 'key': 'value', as in a JSON body or a dict's repr inside a message
    (re.compile(rf"(?i)([\"'](?:{_SECRET_FIELD})[\"']\s*:\s*[\"'])[^\"']+"), rf"\1{REDACTED}"),
    # a URL's userinfo (https://user:password@host), as an HTTP client's error message may quote it
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]+@"), rf"\1{REDACTED}@"),
)
# Query parameters that carry a secret under a name is_secret_key does not know (signed URLs).
_URL_SECRET_PARAMS = frozenset({"sig", "sign", "signed", "pass", "pwd", "apikey", "accesskey"})
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(name: str) -> bool:
    # accessToken, refresh-token and Client Secret all become access_token-style names first.
    normalised = _CAMEL_HUMP.sub("_", name).lower().replace("-", "_").replace(" ", "_")
    if normalised in _NOT_SECRET:
        return False
    return bool(_SECRET_KEY_PATTERN.search(normalised))


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    return is_secret_key(name)  # the same few field names, over and over


def _may_hold_secret(text: str) -> bool:
    # What every value pattern above needs at least: "=" (key=value), ":" (JSON pairs, kw1:
    # ciphertexts), "whsec_", or a bearer/basic scheme. Most ids and names have none, and skip them.
    if "=" in text or ":" in text or "whsec_" in text:
        return True
    lower = text.lower()
    return "bearer" in lower or "basic" in lower


def _redact_text(text: str) -> str:
    if not _may_hold_secret(text):
        return text
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """``url`` for a log line: its userinfo, and the values of secret-looking query (or fragment)
    parameters (``token=``, ``sig=``, ``api_key=``, ``X-Amz-Signature=``, …), masked."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (an unbalanced IPv6 bracket): keep no query at all
        head, query, _ = url.partition("?")
        return _redact_text(head) + (f"?{REDACTED}" if query else "")
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_params(parts.query), _redact_params(parts.fragment)))


def _redact_params(text: str) -> str:
    if "=" not in text:
        return text
    pairs = []
    for pair in text.split("&"):
        name, sep, value = pair.partition("=")
        plain = unquote_plus(name)
        if sep and value and (is_secret_key(plain) or plain.lower().replace("-", "") in _URL_SECRET_PARAMS):
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return "&".join(pairs)


def redact(value: Any, *, depth: int = 0) -> Any:
    """A copy of ``value`` with secret-named fields and secret-looking strings masked."""
    if depth > 12:
        return REDACTED
    # Exact types first: isinstance against the Mapping ABC is slow, and most values are plain.
    kind = type(value)
    if kind is str:
        return _redact_text(value)
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _secret_name(k) and v not in (None, "")
                else redact(v, depth=depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item, depth=depth + 1) for item in value]
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, bytes):
        return _redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, int | float | bool) or value is None:
        return value
    return _redact_text(str(value))


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor applying :func:`redact` to every field, the message included."""
    for name in list(event_dict):
        value = event_dict[name]
        if name != "event" and is_secret_key(name) and value not in (None, ""):
            event_dict[name] = REDACTED
        else:
            event_dict[name] = redact(value)
    return event_dict


def configure_logging(*, level: str = "INFO", json: bool | None = None, service: str | None = None) -> None:
    """Configure structlog and the stdlib root logger for this process. Call once, in ``__main__``."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    if service:
        shared.insert(1, _bind_service(service))
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Library loggers (aiohttp, aio-pika, pymongo) go through the same redaction and renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.INFO) if numeric_level < logging.INFO else numeric_level)
    for noisy in ("aiormq", "aio_pika", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _bind_service(service: str) -> Any:
    def add_service(_l: Any, _m: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
