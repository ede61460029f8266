"""Imported first by every service's ``python -m`` entry point, before anything loads structlog.

structlog's console renderer imports ``rich`` (and with it pygments) whenever it is installed, for
its tracebacks. A service logs JSON lines or plain text and never uses it, yet would hold its ~5 MB
in every process. ``rich`` is a development dependency only (a test tool needs it), so it is there
wherever the stack runs from a checkout (``make up``); a service process treats it as absent.
Tests and tools importing Keyway's modules in their own process are left alone.

``greenlet`` likewise: structlog imports it at import time when it is installed (for a deprecated
greenlet-local context Keyway does not use); only Playwright, a development dependency, brings it.

And the host's MIME type files (``/etc/mime.types``): aiohttp builds a ``MimeTypes`` table at import,
which reads them into two dicts of ~1,300 types each (~0.4 MB). The service image (python:slim) has
no such file, so there a service has Python's built-in table only; a service process from a checkout
gets the same (no service guesses a file's type: its few static answers name theirs).
"""

from __future__ import annotations

import mimetypes
import sys

__all__: list[str] = []

# A None entry makes ``import rich`` raise ImportError, which structlog takes as "not installed".
sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
sys.modules.setdefault("greenlet", None)  # type: ignore[arg-type]
mimetypes.knownfiles = []  # read before anything has called mimetypes.init()
