"""Refusing a query string as Nango's current API does: a 400 whose ``errors`` list each problem.

Nango validates its current routes' query strings with strict zod schemas, and answers a refusal with
``{"error": {"code": "invalid_query_params", "errors": [{"code", "message", "path"}]}}`` (the code is
``invalid_uri_params`` for a path parameter). The issue codes and messages here are zod 4's, the
version Nango's server runs, so a client that shows or matches them sees what it would see there.

Express reads ``?a=1&a=2`` as an array; a repeated key is refused here the way zod refuses that array.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

from multidict import MultiMapping

from .errors import ApiError

__all__ = ["Issue", "check_string", "invalid_params", "single_values", "unrecognized_keys"]

Issue = dict[str, Any]


def unrecognized_keys(query: MultiMapping[str], allowed: Collection[str]) -> list[Issue]:
    """One issue naming every key the schema does not know (zod's ``.strict()``)."""
    unknown = list(dict.fromkeys(key for key in query if key not in allowed))
    if not unknown:
        return []
    names = ", ".join(f'"{key}"' for key in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return [{"code": "unrecognized_keys", "message": f"Unrecognized key{plural}: {names}", "path": []}]


def single_values(query: MultiMapping[str], names: Collection[str]) -> tuple[dict[str, str], list[Issue]]:
    """The values of ``names`` given once each, and an issue for each one given more than once."""
    values: dict[str, str] = {}
    issues: list[Issue] = []
    for name in names:
        given = query.getall(name, [])
        if len(given) == 1:
            values[name] = given[0]
        elif len(given) > 1:
            issues.append(
                {"code": "invalid_type", "message": "Invalid input: expected string, received array", "path": [name]}
            )
    return values, issues


def check_string(value: str, path: Sequence[str], *, pattern: re.Pattern[str], max_length: int) -> list[Issue]:
    """A string checked against ``pattern`` (matched whole) and a length, both reported when both fail."""
    issues: list[Issue] = []
    if not pattern.fullmatch(value):
        issues.append(
            {
                "code": "invalid_format",
                "message": f"Invalid string: must match pattern /^{pattern.pattern}$/",
                "path": list(path),
            }
        )
    if len(value) > max_length:
        issues.append(
            {
                "code": "too_big",
                "message": f"Too big: expected string to have <={max_length} characters",
                "path": list(path),
            }
        )
    return issues


def invalid_params(issues: list[Issue], *, code: str = "invalid_query_params") -> ApiError:
    """The 400 for ``issues``; ``code`` is ``invalid_uri_params`` for a path parameter, as in Nango."""
    return ApiError(code, "; ".join(issue["message"] for issue in issues), status=400, errors=issues)
