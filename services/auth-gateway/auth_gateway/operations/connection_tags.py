"""Connection tags as Nango's current API has them: a flat ``{key: value}`` of strings for filtering
and labelling a connection, and the tags a connect session derives from its end user.

Nango's rules (its ``tags/schema.ts``): at most 10 keys; a key starts with a letter, then letters,
digits, ``_ - . /``, at most 64 characters; a value is 1 to 255 characters; keys are compared and
stored lowercased (two keys equal but for case are refused); an ``end_user_email`` tag must be an
email. End-user tags (``end_user.tags``) follow the same rules but keep their keys as given and may
have empty values.

A session's connection tags are its end user's fields (``end_user_id``, ``end_user_email``,
``end_user_display_name``, ``organization_id``, ``organization_display_name``), then its end user's
own tags, then the session's top-level ``tags``, each winning over the one before (Nango's
``buildTagsFromEndUser``, merged with the body's tags in ``createConnectSession``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "EMAIL",
    "TAG_MAX_COUNT",
    "end_user_tags",
    "lowercased",
    "tag_problems",
]

TAG_MAX_COUNT = 10
TAG_KEY_MAX_LENGTH = 64
TAG_VALUE_MAX_LENGTH = 255
_TAG_KEY = re.compile(r"[a-zA-Z][a-zA-Z0-9_\-./]*")
# zod 4's email pattern, which Nango's `z.string().email()` checks against.
EMAIL = re.compile(r"(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}")


def _is_email(value: str) -> bool:
    return len(value) >= 5 and EMAIL.fullmatch(value) is not None


def _key_problem(key: str) -> str | None:
    if not _TAG_KEY.fullmatch(key):
        return (
            f"Tag key '{key}': tag keys must start with a letter and contain only alphanumerics, "
            "underscores, hyphens, periods, or slashes"
        )
    if len(key) > TAG_KEY_MAX_LENGTH:
        return f"Tag key '{key}': tag keys must be at most {TAG_KEY_MAX_LENGTH} characters"
    return None


def tag_problems(tags: Mapping[str, str], *, empty_values: bool = False) -> list[str]:
    """What is wrong with ``tags`` by Nango's rules (``empty_values``: an end user's tags may have them)."""
    problems = [p for p in map(_key_problem, tags) if p is not None]
    for key, value in tags.items():
        if (not value and not empty_values) or len(value) > TAG_VALUE_MAX_LENGTH:
            problems.append(f"Tag '{key}': tag values must be 1 to {TAG_VALUE_MAX_LENGTH} characters")
    if len(tags) > TAG_MAX_COUNT:
        return [*problems, f"Tags cannot contain more than {TAG_MAX_COUNT} keys"]
    seen: set[str] = set()
    for key, value in tags.items():
        normalized = key.lower()
        if normalized in seen:
            problems.append(f'Duplicate tag key after case normalization: "{normalized}"')
        seen.add(normalized)
        if normalized == "end_user_email" and not _is_email(value):
            problems.append('Tag "end_user_email" must be a valid email')
    return problems


def lowercased(tags: Mapping[str, str]) -> dict[str, str]:
    """Keys lowercased, values as given (they may be case-sensitive ids)."""
    return {key.lower(): value for key, value in tags.items()}


def end_user_tags(end_user: Mapping[str, Any] | None, organization: Mapping[str, Any] | None) -> dict[str, str]:
    """The tags a connection gets from its end user and organization (before the session's own tags).

    Nango makes this a best effort: values are cut to 255 characters, an end-user tag whose key cannot
    be a tag is skipped, and when the end user's own tags would take the total past 10 keys they are
    all left out.
    """
    base: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, str) and value:
            base[key] = value[:TAG_VALUE_MAX_LENGTH]

    if end_user:
        put("end_user_id", end_user.get("id"))
        put("end_user_email", end_user.get("email"))
        put("end_user_display_name", end_user.get("display_name"))
    if organization:
        put("organization_id", organization.get("id"))
        put("organization_display_name", organization.get("display_name"))
    own: dict[str, str] = {}
    for key, value in ((end_user or {}).get("tags") or {}).items():
        cut = key.lower()[:TAG_KEY_MAX_LENGTH]
        if isinstance(value, str) and _key_problem(cut) is None:
            own[cut] = value[:TAG_VALUE_MAX_LENGTH]
    merged = {**base, **own}
    if len(merged) > TAG_MAX_COUNT:
        merged = base
    if not tag_problems(merged):
        return merged
    return base if not tag_problems(base) else {}
