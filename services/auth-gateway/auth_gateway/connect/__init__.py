"""Everything a browser or a frontend SDK touches: the popup flows, the credential forms, connect
sessions and links.

``oauth.py`` answers ``/oauth/connect`` and ``/oauth/callback`` through its starters and finishers
(``oauth1_flow.py``, ``github_app.py``), with what the popup flows share in ``popup_common.py``;
the form flows (``api_auth.py``, ``client_credentials.py``, ``app_store.py``, ``unauth.py``) share
``credential_flow.py``. ``sessions.py`` and ``links.py`` hold connect sessions' and links' routes,
the backend's creating call included, so each family stays in one module; ``link_page.py`` is a
link's hosted page, ``ws.py`` the WebSocket the SDK hears outcomes on. Nothing here imports
``api/`` or ``dashboard/`` (tests/unit/test_import_cycles.py keeps it so).
"""
