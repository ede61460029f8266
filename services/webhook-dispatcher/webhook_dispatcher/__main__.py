"""``python -m webhook_dispatcher``: settings from the environment, logging, then serve until SIGTERM."""

from __future__ import annotations

import gc

from keyway_shared.logging import configure_logging
from keyway_shared.service import serve

from .app import SERVICE, create_app
from .settings import DispatcherSettings

# Each delivery allocates a few hundred short-lived container objects (frames, futures, dicts) that
# live for its few milliseconds in flight. At the default threshold (700) the youngest generation is
# scanned every few deliveries, while 64 of them are in flight, so most of what is scanned is alive
# and gets promoted and scanned again; at 20,000 most of it has died before a scan comes.
_YOUNG_GC_THRESHOLD = 20_000


def main() -> None:
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_GC_THRESHOLD, older, oldest)
    settings = DispatcherSettings()
    configure_logging(level=settings.log_level, json=settings.log_json, service=SERVICE)
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_grace_seconds + 5,
    )


if __name__ == "__main__":
    main()
