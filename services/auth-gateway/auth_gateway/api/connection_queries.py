"""The query strings and path of the current ``/connections`` routes, checked as strictly as Nango does.

Nango's controllers (``controllers/connection/getConnections.ts``, ``connectionId/getConnection.ts``,
``patchConnection.ts``, ``deleteConnection.ts``) validate with strict zod schemas: an unknown
parameter is refused, and so is a value outside its pattern or bounds (``http/query_issues.py`` has
the envelope). What they accept:

- ``GET /connections``: ``connectionId``, ``search`` (1 to 255 characters), ``endUserId``,
  ``endUserOrganizationId`` (1 to 255), ``integrationId`` (comma-separated keys), ``tags`` in the
  bracket form Express reads (``tags[key]=value``, what ``@nangohq/node`` sends), ``limit`` (1 to
  2000; 10,000 when not given), ``page`` (from 0).
- ``GET /connections/{id}``: ``provider_config_key`` (required) and the flags ``force_refresh``,
  ``refresh_token``, ``refresh_github_app_jwt_token`` (zod's ``stringbool``: ``true``/``false``,
  ``1``/``0``, ``yes``/``no``, ``on``/``off``, ``y``/``n``, ``enabled``/``disabled``, case aside).
- ``PATCH`` and ``DELETE /connections/{id}``: ``provider_config_key`` only (Keyway adds ``revoke``
  to ``DELETE``: revoking at the provider is opt-in, see ``operations/connection_removal.py``).

Tag keys are lowercased, as Nango stores and compares them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection

from aiohttp import web

from keyway_shared.store.connection_labels import ConnectionListQuery

from ..http.query_issues import Issue, check_string, invalid_params, single_values, unrecognized_keys
from ..operations.connection_tags import lowercased, tag_problems

__all__ = [
    "CONNECTION_ID",
    "DEFAULT_LIMIT",
    "GET_FLAGS",
    "MAX_LIMIT",
    "PROVIDER_CONFIG_KEY",
    "connection_id_of",
    "key_and_flags",
    "list_query",
]

# Nango's helpers/validation.ts: connectionIdSchema and providerConfigKeySchema, each at most 255.
CONNECTION_ID = re.compile(r"[a-zA-Z0-9,.;:=+~\[\]|@${}\"'\\/_ -]+")
PROVIDER_CONFIG_KEY = re.compile(r"[a-zA-Z0-9~:.@ _-]+")
MAX_LENGTH = 255
MAX_LIMIT = 2000
DEFAULT_LIMIT = 10_000  # Nango's, "to avoid breaking changes"
# Past this offset no environment has connections; answering empty spares the database a huge skip.
_FURTHEST_OFFSET = 10**12

# GET /connections/{id}'s flags, with what each does when true.
GET_FLAGS = {
    "force_refresh": "refresh the credentials now",
    "refresh_token": "include the refresh token",
    "refresh_github_app_jwt_token": "mint a GitHub App connection's token now",
}
_LIST_PARAMS = ("connectionId", "search", "endUserId", "integrationId", "endUserOrganizationId", "limit", "page")
_TAG = re.compile(r"tags\[([^\[\]]*)\]")
_TRUE = {"true", "1", "yes", "on", "y", "enabled"}
_FALSE = {"false", "0", "no", "off", "n", "disabled"}


def _missing(path: str) -> Issue:
    return {"code": "invalid_type", "message": "Invalid input: expected string, received undefined", "path": [path]}


def _bounded(value: str, path: str, *, max_length: int | None = MAX_LENGTH) -> list[Issue]:
    issues: list[Issue] = []
    if not value:
        issues.append(
            {"code": "too_small", "message": "Too small: expected string to have >=1 characters", "path": [path]}
        )
    if max_length is not None and len(value) > max_length:
        issues.append(
            {
                "code": "too_big",
                "message": f"Too big: expected string to have <={max_length} characters",
                "path": [path],
            }
        )
    return issues


def _number(value: str, path: str, *, minimum: int, maximum: int | None) -> tuple[int | None, list[Issue]]:
    """zod's ``coerce.number()`` with bounds; Keyway also wants a whole number (a page, a count)."""
    try:
        number = float(value.strip()) if value.strip() else 0.0
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        got = "NaN" if math.isnan(number) else "a fraction" if math.isfinite(number) else "Infinity"
        return None, [
            {"code": "invalid_type", "message": f"Invalid input: expected int, received {got}", "path": [path]}
        ]
    if number < minimum:
        return None, [{"code": "too_small", "message": f"Too small: expected number to be >={minimum}", "path": [path]}]
    if maximum is not None and number > maximum:
        return None, [{"code": "too_big", "message": f"Too big: expected number to be <={maximum}", "path": [path]}]
    return int(number), []


