"""The baseline of the GET /connection benchmark: a bare aiohttp app returning a fixed JSON body.

    python bench/bare_server.py PORT BODY_FILE

It is served exactly as the gateway is (``keyway_shared.service.serve``: uvloop, no access log),
and its handler serialises the same dict the gateway returned, so the difference to the gateway is
the gateway's own work: middlewares, two database reads, decryption and the fetch recorder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from keyway_shared.service import serve


def create_app(body: dict[str, Any]) -> web.Application:
    async def get_connection(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/connection/{connectionId}", get_connection)
    return app


def main() -> None:
    port = int(sys.argv[1])
    body = json.loads(Path(sys.argv[2]).read_text())
    serve(create_app(body), host="127.0.0.1", port=port, shutdown_timeout=2.0)


if __name__ == "__main__":
    main()
