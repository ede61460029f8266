"""Running a service's aiohttp application: uvloop, graceful SIGTERM, bounded shutdown."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import linecache
import socket
import sys
from collections.abc import Sequence

import uvloop
from aiohttp import web

__all__ = ["serve"]

# Each request or message allocates a few hundred short-lived container objects (frames, futures,
# dicts) that live for its few milliseconds in flight. At the default threshold (700) the youngest
# generation is scanned every few of them while dozens are in flight, so most of what is scanned is
# alive, gets promoted, and drives full collections of several milliseconds each (measured on the
# gateway under 64 clients: ~30 full collections in 20 s); at 20,000 most of it has died first.
YOUNG_GC_THRESHOLD = 20_000


def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    reuse_port: bool = False,
    extra_ports: Sequence[int] = (),
) -> None:
    """Serve until SIGTERM/SIGINT, then stop listening, drain, and run cleanup contexts in reverse.

    ``extra_ports``: more listening ports for the same application (the gateway's admin port).
    """
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)
    app.on_startup.append(_freeze_startup_heap)
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        print=None,
        handle_signals=True,
        reuse_port=reuse_port,
        sock=[_listen(host, extra, reuse_port=reuse_port) for extra in extra_ports] or None,
    )


async def _freeze_startup_heap(_app: web.Application) -> None:
    """Exempt what startup built (provider catalog, templates, clients) from garbage collection.

    Runs after every resource is open. Those objects live as long as the process; left in the
    collector's oldest generation, every full collection walks them all, which shows up as
    latency spikes of tens of milliseconds on the request path.
    """
    _drop_source_lines()
    gc.collect()
    gc.freeze()
    release_free_heap()


def _drop_source_lines() -> None:
    """Empty ``linecache`` of the source files startup read into it.

    pymongo's client keeps its creator's stack as text (``traceback.format_stack``, for its test
    suite's unclosed-client report), which reads every file on that stack into ``linecache`` and
    keeps them: ~7,000 lines (~0.5 MB) in every service, for nothing. A file is read again if a
    traceback needs it. Entries without a modification time are kept: they are source generated at
    run time (attrs' methods) that could not be read again.
    """
    for name, entry in list(linecache.cache.items()):
        if len(entry) == 4 and entry[1] is not None:
            del linecache.cache[name]


def release_free_heap() -> bool:
    """glibc's ``malloc_trim(0)``: the free pages inside the C heap go back to the OS.

    Startup frees much of what it allocated (settings parsing, the catalog index's file reading,
    clients' handshakes); glibc returns on its own only the free space at the heap's top, so the
    rest stays resident for the process's life. Python's own small objects live in arenas this does
    not touch, so the gain is modest (0.3-0.6 MB measured on the activity log and the dispatcher, a
    little on the gateway). Linux with glibc only: elsewhere (musl has no ``malloc_trim``, macOS)
    nothing is done and the answer is False.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, reuse_port=reuse_port)
