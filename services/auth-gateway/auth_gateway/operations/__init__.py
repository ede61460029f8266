"""What the API and the dashboard both do: each operation validates, stores and announces one change.

An operation takes typed inputs, the environment and the app (for its resources), and raises
``ApiError`` on refusal. The secret-key views in ``api/`` and the dashboard's actions in
``dashboard/api.py`` only read their input and shape their answer around the same call, so the
twins cannot drift. Nothing here imports ``api``, ``connect`` or ``dashboard``: they import this,
never the reverse.
"""
