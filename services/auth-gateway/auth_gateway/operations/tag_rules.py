"""Nango's rules for connection tags, as the ``/connections`` routes check them.

From Nango's ``shared/lib/services/tags/schema.ts`` and ``endUser.service.ts`` (``buildTagsFromEndUser``):

- at most 10 keys; a key starts with a letter, then letters, digits and ``_ - . /``, at most 64
  characters; a value has 1 to 255 characters (an end user's own tags may have empty values);
- keys are compared and kept lowercased (two keys equal but for case are refused), values as given;
- an ``end_user_email`` tag is an email;
- the tags an end user gives a connection: ``end_user_id``, ``end_user_email``,
  ``end_user_display_name`` (then ``organization_id``, ``organization_display_name``), then the end
  user's own tags, keys lowercased; a best effort: values cut to 255 characters, an own tag whose key
  cannot be a tag skipped, and the own tags all left out when they would take the total past 10.

(The connect sessions check the same rules in ``connection_tags.py``; this module keeps the
connections routes free of that work in progress and can fold into it.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["EMAIL", "MAX_TAGS", "derived_tags", "lowercased", "problems_of"]

MAX_TAGS = 10
_KEY = re.compile(r"[a-zA-Z][a-zA-Z0-9_\-./]*")
_KEY_MAX = 64
_VALUE_MAX = 255
# zod 4's email pattern (Nango's ``z.string().email()``), at least 5 characters.
EMAIL = re.compile(r"(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}")


def _bad_key(key: str) -> str | None:
    if not _KEY.fullmatch(key):
        return (
            f"Tag key '{key}': tag keys must start with a letter and contain only alphanumerics, "
            "underscores, hyphens, periods, or slashes"
        )
    if len(key) > _KEY_MAX:
        return f"Tag key '{key}': tag keys must be at most {_KEY_MAX} characters"
    return None


def problems_of(tags: Mapping[str, str], *, empty_values: bool = False) -> list[str]:
    """Every rule ``tags`` breaks (``empty_values``: an end user's own tags may have them)."""
    found = [problem for problem in map(_bad_key, tags) if problem]
    for key, value in tags.items():
        if len(value) > _VALUE_MAX or (not value and not empty_values):
            found.append(f"Tag '{key}': tag values must be 1 to {_VALUE_MAX} characters")
    if len(tags) > MAX_TAGS:
        found.append(f"Tags cannot contain more than {MAX_TAGS} keys")
        return found
    lowered = [key.lower() for key in tags]
    found += [f'Duplicate tag key after case normalization: "{k}"' for i, k in enumerate(lowered) if k in lowered[:i]]
    for key, value in tags.items():
        if key.lower() == "end_user_email" and (len(value) < 5 or not EMAIL.fullmatch(value)):
            found.append('Tag "end_user_email" must be a valid email')
    return found


def lowercased(tags: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in tags.items()}


def derived_tags(end_user: Mapping[str, Any] | None, organization: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The tags a connection gets from its end user (and organization), before tags of its own."""
    base: dict[str, str] = {}
    fields = (
        (end_user, "end_user_id", "id"),
        (end_user, "end_user_email", "email"),
        (end_user, "end_user_display_name", "display_name"),
        (organization, "organization_id", "id"),
        (organization, "organization_display_name", "display_name"),
    )
    for source, tag, name in fields:
        value = (source or {}).get(name)
        if isinstance(value, str) and value:
            base[tag] = value[:_VALUE_MAX]
    own: dict[str, str] = {}
    for key, value in ((end_user or {}).get("tags") or {}).items():
        cut = key.lower()[:_KEY_MAX]
        if isinstance(value, str) and _bad_key(cut) is None:
            own[cut] = value[:_VALUE_MAX]
    merged = {**base, **own}
    if len(merged) > MAX_TAGS:
        merged = base
    if not problems_of(merged):
        return merged
    return base if not problems_of(base) else {}
