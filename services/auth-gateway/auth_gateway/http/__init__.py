"""HTTP plumbing with no domain knowledge: the error envelope, CORS, metrics, client addresses,
deadlines, load shedding, listeners, rate limits, reading requests, ``Idempotency-Key`` and JSON
serialisation.

Nothing here imports the rest of the gateway (``tests/unit/test_http_layer.py`` checks it), so
every feature can build on it without a cycle. What a module needs of the gateway's settings is
handed to it: an argument of its middleware (``trusted_proxies``, the route table), or a value
``create_app`` sets under an AppKey defined here (``RETRY_AFTER_SECONDS``, ``BODY_TIMEOUT_SECONDS``).
"""
