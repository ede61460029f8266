"""``${connectionConfig.x}`` in template strings, filled from the connection configuration (spec §5.3).
A template may offer fallbacks, ``A || B``: the first alternative with all its values is filled.

:func:`interpolate` is the bare substitution; URLs and header values go through
:mod:`keyway_shared.providers.rendering`, which refuses values that would change where a request
goes. Header values, proxy query values and token parameters are Nango expressions
(``${base64(...)}``, ``${now:...}``, ``${credentials.x}``), evaluated by
:mod:`keyway_shared.providers.expressions`. Why a template string could not be filled:

    TemplateParamError
    ├── MissingParamError   a value the template needs was not given
    └── UnsafeParamError    a value would change the URL's scheme, host, port or path structure,
                            does not match the catalog's pattern, or would break a header
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "PLACEHOLDER",
    "MissingParamError",
    "TemplateParamError",
    "UnsafeParamError",
    "alternatives",
    "check_pattern",
    "chosen_alternative",
    "interpolate",
    "origin_and_path",
    "param_text",
]

PLACEHOLDER = re.compile(r"\$\{(?:connectionConfig\.)?([A-Za-z0-9_.-]+)\}")


class TemplateParamError(ValueError):
    """A template string cannot be filled from the values given; ``names`` are the culprits."""

    def __init__(self, names: list[str], message: str) -> None:
        super().__init__(message)
        self.names = names


class MissingParamError(TemplateParamError):
    """A template URL needs a connection-configuration value the request did not give."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(names, ", ".join(names))


class UnsafeParamError(TemplateParamError):
    """A value may not go where the template puts it. ``reason`` is for people and never quotes the
    value itself (it came from a browser, and may be made to look like anything)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__([name], f"{name} {reason}")
        self.name = name
        self.reason = reason


def param_text(value: Any) -> str | None:
    """The text a configuration value stands for in a template; None when it cannot stand for one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        return None
    return str(value)


def alternatives(template: str) -> list[str]:
    """``A || B`` as ``["A", "B"]`` (each trimmed, as Nango splits them); a plain template as itself."""
    if "||" not in template:
        return [template]
    return [part.strip() for part in template.split("||")]


def chosen_alternative(template: str, values: Mapping[str, Any]) -> str:
    """The first alternative of ``A || B`` whose placeholders all have a value, else the last one
    (whose rendering then names what is missing). Nango's ``interpolateIfNeeded`` takes the left
    side when interpolating changed it; requiring every value of it keeps a half-filled URL out."""
    options = alternatives(template)
    for option in options[:-1]:
        if all(param_text(values.get(name)) is not None for name in PLACEHOLDER.findall(option)):
            return option
    return options[-1]


def check_pattern(name: str, text: str, patterns: Mapping[str, str]) -> None:
    """UnsafeParamError unless ``text`` matches the pattern the catalog declares for ``name`` (if any)."""
    pattern = patterns.get(name)
    if not pattern:
        return
    try:
        matched = re.search(pattern, text) is not None
    except re.error:
        matched = False  # a catalog pattern Python cannot read guards nothing: refuse rather than pass
    if not matched:
        raise UnsafeParamError(name, f"does not match the pattern the provider declares ({pattern})")


def interpolate(template: str, values: Mapping[str, Any], *, patterns: Mapping[str, str] | None = None) -> str:
    """Bare substitution, for text that is encoded afterwards (proxy query values, authorization
    parameters). Not for URLs. ``patterns``: the catalog's declared patterns by field."""
    template = chosen_alternative(template, values)
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        text = param_text(values.get(match.group(1)))
        if text is None:
            missing.append(match.group(1))
            return match.group(0)
        check_pattern(match.group(1), text, patterns or {})
        return text

    result = PLACEHOLDER.sub(replace, template)
    if missing:
        raise MissingParamError(missing)
    return result


def origin_and_path(url: str) -> str:
    """Only scheme, host and path of a template URL are used (its query string is dropped)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
