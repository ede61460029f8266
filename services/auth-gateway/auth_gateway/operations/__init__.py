"""What the API and the dashboard both do: each operation validates, stores and announces one change.

An operation takes typed inputs, the environment and the app (for its resources), and raises
``ApiError`` on refusal. The secret-key views in ``api/`` and the dashboard's actions in
``dashboard/api.py`` only read their input and shape their answer around the same call, so the
twins cannot drift. Nothing here imports ``api``, ``connect``, ``dashboard`` or ``proxy``: they
import this, never the reverse.

Beside the operations (``connections``, ``integrations``, ``environment``, ``environment_keys``,
``outgoing_webhooks``, ``connection_removal`` with ``token_revocation`` and ``revocation_jobs``)
sits what more than one feature needs of the domain: who is calling (``callers``), the connect and
flow session stores and ``FlowError`` (the connect flows' state, which the gateway's resources open),
the return-URL rules, the outbox relay and the ``connection.*`` events, refresh on read
(``refresh_on_read``), ``last_fetched_at`` (``fetch_recorder``), the budget of announced failures
(``failure_announcements``) and the fallback for documents nested too deep (``deep_documents``).
"""
