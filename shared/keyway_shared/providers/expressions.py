"""Nango's template expression language, evaluated without ``eval``: a parser and a fixed set of functions.

A template string is literal text with ``${...}`` parts. A part is one of:

- a variable: ``${connectionConfig.x}``, ``${apiKey}``, ``${credentials.raw.id_token}`` (a dotted
  path), ``${clientId}``; in a proxy header also the request's ``${method}``, ``${host}``,
  ``${path}``, ``${endpoint}``, ``${params}``, ``${urlCanonicalParams}``, ``${bodyCanonicalParams}``
  and ``${contentType}`` (Nango's ``buildProxyHeaders`` names);
- ``${random}``: one UUID per request (every header of a request sees the same one);
- ``${now}`` (ISO time), ``${now:FORMAT}`` and ``${now+N:unit:FORMAT}`` (dayjs format tokens, UTC,
  ``X``/``x`` alone for Unix seconds/milliseconds); one clock reading per request;
- a call: ``base64(x)``, ``sha256Hex(x)``, ``sha256Base64(x)``, ``hmacSha1Hex(message, key)``,
  ``ed25519Sign(message, pemKey)``, ``fingerprint(pemKey)`` and ``awsSigV4(keyId, secret, region,
  service[, host])``, whose arguments are template text themselves.

Read from Nango's ``packages/shared/lib/utils/utils.ts`` (``interpolateString``,
``interpolateStringFromObject``) and ``services/proxy/utils.ts`` (``buildProxyHeaders``,
``buildCanonicalParams``). Where Keyway differs, on purpose: a variable without a value is an error
(:class:`MissingParamError`) instead of staying in the text as ``${...}``; a function Nango does not
know is an error at catalog load (:func:`check_syntax`); canonical parameters sort in byte order,
as Duo and AWS specify, where Nango uses ``localeCompare``.

No error message quotes a value: only variable names and the reason.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .. import aws_sigv4
from .interpolation import MissingParamError, UnsafeParamError, alternatives, check_pattern, param_text

__all__ = [
    "FUNCTIONS",
    "REQUEST_VARIABLES",
    "ExpressionSyntaxError",
    "RequestFacts",
    "Scope",
    "canonical_params",
    "check_syntax",
    "expand",
    "format_now",
    "uses",
    "variable_names",
]

FUNCTIONS = frozenset({"base64", "sha256Hex", "sha256Base64", "hmacSha1Hex", "ed25519Sign", "fingerprint", "awsSigV4"})
REQUEST_VARIABLES = frozenset(
    {"method", "host", "path", "endpoint", "params", "urlCanonicalParams", "bodyCanonicalParams", "contentType"}
)
_CONFIG_PREFIX = "connectionConfig."
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ExpressionSyntaxError(ValueError):
    """A template string that is not an expression Keyway (or Nango) can evaluate."""


# --- the parse tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Var:
    name: str


@dataclass(frozen=True)
class _Call:
    function: str
    raw_args: str  # the text between the parentheses, itself a template
    args: tuple[tuple[_Node, ...], ...]


_Node = _Text | _Var | _Call


def _end_of_part(text: str, start: int) -> int:
    """The index just past the ``}`` closing the ``${`` at ``start``."""
    _node, end = _parse_part(text, start)
    return end


def _split_args(raw: str) -> list[str]:
    """``raw`` split at commas outside ``${...}`` parts and parentheses."""
    parts: list[str] = []
    depth, begin, index = 0, 0, 0
    while index < len(raw):
        if raw.startswith("${", index):
            index = _end_of_part(raw, index)
            continue
        char = raw[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(raw[begin:index])
            begin = index + 1
        index += 1
    parts.append(raw[begin:])
    return parts


def _call_args(function: str, raw: str) -> list[str]:
    """The argument texts as Nango reads them: one-argument functions take everything (commas
    included), the two-argument ones split at the last comma, awsSigV4 at each comma."""
    if function in {"hmacSha1Hex", "ed25519Sign"}:
        parts = _split_args(raw)
        if len(parts) < 2:
            raise ExpressionSyntaxError(f"{function}() needs a message and a key")
        return [",".join(parts[:-1]), parts[-1].strip()]
    if function == "awsSigV4":
        parts = [part.strip() for part in _split_args(raw)]
        if len(parts) not in {4, 5}:
            raise ExpressionSyntaxError("awsSigV4() needs a key id, a secret, a region, a service and maybe a host")
        return parts
    return [raw]


def _parse_part(text: str, start: int) -> tuple[_Node, int]:
    """The ``${...}`` part starting at ``start`` and the index just past it."""
    index = start + 2
    name = _IDENTIFIER.match(text, index)
    if name is not None and text.startswith("(", name.end()):
        function = name.group(0)
        if function not in FUNCTIONS:
            raise ExpressionSyntaxError(f"unknown function {function}()")
        index, depth = name.end() + 1, 0
        while True:
            if index >= len(text):
                raise ExpressionSyntaxError(f"{function}( is not closed")
            if text.startswith("${", index):
                index = _end_of_part(text, index)
                continue
            char = text[index]
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            index += 1
        raw = text[name.end() + 1 : index]
        if not text.startswith("}", index + 1):
            raise ExpressionSyntaxError(f"{function}(...) must be followed by '}}'")
        args = tuple(tuple(parse(arg)) for arg in _call_args(function, raw))
        return _Call(function, raw, args), index + 2
    close = text.find("}", index)
    opening = text.find("{", index)
    if close < 0 or (0 <= opening < close):
        raise ExpressionSyntaxError("a '${' is not closed")
    variable = text[index:close]
    if not variable:
        raise ExpressionSyntaxError("an empty '${}'")
    return _Var(variable), close + 1


def parse(text: str) -> list[_Node]:
    """``text`` as literal pieces, variables and calls; ExpressionSyntaxError when it is not one."""
    nodes: list[_Node] = []
    index, literal = 0, 0
    while True:
        found = text.find("${", index)
        if found < 0:
            break
        if found > literal:
            nodes.append(_Text(text[literal:found]))
        node, index = _parse_part(text, found)
        nodes.append(node)
        literal = index
    if literal < len(text):
        nodes.append(_Text(text[literal:]))
    return nodes


def check_syntax(text: str) -> None:
    """ValueError naming the problem when ``text`` (each ``||`` alternative) cannot be evaluated."""
    for option in alternatives(text):
        parse(option)


def _walk(nodes: Sequence[_Node]) -> list[_Node]:
    found: list[_Node] = []
    for node in nodes:
        found.append(node)
        if isinstance(node, _Call):
            for arg in node.args:
                found.extend(_walk(arg))
    return found


def variable_names(text: str) -> set[str]:
    """Every variable ``text`` refers to (inside calls too), as written (``connectionConfig.x``)."""
    names: set[str] = set()
    for option in alternatives(text):
        try:
            names |= {node.name for node in _walk(parse(option)) if isinstance(node, _Var)}
        except ExpressionSyntaxError:
            continue
    return names


def uses(text: str, *names: str) -> bool:
    """Whether ``text`` refers to one of ``names`` (variables or functions)."""
    wanted = set(names)
    for option in alternatives(text):
        try:
            nodes = _walk(parse(option))
        except ExpressionSyntaxError:
            continue
        for node in nodes:
            name = node.name if isinstance(node, _Var) else node.function if isinstance(node, _Call) else None
            if name in wanted:
                return True
    return False


# --- what an expression is evaluated against ----------------------------------------------------


def _js_encode(text: str) -> str:
    """encodeURIComponent, then ``!'()*`` escaped too, hex in capitals (Nango's canonical encoding)."""
    return quote(text, safe="-_.~")


def _from_query_string(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        pairs.append((unquote(key.replace("+", "%20")), unquote(value.replace("+", "%20"))))
    pairs.sort(key=lambda item: item[0])
    return "&".join(f"{_js_encode(key)}={_js_encode(value)}" for key, value in pairs)


def _js_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if item is None else _js_string(item) for item in value)
    return str(value)


def canonical_params(method: str, body: bytes | None, query: str, content_type: str = "") -> str:
    """Nango's ``buildCanonicalParams`` (Duo's request signing): a body method's form or JSON-object
    body, else the query, as sorted, percent-encoded ``key=value`` pairs."""
    if method.upper() in _BODY_METHODS:
        if not body:
            return ""
        text = body.decode("utf-8", errors="replace")
        if "json" in content_type.lower():
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict):
                items = sorted(data.items(), key=lambda item: str(item[0]))
                return "&".join(f"{_js_encode(str(k))}={_js_encode(_js_string(v))}" for k, v in items)
            if data is not None:
                return ""
        return _from_query_string(text.removeprefix("?"))
    return _from_query_string(query) if query else ""


@dataclass(frozen=True, kw_only=True)
class RequestFacts:
    """The upstream request a proxy header is computed for."""

    method: str = "GET"
    url: str = ""  # the upstream URL as it will be sent (encoded)
    endpoint: str = ""  # the path the caller asked for, as Nango's ``config.endpoint``
    body: bytes | None = None
    content_type: str = ""

    def variables(self) -> dict[str, str]:
        parts = urlsplit(self.url)
        method = self.method.upper()
        raw_body = self.body.decode("utf-8", errors="replace") if self.body else ""
        return {
            "method": method,
            "host": parts.netloc.rpartition("@")[2],
            "path": parts.path or "/",
            "endpoint": self.endpoint,
            "params": canonical_params(method, self.body, parts.query, self.content_type),
            "urlCanonicalParams": canonical_params("GET", None, parts.query),
            "bodyCanonicalParams": raw_body.removeprefix("?") if method in _BODY_METHODS else "",
            "contentType": self.content_type,
        }


def _new_random() -> str:
    return str(uuid.uuid4())


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What the variables of one request's templates stand for.

    ``values`` is flat, as Keyway's renderers always took it: connection-configuration keys and the
    credentials' ``apiKey``/``accessToken``, ``${connectionConfig.x}`` reading ``x``. When ``config``
    is given, ``${connectionConfig.x}`` reads it alone (a credential named like a configuration key
    cannot stand in for it, nor the other way round). ``request`` is the upstream request, for the
    proxy's signing variables, which then win over any same-named value. ``now`` and ``random`` are
    read once and shared by every template of the request, as Nango's stable replacers are.
    """

    values: Mapping[str, Any]
    config: Mapping[str, Any] | None = None
    request: Mapping[str, str] | None = None
    now: datetime = field(default_factory=_utc_now)
    random: str = field(default_factory=_new_random)
    patterns: Mapping[str, str] = field(default_factory=dict)


