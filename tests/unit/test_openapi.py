"""The checked-in OpenAPI document is exactly what the route table generates, and the table is
exactly what the gateway serves: a route added without its line, or a line without a route, fails."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.core.result import Err

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
    for status in ("400", "401", "404", "429"):
        error = operation["responses"][status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, status
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    document = json.loads(DOCUMENT_PATH.read_text())
    return [(method.upper(), path, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_credentials_and_bodies_bring_their_errors() -> None:
    """The defaults a line does not repeat: each credential's refusals, a body's 400 and 413."""
    for method, path, operation in operations():
        statuses = set(operation["responses"])
        if operation["security"] == [{"secretKey": []}]:
            assert {"401", "429"} <= statuses, (method, path)
        if operation["security"] == [{"publicKey": []}, {"connectSession": []}]:
            assert {"400", "401", "403", "429"} <= statuses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413"} <= statuses, (method, path)
        assert any(s.startswith(("2", "3")) or s == "default" for s in statuses), (method, path)


def test_bodies_and_parameters_are_described() -> None:
    document = json.loads(DOCUMENT_PATH.read_text())
    patch = document["paths"]["/environment"]["patch"]["requestBody"]
    assert patch["required"] is True
    assert patch["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EnvironmentPatch"}
    assert "webhook_settings" in document["components"]["schemas"]["EnvironmentPatch"]["properties"]
    session = document["paths"]["/connect/sessions"]["post"]
    assert session["responses"]["201"]["content"]["application/json"]["schema"]["required"] == ["data"]
    proxy = {p["name"]: p for p in document["paths"]["/proxy/{path}"]["get"]["parameters"]}
    assert proxy["Connection-Id"] == {
        "name": "Connection-Id",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
    }
    assert "default" in document["paths"]["/proxy/{path}"]["get"]["responses"]  # the upstream's answer
    connect = {p["name"]: p for p in document["paths"]["/api-auth/api-key/{providerConfigKey}"]["post"]["parameters"]}
    assert connect["params"]["style"] == "deepObject"
    limit = {p["name"]: p for p in document["paths"]["/logs/operations"]["get"]["parameters"]}["limit"]
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}


def test_schemathesis_reads_every_operation() -> None:
    """The document is valid OpenAPI 3.1 as a contract fuzzer reads it: no operation fails to load."""
    schema = schemathesis.openapi.from_path(DOCUMENT_PATH)
    loaded = list(schema.get_all_operations())
    errors = [result.err() for result in loaded if isinstance(result, Err)]
    assert errors == []
    assert len(loaded) == len(operations())
