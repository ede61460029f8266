"""Filling template URLs and header values so that no configuration value can change where a request goes.

Connection configuration comes from whoever connected, often a browser holding only the public key,
and it fills URLs that then receive the integration's client secret, a user's tokens, or the app's
proxied data. So every value must fit the place its placeholder holds:

- a value must match the ``pattern`` the catalog declares for its ``connection_config`` field;
- in the host: a DNS name (letters, digits, ``-``; ``.`` only between labels);
- in the port: a port number; in the path: one segment (``A-Z a-z 0-9 . _ ~ -``, no ``..``);
- in the query: anything, percent-encoded; in the scheme, userinfo or fragment: nothing.

The result is then checked against the template itself: same scheme, no userinfo, the template's
literal host parts around the placeholders (``x.zendesk.com`` stays under ``.zendesk.com``), the
template's port, its path segments. Both checks are kept on purpose: the first gives a clear
message, the second holds even if a catalog pattern is too lax.

One exception, deliberate: a placeholder that is a whole origin (``${connectionConfig.instance_url}``
as Salesforce, Pipedrive and Gong templates write it) may be filled only from a field the provider's
own token response fills (``token_response_metadata``), only when rendering for a stored connection
(the OAuth flow keeps a browser's value for such a field out of what it stores), and only with an
``https`` origin without userinfo, port, path, query or fragment. A template that is a scheme
and one placeholder (``https://${connectionConfig.bundleAlias}``) takes a host and path segments.

A template may offer fallbacks, ``A || B`` (Nango: ``https://${connectionConfig.hostname} ||
https://login.salesforce.com``, ``${connectionConfig.version} || 2022-11-28``): the first
alternative whose placeholders all have a value is the one rendered, every check above included
(a value that is there but does not fit is refused, never silently replaced by the fallback); when
none has all its values, the last one's missing names are the error.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from .expressions import Scope, expand
from .interpolation import (
    PLACEHOLDER,
    MissingParamError,
    UnsafeParamError,
    check_pattern,
    chosen_alternative,
    param_text,
)

__all__ = ["render_header", "render_url"]

Place = Literal["scheme", "userinfo", "host", "port", "path", "query", "fragment"]

_SLOT = "kwslot{}q"  # stands in for a placeholder while the template's structure is parsed
_SLOT_RE = re.compile(r"kwslot(\d+)q")
_HOST_VALUE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PATH_VALUE = re.compile(r"[A-Za-z0-9._~-]+")
_PORT_VALUE = re.compile(r"[0-9]{1,5}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A template that is a scheme and one placeholder, whose value may then be a host and a path.
_HOST_AND_PATH = re.compile(r"(https?)://" + PLACEHOLDER.pattern + "/?")
_WHY: dict[Place, str] = {
    "host": "must be a host name (letters, digits and '-', with '.' only between labels)",
    "port": "must be a port number",
    "path": "must be a single path segment (letters, digits, '.', '_', '~' or '-', and not '..')",
    "scheme": "cannot choose the URL's scheme",
    "userinfo": "cannot go into the URL's user information",
    "fragment": "cannot go into the URL's fragment",
    "query": "",
}


@dataclass(frozen=True)
class _Split:
    scheme: str
    userinfo: str | None
    host: str
    port: str
    path: str
    query: str
    fragment: str


def _split(url: str) -> _Split:
    parts = urlsplit(url)  # ValueError for what no URL can be (an unclosed IPv6 bracket)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):
        host, _, rest = hostport.partition("]")
        host, port = host + "]", rest.removeprefix(":")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return _Split(parts.scheme, userinfo if at else None, host, port, parts.path, parts.query, parts.fragment)


def _place(split: _Split, slot: str) -> Place:
    if slot in split.scheme:
        return "scheme"
    if split.userinfo is not None and slot in split.userinfo:
        return "userinfo"
    for place, text in (("host", split.host), ("port", split.port), ("path", split.path), ("query", split.query)):
        if slot in text:
            return place  # type: ignore[return-value]
    return "fragment"


def _fit(name: str, text: str, place: Place) -> str:
    """The text that goes into the URL for ``text`` at ``place``, or UnsafeParamError."""
    if place == "query":
        return quote(text, safe="")
    fits = {
        "host": _HOST_VALUE.fullmatch(text) is not None,
        "port": _PORT_VALUE.fullmatch(text) is not None and 0 < int(text) < 65536,
        "path": _PATH_VALUE.fullmatch(text) is not None and ".." not in text and text != ".",
    }.get(place, False)
    if not fits:
        raise UnsafeParamError(name, _WHY[place])
    return text


def _template_pattern(text: str, value_pattern: str) -> re.Pattern[str]:
    """``text`` (with slots) as a regular expression: literals as they are, slots as ``value_pattern``."""
    pieces = _SLOT_RE.split(text)
    return re.compile(value_pattern.join(re.escape(piece) for piece in pieces[0::2]), re.IGNORECASE)


def _is_hostname(host: str) -> bool:
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


def _check_result(name: str, result: str, template: _Split, slots: Mapping[Place, bool]) -> None:
    """The rendered URL is still the template's: scheme, userinfo, host around the slots, port, path."""
    try:
        got = _split(result)
    except ValueError:
        raise UnsafeParamError(name, "makes the URL unreadable") from None
    if got.scheme.lower() != template.scheme.lower() or got.userinfo != template.userinfo:
        raise UnsafeParamError(name, "changes the URL's scheme or adds user information")
    if slots.get("host"):
        host = _template_pattern(template.host, _HOST_VALUE.pattern)
        if not host.fullmatch(got.host) or not _is_hostname(got.host):
            raise UnsafeParamError(name, "makes an invalid host name or moves the URL to another host")
    elif got.host.lower() != template.host.lower():
        raise UnsafeParamError(name, "moves the URL to another host")
    if not slots.get("port") and got.port != template.port:
        raise UnsafeParamError(name, "changes the URL's port")
    if slots.get("path"):
        path = _template_pattern(template.path, _PATH_VALUE.pattern)
        template_segments = set(template.path.split("/"))
        dots = [s for s in got.path.split("/") if s in {".", ".."} and s not in template_segments]
        if not path.fullmatch(got.path) or dots:
            raise UnsafeParamError(name, "changes the URL's path structure")
    elif got.path != template.path:
        raise UnsafeParamError(name, "changes the URL's path")
    if got.fragment != template.fragment:
        raise UnsafeParamError(name, "adds a fragment to the URL")


