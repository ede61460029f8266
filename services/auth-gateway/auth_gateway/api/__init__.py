"""The secret-key backend API: thin views over ``operations/``, one module per resource.

A view reads its request, calls an operation (or a store read) and shapes the answer. Nothing here
imports ``connect/``, ``dashboard/`` or ``proxy/`` (tests/unit/test_http_layer.py keeps it so).
"""
