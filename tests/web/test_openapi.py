"""The OpenAPI document matches the routes, and its schemas are valid JSON Schema."""

from __future__ import annotations

import re

from flask import Flask
from jsonschema import Draft202012Validator

from bridge.web.openapi import document


def _api_routes(app: Flask) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                out.add((path, method.lower()))
    return out


def test_every_route_is_documented_and_every_documented_route_exists(app: Flask) -> None:
    doc = document()
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert _api_routes(app) == documented


def test_the_served_document_is_openapi_3_1_with_valid_schemas(app: Flask) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0" and doc == document()
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises, naming the problem
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path == "/openapi.json":
                continue
            assert op["x-required-scope"] in doc["info"]["description"], (path, method)
            for status in ("400", "401", "403", "404", "409", "422"):
                assert status in op["responses"], (path, method, status)
            for param in op["parameters"]:
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path


def test_request_schemas_are_the_ones_the_views_validate_with(app: Flask) -> None:
    schemas = document()["components"]["schemas"]
    assert schemas["ReferralIn"]["required"] == ["program", "last_name"]
    assert schemas["ReferralIn"]["additionalProperties"] is False
    assert set(schemas["ActivityIn"]["properties"]["kind"]["enum"]) == {
        "email",
        "call",
        "linkedin_message",
        "linkedin_connection",
        "meeting",
    }