def _path(values: Mapping[str, Any], name: str) -> Any:
    """``values[name]``, else the dotted path through nested mappings (``credentials.raw.id_token``)."""
    if name in values:
        return values[name]
    current: Any = values
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


# --- time ---------------------------------------------------------------------------------------

_DAYJS_TOKEN = re.compile(r"\[([^\]]+)]|Y{1,4}|M{1,4}|D{1,2}|d{1,4}|H{1,2}|h{1,2}|a|A|m{1,2}|s{1,2}|Z{1,2}|SSS")
_MONTHS = [calendar.month_name[i] for i in range(1, 13)]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_NOW_OFFSET = re.compile(r"now([+-]\d+):([a-zA-Z]+):(.+)", re.DOTALL)
_UNITS = {
    "ms": "millisecond",
    "millisecond": "millisecond",
    "milliseconds": "millisecond",
    "s": "second",
    "second": "second",
    "seconds": "second",
    "m": "minute",
    "minute": "minute",
    "minutes": "minute",
    "h": "hour",
    "hour": "hour",
    "hours": "hour",
    "d": "day",
    "day": "day",
    "days": "day",
    "D": "day",
    "date": "day",
    "dates": "day",
    "w": "week",
    "week": "week",
    "weeks": "week",
    "M": "month",
    "month": "month",
    "months": "month",
    "Q": "quarter",
    "quarter": "quarter",
    "quarters": "quarter",
    "y": "year",
    "year": "year",
    "years": "year",
}


