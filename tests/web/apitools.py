"""Check API responses against the OpenAPI document's schemas."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from bridge.web.openapi import document


def check(resp: Any, status: int, schema: str) -> Any:
    """Assert the status and that the JSON body matches components/schemas/<schema>."""
    body = resp.get_json()
    assert resp.status_code == status, (resp.status_code, body)
    root = {"$ref": f"#/components/schemas/{schema}", "components": document()["components"]}
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
    assert not errors, f"{schema}: {[e.message for e in errors][:3]} in {body}"
    return body


def check_error(resp: Any, status: int, code: str, fields: list[str] | None = None) -> Any:
    body = check(resp, status, "Error")
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    if fields is not None:
        assert body["error"].get("fields") == fields, body
    return body
