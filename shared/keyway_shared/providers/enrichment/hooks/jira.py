"""Atlassian (Jira, Confluence, Government Cloud): which of the user's sites the connection is for.

The token is for every site the user granted; ``accessible-resources`` lists them. The site whose
host is the ``subdomain`` the user gave wins, then one whose name contains it, then the first.
The user's account id comes from the site's own API (Confluence's when the grant is for Confluence);
that call needs scopes the app may not have asked for, so its failure leaves only the id out.
"""

from __future__ import annotations

import re
from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]

_GOVERNMENT_ORIGIN = "https://auth.atlassian-us-gov-mod.com"
_SITE_HOST = re.compile(r"^https?://([^./]+)", re.IGNORECASE)
_SITE_ID = re.compile(r"[A-Za-z0-9-]+")  # a UUID: it goes into a path below


def _choose(sites: list[dict[str, Any]], subdomain: str) -> dict[str, Any]:
    if subdomain:
        for site in sites:
            match = _SITE_HOST.match(str(site.get("url", "")))
            if match and match.group(1).lower() == subdomain:
                return site
        for site in sites:
            if subdomain in str(site.get("name") or "").lower():
                return site
    return sites[0]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    base = _GOVERNMENT_ORIGIN if ctx.provider == "atlassian-government-cloud" else None
    answer = await ctx.request("oauth/token/accessible-resources", base_url_override=base)
    sites = [site for site in answer if isinstance(site, dict)] if isinstance(answer, list) else []
    if not sites or not sites[0].get("id"):
        raise EnrichmentError("accessible-resources lists no site this token can reach")
    site = _choose(sites, str(ctx.connection_config.get("subdomain") or "").lower())
    site_id = str(site.get("id") or "")
    if not _SITE_ID.fullmatch(site_id):
        raise EnrichmentError("accessible-resources gave a site id that is not an id")
    fields: dict[str, Any] = {"cloudId": site_id, "baseUrl": site.get("url")}
    scopes = site.get("scopes")
    confluence = isinstance(scopes, list) and any("confluence" in str(scope) for scope in scopes)
    if confluence:
        endpoint = f"ex/confluence/{site_id}/wiki/rest/api/user/current"
    else:
        endpoint = f"ex/jira/{site_id}/rest/api/3/myself"
    try:
        me = await ctx.request(endpoint, base_url_override=base)
    except EnrichmentError:
        return fields  # the scopes for it were not granted: the site is what matters
    if isinstance(me, dict) and me.get("accountId"):
        fields["accountId"] = me["accountId"]
    return fields
