"""``python -m auth_gateway``: read settings, configure logging, serve until SIGTERM."""

from __future__ import annotations

# First: it keeps development-only modules out of the process (see its docstring).
import keyway_shared.service_process  # noqa: F401  # isort: skip
from keyway_shared.logging import configure_logging
from keyway_shared.service import serve

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging(level=settings.log_level, json=settings.log_json, service="auth-gateway")
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_grace_seconds,
        reuse_port=settings.reuse_port,
        extra_ports=[settings.admin_port] if settings.admin_port is not None else [],
    )


if __name__ == "__main__":
    main()
