"""``python -m activity_log``: settings from the environment, logging, then serve until SIGTERM."""

from __future__ import annotations

# First: it keeps development-only modules out of the process (see its docstring).
import keyway_shared.service_process  # noqa: F401  # isort: skip
from keyway_shared.logging import configure_logging
from keyway_shared.service import serve

from .app import SERVICE, create_app
from .settings import ActivityLogSettings


def main() -> None:
    settings = ActivityLogSettings()
    configure_logging(level=settings.log_level, json=settings.log_json, service=SERVICE)
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_grace_seconds + 5,
    )


if __name__ == "__main__":
    main()
