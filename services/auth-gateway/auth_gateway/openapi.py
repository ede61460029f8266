"""``/openapi.json`` and ``python -m auth_gateway.openapi write|check`` for the checked-in copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from .openapi_spec import build_document
from .routes import ROUTES

__all__ = ["DOCUMENT_PATH", "document", "openapi_json", "rendered"]

DOCUMENT_PATH = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def document() -> dict[str, Any]:
    return build_document(ROUTES)


def rendered() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


async def openapi_json(_request: web.Request) -> web.Response:
    return web.Response(text=rendered(), content_type="application/json")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    if command == "write":
        DOCUMENT_PATH.write_text(rendered())
        print(f"wrote {DOCUMENT_PATH}")
        return 0
    current = DOCUMENT_PATH.read_text() if DOCUMENT_PATH.exists() else ""
    if current != rendered():
        print(f"{DOCUMENT_PATH} is out of date: run `make openapi`", file=sys.stderr)
        return 1
    print("openapi.json up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
