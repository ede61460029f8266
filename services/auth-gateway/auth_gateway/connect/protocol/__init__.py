"""The protocol steps of the popup flows: OAuth 2 authorization URLs and code exchange
(``oauth2.py``), OAuth 1 request and access tokens (``oauth1.py``), binding a flow to the browser
that started it (``browser_binding.py``), and what the browser may override (``flow_overrides.py``).

The flow's session store and ``FlowError`` sit in ``operations/`` (``flow_sessions.py``,
``flow_errors.py``): the gateway's resources and ``operations/connections.py`` need them too, and
``operations/`` never imports ``connect/``.
"""