def _dayjs_token(moment: datetime, token: str) -> str:
    hour12 = moment.hour % 12 or 12
    weekday = _DAYS[(moment.weekday() + 1) % 7]
    table: dict[str, Callable[[], str]] = {
        "YY": lambda: f"{moment.year % 100:02d}",
        "YYYY": lambda: f"{moment.year:04d}",
        "M": lambda: str(moment.month),
        "MM": lambda: f"{moment.month:02d}",
        "MMM": lambda: _MONTHS[moment.month - 1][:3],
        "MMMM": lambda: _MONTHS[moment.month - 1],
        "D": lambda: str(moment.day),
        "DD": lambda: f"{moment.day:02d}",
        "d": lambda: str((moment.weekday() + 1) % 7),
        "dd": lambda: weekday[:2],
        "ddd": lambda: weekday[:3],
        "dddd": lambda: weekday,
        "H": lambda: str(moment.hour),
        "HH": lambda: f"{moment.hour:02d}",
        "h": lambda: str(hour12),
        "hh": lambda: f"{hour12:02d}",
        "a": lambda: "am" if moment.hour < 12 else "pm",
        "A": lambda: "AM" if moment.hour < 12 else "PM",
        "m": lambda: str(moment.minute),
        "mm": lambda: f"{moment.minute:02d}",
        "s": lambda: str(moment.second),
        "ss": lambda: f"{moment.second:02d}",
        "SSS": lambda: f"{moment.microsecond // 1000:03d}",
        "Z": lambda: "+00:00",
        "ZZ": lambda: "+0000",
    }
    render = table.get(token)
    return render() if render is not None else token  # Y, YYY, ... : dayjs leaves them as written


