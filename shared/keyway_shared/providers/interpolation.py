"""``${connectionConfig.x}`` in template URLs, filled from the connection configuration (spec §5.3)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MissingParamError", "interpolate", "origin_and_path"]

_PLACEHOLDER = re.compile(r"\$\{(?:connectionConfig\.)?([A-Za-z0-9_.-]+)\}")


class MissingParamError(ValueError):
    """A template URL needs a connection-configuration value the request did not give."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def interpolate(template: str, values: Mapping[str, Any]) -> str:
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            missing.append(match.group(1))
            return match.group(0)
        return str(value)

    result = _PLACEHOLDER.sub(replace, template)
    if missing:
        raise MissingParamError(missing)
    return result


def origin_and_path(url: str) -> str:
    """Only scheme, host and path of a template URL are used (its query string is dropped)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