def _host_and_path(scheme: str, name: str, text: str, patterns: Mapping[str, str]) -> str:
    """``https://${x}`` filled with a host and a path (Nango's Freshsales bundle alias is
    ``acme.myfreshworks.com/crm/sales``): the host is held to a host name, each segment to a path
    segment, as they would be in their own placeholders."""
    check_pattern(name, text, patterns)
    host, _, path = text.partition("/")
    if _HOST_VALUE.fullmatch(host) is None or not _is_hostname(host):
        raise UnsafeParamError(name, _WHY["host"])
    segments = path.removesuffix("/").split("/") if path.removesuffix("/") else []
    if not all(_PATH_VALUE.fullmatch(s) and s not in {".", ".."} for s in segments):
        raise UnsafeParamError(name, "must be a host name, then path segments (letters, digits, '.', '_', '~', '-')")
    return f"{scheme}://{host}/{path}"


def _origin(name: str, value: Any, origin_fields: Collection[str]) -> str:
    """A whole-origin placeholder's value; see the module docstring for why only these pass."""
    text = param_text(value)
    if text is None:
        raise MissingParamError([name])
    if name not in origin_fields:
        raise UnsafeParamError(name, "cannot name a whole origin: only the provider's token response can")
    try:
        parts = _split(text)
    except ValueError:
        raise UnsafeParamError(name, "is not an https origin") from None
    if (
        parts.scheme != "https"
        or parts.userinfo is not None
        or parts.port
        or parts.path not in {"", "/"}
        or parts.query
        or parts.fragment
        or not _is_hostname(parts.host)
        or _CONTROL.search(text)
    ):
        raise UnsafeParamError(name, "is not an https origin (no user information, port, path or query)")
    return f"https://{parts.host}"


def render_url(
    template_url: str,
    values: Mapping[str, Any],
    *,
    patterns: Mapping[str, str] | None = None,
    origin_fields: Collection[str] = (),
) -> str:
    """``template_url`` with its placeholders filled from ``values``, or a TemplateParamError.

    ``patterns`` are the catalog's declared patterns by field; ``origin_fields`` the fields that may
    fill a whole-origin placeholder (empty unless rendering for a stored connection). Of ``A || B``
    the first alternative with all its values is rendered (see the module docstring).
    """
    return _render_one_url(chosen_alternative(template_url, values), values, patterns or {}, origin_fields)


def _render_one_url(
    template_url: str, values: Mapping[str, Any], patterns: Mapping[str, str], origin_fields: Collection[str]
) -> str:
    whole = _HOST_AND_PATH.fullmatch(template_url)
    if whole is not None and "/" in (param_text(values.get(whole.group(2))) or ""):
        return _host_and_path(whole.group(1), whole.group(2), str(param_text(values.get(whole.group(2)))), patterns)
    leading = PLACEHOLDER.match(template_url)
    if leading is not None and template_url[leading.end() :][:1] in {"", "/"}:
        name = leading.group(1)
        template_url = _origin(name, values.get(name), origin_fields) + template_url[leading.end() :]
    matches = list(PLACEHOLDER.finditer(template_url))
    if not matches:
        return template_url
    missing = [m.group(1) for m in matches if param_text(values.get(m.group(1))) is None]
    if missing:
        raise MissingParamError(list(dict.fromkeys(missing)))
    counter = iter(range(len(matches)))
    slotted = PLACEHOLDER.sub(lambda _match: _SLOT.format(next(counter)), template_url)
    try:
        shape = _split(slotted)
    except ValueError:
        raise UnsafeParamError(matches[0].group(1), "sits in a template URL that cannot be read") from None
    slots: dict[Place, bool] = {}
    fitted: list[str] = []
    for index, match in enumerate(matches):
        name = match.group(1)
        text = str(param_text(values.get(name)))
        check_pattern(name, text, patterns)
        place = _place(shape, _SLOT.format(index))
        slots[place] = True
        fitted.append(_fit(name, text, place))
    result = _SLOT_RE.sub(lambda m: fitted[int(m.group(1))], slotted)
    _check_result(", ".join(dict.fromkeys(m.group(1) for m in matches)), result, shape, slots)
    return result


def render_header(text: str, values: Mapping[str, Any] | Scope, *, patterns: Mapping[str, str] | None = None) -> str:
    """A header value evaluated as Nango evaluates one (:mod:`.expressions`: variables, ``now``,
    ``random``, ``base64(...)`` and the other functions). A value put as it is into the header with a
    line break or another control character is refused (it would split the header, and aiohttp fails
    on it mid-request). ``values``: the flat values, or a whole :class:`Scope` (one request's clock,
    random value, request facts and separate connection configuration)."""
    if isinstance(values, Scope):
        scope = values if patterns is None else replace(values, patterns=patterns)
    else:
        scope = Scope(values=values, patterns=patterns or {})
    return expand(text, scope, header=True)