def format_now(moment: datetime, pattern: str) -> str:
    """``moment`` (UTC) as dayjs formats it; ``X``/``x`` alone are Unix seconds/milliseconds."""
    moment = moment.astimezone(UTC)
    if pattern == "X":
        return str(int(moment.timestamp()))
    if pattern == "x":
        return str(int(moment.timestamp() * 1000))
    return _DAYJS_TOKEN.sub(lambda m: m.group(1) if m.group(1) else _dayjs_token(moment, m.group(0)), pattern)


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])  # dayjs clamps to the month's end
    return moment.replace(year=year, month=month, day=day)


def _shifted(moment: datetime, amount: int, unit: str) -> datetime:
    kind = _UNITS.get(unit) or _UNITS.get(unit.lower())
    if kind is None:
        raise ExpressionSyntaxError(f"unknown time unit {unit!r}")
    if kind == "month":
        return _add_months(moment, amount)
    if kind == "quarter":
        return _add_months(moment, 3 * amount)
    if kind == "year":
        return _add_months(moment, 12 * amount)
    seconds = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}[kind]
    return moment + timedelta(seconds=amount * seconds)


def _js_iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now_expression(name: str, now: datetime) -> str | None:
    if name == "now":
        return _js_iso(now)
    offset = _NOW_OFFSET.fullmatch(name)
    if offset is not None:
        return format_now(_shifted(now, int(offset.group(1)), offset.group(2)), offset.group(3))
    if name.startswith("now:") and len(name) > 4:
        return format_now(now, name[4:])
    return None


# --- functions ----------------------------------------------------------------------------------


def _pem(text: str, kind: str) -> bytes:
    """Nango's ``formatPem``: escaped newlines read, armour and whitespace dropped, re-armoured."""
    body = text.replace("\\n", "\n")
    body = re.sub(r"-----(BEGIN|END) [^-]+-----", "", body.strip())
    body = re.sub(r"\s+", "", body)
    if not body or not re.fullmatch(r"[A-Za-z0-9+/=]+", body):
        raise ValueError("not a PEM key")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----\n".encode()


