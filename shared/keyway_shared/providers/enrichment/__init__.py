"""What happens once a connection is made: calls whose answers fill ``connection_config`` fields
(Nango's post-connection scripts), declared by the template.

- ``steps``: the declarative ``post_connection`` steps (a pydantic model the template is typed with);
- ``context``: what a step or hook works with, and the calls made as the proxy makes them;
- ``hooks``: code by Nango's script names, one module per provider, for what steps cannot say;
- ``runner``: :func:`~.runner.enrich`, which never fails a connection (problems come back as text).

Where Keyway differs from Nango, on purpose:

- when: Nango stores the connection, then runs the script (awaited before the auth webhook, on
  creation and on every re-authorization; a failure is logged and the connection stays). Keyway
  runs it before the one write (also on creation and re-authorization), so no second version of
  the connection exists and the connection the events announce already has the fields.
  Every connect flow runs it (popups, forms, a connect link's page), and so does an import
  (``POST /connection``, ``/connections``), as Nango's does: an app importing its Jira connections
  reads their ``cloudId`` afterwards. What the importer gives wins over what is looked up.
  ``keyway import-nango`` writes to the database and calls no provider: a bulk migration brings
  the configuration Nango's scripts already filled;
- no token in ``connection_config``: it is neither encrypted nor refreshed, and is answered
  wherever the connection is. So OneDrive and SharePoint get ``tenantId`` without Nango's extra
  ``sharepointAccessToken`` (a one-hour SharePoint token minted with the refresh token), the Teams
  bot's Bot Framework token is not stored, and GitHub App OAuth gets ``handle`` without
  ``userCredentials``;
- values must match the ``pattern`` the template declares for their field (the proxy puts them
  into URLs), and a missing value is reported rather than silently skipped.

Only the step model is imported here: the template imports this package, and the runner imports
the template (``from keyway_shared.providers.enrichment.runner import enrich``).
"""

from .steps import JsonPath, Pick, PostConnectionStep, StepRequest, parse_path

__all__ = ["JsonPath", "Pick", "PostConnectionStep", "StepRequest", "parse_path"]
