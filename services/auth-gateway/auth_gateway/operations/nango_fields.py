"""Field types of Nango's current API that both the backend routes and the connect sessions take:
integration keys and connection ids (Nango's ``helpers/validation.ts`` patterns), an end user's
email and tags, a connection's tags and a webhook URL override, each refused with Nango's message.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from .connection_tags import EMAIL, lowercased, tag_problems

__all__ = [
    "ConnectionId",
    "ConnectionTags",
    "Email",
    "EndUserTags",
    "IntegrationKey",
    "WebhookUrl",
    "is_http_url",
]

IntegrationKey = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9~:.@ _-]+$", max_length=255)]
ConnectionId = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9,.;:=+~\[\]|@${}\"'\\/_ -]+$", max_length=255)]


def is_http_url(url: str) -> bool:
    """An http(s) URL with a host, at most 2048 characters (Nango's ``z.url()`` as its routes use it)."""
    scheme, sep, rest = url.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https") and bool(rest.split("/", 1)[0]) and len(url) <= 2048


def _email(value: str) -> str:
    if len(value) < 5 or not EMAIL.fullmatch(value):
        raise ValueError("Invalid email address")
    return value


def _end_user_tags(tags: dict[str, str]) -> dict[str, str]:
    if problems := tag_problems(tags, empty_values=True):
        raise ValueError("; ".join(problems))
    return tags


def _connection_tags(tags: dict[str, str]) -> dict[str, str]:
    if problems := tag_problems(tags):
        raise ValueError("; ".join(problems))
    return lowercased(tags)


def _webhook_url(url: str) -> str:
    """An http(s) URL, or ``""`` (none): Nango's ``z.url()`` or the empty literal."""
    if url and not is_http_url(url):
        raise ValueError("Invalid URL: an http or https URL, or an empty string for none")
    return url


Email = Annotated[str, AfterValidator(_email)]
EndUserTags = Annotated[dict[str, Annotated[str, StringConstraints(max_length=255)]], AfterValidator(_end_user_tags)]
ConnectionTags = Annotated[dict[str, str], AfterValidator(_connection_tags)]
WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]