def _private_key(text: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(_pem(text, "PRIVATE KEY"), password=None)


def _ed25519_sign(message: str, key_text: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = _private_key(key_text)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key")
    return base64.b64encode(key.sign(message.encode())).decode("ascii")


def _fingerprint(key_text: str) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = _private_key(key_text).public_key()
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _aws_sigv4(args: list[str], now: datetime, request: Mapping[str, str]) -> str:
    """An ``Authorization`` value of AWS Signature Version 4, signed as Nango's ``awsSigV4`` signs:
    ``host`` and ``x-amz-date`` (and ``content-type`` when the request has one), by the signer the
    proxy's AWS_SIGV4 connections use (:mod:`keyway_shared.aws_sigv4`)."""
    access_key, secret, region, service = args[:4]
    host = args[4] if len(args) > 4 and args[4] else f"{service}.amazonaws.com"
    stamp = aws_sigv4.amz_date(now)
    content_type = request.get("contentType", "")
    headers = [("content-type", content_type)] if content_type else []
    headers += [("host", host), ("x-amz-date", stamp)]
    return aws_sigv4.authorization(
        method=request.get("method", "GET"),
        uri=request.get("path", "/"),
        query=request.get("urlCanonicalParams", request.get("params", "")),
        headers=headers,
        content_hash=_sha256_hex(request.get("bodyCanonicalParams", "")),
        key=aws_sigv4.AwsKey(access_key, secret),
        region=region,
        service=service,
        stamp=stamp,
    )


# --- evaluation ---------------------------------------------------------------------------------


def _variable(name: str, scope: Scope) -> str:
    if scope.request is not None and name in scope.request:
        return scope.request[name]
    if name == "random":
        return scope.random
    timed = _now_expression(name, scope.now)
    if timed is not None:
        return timed
    if name.startswith(_CONFIG_PREFIX):
        bare = name[len(_CONFIG_PREFIX) :]
        source = scope.config if scope.config is not None else scope.values
        text = param_text(_path(source, bare))
        if text is None:
            raise MissingParamError([bare])
        check_pattern(bare, text, scope.patterns)
        return text
    text = param_text(_path(scope.values, name))
    if text is None:
        raise MissingParamError([name])
    if scope.config is None or name in scope.config:
        check_pattern(name, text, scope.patterns)
    return text


def _names_in(nodes: Sequence[_Node]) -> list[str]:
    return [node.name for node in _walk(nodes) if isinstance(node, _Var)]


def _call(node: _Call, scope: Scope) -> str:
    args = [_evaluate(arg, scope, top=False) for arg in node.args]
    function = node.function
    if function == "base64":
        return base64.b64encode(args[0].encode()).decode("ascii")
    if function == "sha256Hex":
        return _sha256_hex(args[0])
    if function == "sha256Base64":
        return base64.b64encode(hashlib.sha256(args[0].encode()).digest()).decode("ascii")
    if function == "hmacSha1Hex":
        return hmac.new(args[1].encode(), args[0].encode(), hashlib.sha1).hexdigest()
    if function == "awsSigV4":
        return _aws_sigv4(args, scope.now, scope.request or {})
    try:
        if function == "ed25519Sign":
            return _ed25519_sign(args[0], args[1])
        return _fingerprint(args[0])
    except (ValueError, TypeError):
        # Named by the variables the key came from: the key itself is never quoted.
        key_names = _names_in(node.args[-1]) or [function]
        raise UnsafeParamError(", ".join(key_names), f"is not a private key {function}() can use") from None


def _evaluate(nodes: Sequence[_Node], scope: Scope, *, top: bool, control: bool = False) -> str:
    pieces: list[str] = []
    missing: list[str] = []
    for node in nodes:
        if isinstance(node, _Text):
            pieces.append(node.text)
            continue
        try:
            if isinstance(node, _Var):
                text = _variable(node.name, scope)
                if top and control and _CONTROL.search(text):
                    bare = node.name.removeprefix(_CONFIG_PREFIX)
                    raise UnsafeParamError(bare, "contains a line break or another control character")
            else:
                text = _call(node, scope)
        except MissingParamError as exc:
            missing.extend(exc.names)
            continue
        pieces.append(text)
    if missing:
        raise MissingParamError(list(dict.fromkeys(missing)))
    return "".join(pieces)


def expand(text: str, scope: Scope, *, header: bool = False, fallbacks: bool = True) -> str:
    """``text`` evaluated in ``scope``. Of ``A || B`` the first alternative with every value it
    needs is the one evaluated (a value that is there but does not fit is refused, never replaced by
    the fallback); when none has them all, the last one's missing names are the error.

    ``header``: a value put as it is into the text may not hold a line break or another control
    character (it would split the header); a function's argument may (Duo signs lines).
    ``fallbacks=False``: ``||`` is text, as in a JWT declaration (Heymarket's key is ``id||secret``).
    """
    options = alternatives(text) if fallbacks else [text]
    for index, option in enumerate(options):
        try:
            nodes = parse(option)
        except ExpressionSyntaxError as exc:
            raise UnsafeParamError("template", f"cannot be evaluated: {exc}") from None
        try:
            return _evaluate(nodes, scope, top=True, control=header)
        except MissingParamError:
            if index == len(options) - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover - alternatives() is never empty
