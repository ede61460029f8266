"""The checked-in OpenAPI document is exactly what the route table generates, and the table is
exactly what the gateway serves: a route added without its line, or a line without a route, fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

from auth_gateway.app import create_app
from auth_gateway.openapi import DOCUMENT_PATH, rendered
from auth_gateway.settings import GatewaySettings
from keyway_shared.cipher import generate_key


def served_routes() -> set[tuple[str, str]]:
    app = create_app(GatewaySettings(encryption_key=generate_key()))  # builds the router, opens nothing
    served = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside every GET
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        served.add((route.method, re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", path)))
    return served


def documented_routes() -> set[tuple[str, str]]:
    document = json.loads(DOCUMENT_PATH.read_text())
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_checked_in_document_matches_the_route_table() -> None:
    assert DOCUMENT_PATH.read_text() == rendered(), "run `make openapi` and commit docs/openapi.json"


def test_every_served_route_is_documented_and_nothing_else() -> None:
    served, documented = served_routes(), documented_routes()
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_document_is_openapi_3_1_with_security_and_errors() -> None:
    document = json.loads(Path(DOCUMENT_PATH).read_text())
    assert document["openapi"] == "3.1.0"
    operation = document["paths"]["/connection/{connectionId}"]["get"]
    assert operation["security"] == [{"secretKey": []}]
    assert operation["parameters"][0]["name"] == "connectionId"
    assert (
        operation["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    )
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
