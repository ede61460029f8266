"""The pieces of ``/proxy``: the upstream request, its session, retries and metrics (the view is ``view.py``)."""
