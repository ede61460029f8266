"""The pieces of ``/proxy``: the upstream request, its session, retries and metrics (the view is ``view.py``).

Nothing here imports ``api/``, ``connect/`` or ``dashboard/`` (tests/unit/test_http_layer.py keeps it so).
"""