def _is_tag_key(name: str) -> bool:
    return name == "tags" or name.startswith("tags[")


def _tags(request: web.Request) -> tuple[dict[str, str], list[Issue]]:
    """``tags[key]=value`` pairs (Express's bracket form); a bare or nested ``tags`` is refused."""
    tags: dict[str, str] = {}
    issues: list[Issue] = []
    for name in dict.fromkeys(k for k in request.query if _is_tag_key(k)):
        match = _TAG.fullmatch(name)
        values = request.query.getall(name)
        if match is None or len(values) > 1:
            issues.append(
                {
                    "code": "invalid_type",
                    "message": "Invalid input: expected record, received string"
                    if name == "tags"
                    else "Invalid input: expected string, received object",
                    "path": ["tags"] if match is None else ["tags", match.group(1)],
                }
            )
            continue
        tags[match.group(1)] = values[0]
    if not issues:
        issues += [{"code": "custom", "message": problem, "path": ["tags"]} for problem in tag_problems(tags)]
    return lowercased(tags), issues


def list_query(request: web.Request) -> ConnectionListQuery | None:
    """The filters of ``GET /connections``; None when the page asked for lies past any environment's end."""
    query = request.query
    values, issues = single_values(query, _LIST_PARAMS)
    for name in ("connectionId", "search", "endUserId", "endUserOrganizationId"):
        if name in values:
            issues += _bounded(values[name], name)
    if "integrationId" in values:
        issues += _bounded(values["integrationId"], "integrationId", max_length=None)
    tags, tag_issues = _tags(request)
    issues += tag_issues
    limit, page = DEFAULT_LIMIT, 0
    if "limit" in values:
        given, found = _number(values["limit"], "limit", minimum=1, maximum=MAX_LIMIT)
        limit, issues = given or limit, issues + found
    if "page" in values:
        given, found = _number(values["page"], "page", minimum=0, maximum=None)
        page, issues = given or 0, issues + found
    issues += unrecognized_keys(query, {*_LIST_PARAMS, *(k for k in query if _is_tag_key(k))})
    if issues:
        raise invalid_params(issues)
    if page * limit > _FURTHEST_OFFSET:
        return None
    integration_ids = (
        [key.strip() for key in values.get("integrationId", "").split(",")] if "integrationId" in values else []
    )
    return ConnectionListQuery(
        connection_id=values.get("connectionId"),
        integration_ids=integration_ids,
        end_user_id=values.get("endUserId"),
        organization_id=values.get("endUserOrganizationId"),
        tags=tags or None,
        search=values.get("search"),
        limit=limit,
        page=page,
    )


def _flag(value: str, path: str) -> tuple[bool, list[Issue]]:
    lowered = value.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE, []
    return False, [{"code": "invalid_value", "message": 'Invalid input: expected "true" or "false"', "path": [path]}]


def key_and_flags(
    request: web.Request, flags: Collection[str] = (), *, extra: Collection[str] = ()
) -> tuple[str, dict[str, bool]]:
    """``provider_config_key`` (required) and the boolean ``flags`` (False when not given).

    ``extra`` names parameters Keyway reads beyond Nango's (the view reads them itself).
    """
    query = request.query
    values, issues = single_values(query, ("provider_config_key", *flags))
    key = values.get("provider_config_key")
    if key is None:
        if "provider_config_key" not in query:
            issues.insert(0, _missing("provider_config_key"))
    else:
        issues += check_string(key, ["provider_config_key"], pattern=PROVIDER_CONFIG_KEY, max_length=MAX_LENGTH)
    found: dict[str, bool] = {}
    for name in flags:
        found[name], flag_issues = _flag(values[name], name) if name in values else (False, [])
        issues += flag_issues
    issues += unrecognized_keys(query, {"provider_config_key", *flags, *extra})
    if issues:
        raise invalid_params(issues)
    assert key is not None  # an issue otherwise
    return key, found


def connection_id_of(request: web.Request) -> str:
    """The path's connection id, within Nango's pattern (``invalid_uri_params`` otherwise)."""
    connection_id = request.match_info["connectionId"]
    if issues := check_string(connection_id, ["connectionId"], pattern=CONNECTION_ID, max_length=MAX_LENGTH):
        raise invalid_params(issues, code="invalid_uri_params")
    return connection_id
