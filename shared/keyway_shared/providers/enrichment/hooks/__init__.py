"""Post-connection hooks by the name Nango's catalog gives its script (``post_connection_script``),
for what declarative steps cannot say: choosing among several sites or tenants, reading a value
out of another, unsetting fields. One module per provider; one line here per name.

A hook returns the ``connection_config`` fields to set (``None`` unsets one) or raises
:class:`~..context.EnrichmentError`. A name Nango's catalog uses that is not here is implemented
by the steps a built-in entry declares beside it (see ``..runner``), or is a no-op below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..context import EnrichmentContext
from . import (
    adobe_umapi,
    basecamp,
    bullhorn,
    candis,
    checkr_partner,
    github_app_oauth,
    google,
    highlevel,
    jira,
    jobber,
    procore,
    rippling_shop_app,
    sage_200,
    sellsy,
    sentry_oauth,
    sophos_central,
    xero,
    zoho,
)

__all__ = ["HOOKS", "NO_OP", "Hook"]

Hook = Callable[[EnrichmentContext], Awaitable[dict[str, Any]]]

HOOKS: dict[str, Hook] = {
    "jiraPostConnection": jira.post_connection,
    "atlassianGovernmentCloudPostConnection": jira.post_connection,
    "atlassianServicAccountPostConnection": jira.post_connection,  # sic: Nango's spelling
    "xeroPostConnection": xero.post_connection,
    "zohoPostConnection": zoho.post_connection,
    "basecampPostConnection": basecamp.post_connection,
    "highlevelPostConnection": highlevel.post_connection,
    "googleCalendarPostConnection": google.calendar,
    "googleMailPostConnection": google.mail,
    "procorePostConnection": procore.post_connection,
    "sage200PostConnection": sage_200.post_connection,
    "adobeUmapiPostConnection": adobe_umapi.post_connection,
    "bullhornPostConnection": bullhorn.post_connection,
    "checkrPartnerPostConnection": checkr_partner.post_connection,
    "sentryOauthPostConnection": sentry_oauth.post_connection,
    "githubAppOauthPostConnection": github_app_oauth.post_connection,
    "candisPostConnection": candis.post_connection,
    "jobberPostConnection": jobber.post_connection,
    "sellsyPostConnection": sellsy.post_connection,
    "ripplingShopAppPostConnection": rippling_shop_app.post_connection,
    "sophosCentralPostConnection": sophos_central.post_connection,
}

# Names that run nothing. In Nango too: Salesforce's script only logs, and Zoom's names a script
# Nango never wrote. By Keyway's choice: Nango's Teams bot script stores a Bot Framework access
# token in the connection configuration, which is neither encrypted nor refreshed; Keyway keeps
# tokens out of it (the app gets that token with the integration's client credentials itself).
NO_OP: frozenset[str] = frozenset({"salesforcePostConnection", "zoomPostConnection", "microsoftTeamsBotPostConnection"})
