"""Imported first by every service's ``python -m`` entry point, before anything loads structlog.

structlog's console renderer imports ``rich`` (and with it pygments) whenever it is installed, for
its tracebacks. A service logs JSON lines or plain text and never uses it, yet would hold its ~5 MB
in every process. ``rich`` is a development dependency only (a test tool needs it), so it is there
wherever the stack runs from a checkout (``make up``); a service process treats it as absent.
Tests and tools importing Keyway's modules in their own process are left alone.
"""

from __future__ import annotations

import sys

__all__: list[str] = []

# A None entry makes ``import rich`` raise ImportError, which structlog takes as "not installed".
sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
