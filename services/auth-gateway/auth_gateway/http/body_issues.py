"""Refusing a JSON body as Nango's current API does: zod 4's issues, one per problem, in zod's order.

Nango validates its current routes' bodies with zod schemas and answers ``{"error": {"code":
"invalid_body", "errors": [{"code", "message", "path"}]}}``. A schema checks its fields in the order it
declares them, each string check in its declared order, and a strict object lists the keys it does not
know last; the helpers here report the same issues with zod 4's codes and English messages, so a client
that shows or matches them sees what it would see there (``query_issues.py`` does the query string).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from .query_issues import Issue

__all__ = [
    "MISSING",
    "StringCheck",
    "check_boolean",
    "check_string",
    "check_string_record",
    "ends_with",
    "invalid_type",
    "matches",
    "max_length",
    "min_length",
    "starts_with",
    "unknown_fields",
]

MISSING: Any = object()  # a field the body does not have (JavaScript's undefined)

Path = Sequence[str]
# One check of a string: None when it holds, else its issue's (code, message).
StringCheck = Callable[[str], tuple[str, str] | None]


def received(value: Any) -> str:
    """What zod names a JSON value in "expected …, received …"."""
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def invalid_type(expected: str, value: Any, path: Path, message: str | None = None) -> Issue:
    text = message or f"Invalid input: expected {expected}, received {received(value)}"
    return {"code": "invalid_type", "message": text, "path": list(path)}


def min_length(minimum: int) -> StringCheck:
    def check(value: str) -> tuple[str, str] | None:
        if len(value) >= minimum:
            return None
        return "too_small", f"Too small: expected string to have >={minimum} characters"

    return check


def max_length(maximum: int) -> StringCheck:
    def check(value: str) -> tuple[str, str] | None:
        if len(value) <= maximum:
            return None
        return "too_big", f"Too big: expected string to have <={maximum} characters"

    return check


def matches(pattern: re.Pattern[str]) -> StringCheck:
    """The whole string matches ``pattern`` (written without anchors; zod shows it with them)."""

    def check(value: str) -> tuple[str, str] | None:
        if pattern.fullmatch(value):
            return None
        return "invalid_format", f"Invalid string: must match pattern /^{pattern.pattern}$/"

    return check


def starts_with(prefix: str) -> StringCheck:
    def check(value: str) -> tuple[str, str] | None:
        return None if value.startswith(prefix) else ("invalid_format", f'Invalid string: must start with "{prefix}"')

    return check


def ends_with(suffix: str) -> StringCheck:
    def check(value: str) -> tuple[str, str] | None:
        return None if value.endswith(suffix) else ("invalid_format", f'Invalid string: must end with "{suffix}"')

    return check


def check_string(value: Any, path: Path, *checks: StringCheck, optional: bool = False) -> list[Issue]:
    """A string field: its type, then every check that fails (zod runs them all)."""
    if value is MISSING and optional:
        return []
    if not isinstance(value, str):
        return [invalid_type("string", value, path)]
    failed = (check(value) for check in checks)
    return [{"code": code, "message": message, "path": list(path)} for code, message in filter(None, failed)]


def check_boolean(value: Any, path: Path, *, optional: bool = False) -> list[Issue]:
    if (value is MISSING and optional) or isinstance(value, bool):
        return []
    return [invalid_type("boolean", value, path)]


def check_string_record(value: Any, path: Path, *checks: StringCheck, optional: bool = False) -> list[Issue]:
    """An object whose every value is a string (``z.record(z.string(), z.string()…)``)."""
    if value is MISSING and optional:
        return []
    if not isinstance(value, dict):
        return [invalid_type("record", value, path)]
    issues: list[Issue] = []
    for key, item in value.items():
        issues += check_string(item, [*path, key], *checks)
    return issues


def unknown_fields(body: Mapping[str, Any], allowed: Collection[str], path: Path = ()) -> list[Issue]:
    """One issue naming every key a strict object does not know, at the object's path."""
    unknown = [key for key in body if key not in allowed]
    if not unknown:
        return []
    names = ", ".join(f'"{key}"' for key in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return [{"code": "unrecognized_keys", "message": f"Unrecognized key{plural}: {names}", "path": list(path)}]
