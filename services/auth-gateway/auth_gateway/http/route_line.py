"""What the HTTP middlewares read of a route-table line: its method, path and credential.

A structural type, so that ``http/`` needs nothing from the route table's own module
(``openapi_spec.Route`` fits it as it is).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["RouteLine"]


class RouteLine(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def auth(self) -> str: ...  # public_key | secret_key | connect_session | dashboard_session | none
