"""HTTP plumbing with no domain knowledge: the error envelope, CORS, metrics, client addresses,
deadlines, load shedding, listeners and JSON serialisation.

Nothing here imports the rest of the gateway (``tests/unit/test_import_cycles.py`` checks it), so
every feature can build on it without a cycle.
"""
