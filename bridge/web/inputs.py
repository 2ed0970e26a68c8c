"""What the web side accepts before any view sees it: JSON bodies and query/form values.

Bad input is a clear 400, never a 500 further down (SPEC §10):

- JSON nested deeper than `MAX_JSON_DEPTH` (Python's parser would hit its recursion limit at
  about 1,000 levels, and every walk over the stored value after it);
- `NaN`, `Infinity` and numbers too large for a float (`1e400` parses as infinity): JSON has
  no such values, and a stored one would make every list holding it invalid JSON;
- NUL characters in any string, key, query or form value: PostgreSQL refuses them in text.

Bodies over `MAX_CONTENT_LENGTH` are a 413, chunked ones too (`read_body`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import BadRequest

MAX_JSON_DEPTH = 32
"""Objects and arrays nested deeper than this are refused (a record is two levels deep)."""

NUL = "\x00"


class BadInput(BadRequest):
    """Input no view can use; `code` and `description` become the JSON error."""

    def __init__(self, code: str, description: str, field: str | None = None):
        super().__init__(description)
        self.error_code = code
        self.field = field


def _no_constant(name: str) -> float:
    raise BadInput("invalid_json", f"{name} is not a JSON number; send a finite number or null")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadInput("invalid_json", f"the number {text[:40]} is too large")
    return value


def parse_json(raw: bytes | str) -> Any:
    """The JSON value of `raw`, checked for depth, non-finite numbers and NUL characters.

    Raises `BadInput`; a body that is not JSON at all raises ValueError, as `json.loads` does.
    """
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise BadInput("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Refuse a parsed JSON value nested too deep or holding a NUL character (iteratively, so
    the check itself cannot run out of stack)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                raise BadInput("invalid_text", "text must not contain NUL characters (\\u0000)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadInput("invalid_json", "numbers must be finite")
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise BadInput("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def read_body() -> bytes:
    """The request body; one over `MAX_CONTENT_LENGTH` is a 413, chunked ones too.

    Werkzeug checks a Content-Length up front, but stops reading a chunked body (which has
    none) at the limit and returns what it read: reading one byte more makes it raise.
    """
    with _reading():
        raw = request.get_data(cache=True)
        limit = request.max_content_length
        if limit is not None and request.content_length is None and len(raw) >= limit:
            request.stream.read(1)  # raises RequestEntityTooLarge when the body goes on
    return raw


@contextmanager
def _reading() -> Iterator[None]:
    """gunicorn reads the body while the app does: a malformed chunk or a client that hangs
    up mid-body surfaces here, and is the client's error (400), not the app's (500)."""
    try:
        yield
    except (ParseException, NoMoreData) as exc:
        raise BadInput("unreadable_body", f"the request body could not be read: {exc}") from None


def _refuse_nul_values() -> None:
    """Query strings and forms: a NUL anywhere is refused before a query is built from it."""
    with _reading():
        form = request.form
    for where, values in (("query", request.args), ("form", form)):
        for key, value in values.items(multi=True):
            if NUL in key or NUL in value:
                raise BadInput(
                    "invalid_text",
                    f"the {where} value '{key.replace(NUL, '')}' contains a NUL character",
                    field=key.replace(NUL, ""),
                )


def init_app(app: Flask) -> None:
    app.before_request(_refuse_nul_values)
