"""The API reference page: the OpenAPI document (`bridge.web.openapi`, the same one served at
/api/v1/openapi.json) as a server-rendered page — paths, methods, scopes, parameters, request
and response schemas. No script and nothing fetched from elsewhere."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from bridge.web import openapi

bp = Blueprint("apiref", __name__)


def schema_words(schema: Any) -> str:
    """A schema in a few words: `Referral`, `string | null`, `array of Entry`, `one of …`."""
    if not isinstance(schema, dict):
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "enum" in schema:
        return " | ".join(map(str, schema["enum"]))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(schema_words(s) for s in schema[key])
    kind = schema.get("type", "any")
    kind = " | ".join(kind) if isinstance(kind, list) else str(kind)
    if "array" in kind and "items" in schema:
        return kind.replace("array", f"array of {schema_words(schema['items'])}")
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else kind


@bp.get("/api")
def reference() -> str:
    doc = openapi.document()
    operations = [
        (path, method.upper(), op)
        for path, methods in doc["paths"].items()
        for method, op in methods.items()
    ]
    return render_template(
        "api_reference.html",
        doc=doc,
        operations=operations,
        schemas=doc["components"]["schemas"],
        words=schema_words,
    )
