"""The secret-key backend API: thin views over ``operations/``, one module per resource.

A view reads its request, calls an operation (or a store read) and shapes the answer. Nothing here
imports ``connect/`` or ``dashboard/`` (tests/unit/test_import_cycles.py keeps it so).
"""
