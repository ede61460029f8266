"""Everything a browser or a frontend SDK touches: the popup flows, the credential forms, connect
sessions and links.

Each auth mode's flow is a module of ``modes/``, and ``modes.MODES`` the one registry of them: a
popup mode's starter and finisher, a form mode's routes (and a connect link's form), or no flow.
``oauth.py`` answers ``/oauth/connect`` and ``/oauth/callback`` through the integration's mode's
starter and finisher, with what the popup flows share in ``popup_common.py`` and the protocol steps
in ``protocol/`` (OAuth 1 and 2, binding a flow to its browser, what the browser may override); the
form flows share ``credential_flow.py`` (and ``api_auth.py``, for those a template may verify), and
``verification.py`` is the live check of a credential some templates declare. Every flow reads its
caller with ``frontend_request.py`` and ends on a page of ``flow_pages.py`` (a popup) or with the
signed outcome of ``link_outcome.py`` (a connect link). ``sessions.py`` and ``links.py`` hold
connect sessions' and links' routes, the backend's creating call included, so each family stays in
one module; ``link_page.py`` is a link's hosted page, ``ws.py`` the WebSocket the SDK hears outcomes
on. What ``operations/`` needs of a flow lives there: the session stores (``connect_sessions.py``,
``flow_sessions.py``), ``FlowError``, the return-URL rules. Nothing here imports ``api/``,
``dashboard/`` or ``proxy/`` (tests/unit/test_http_layer.py keeps it so).
"""
