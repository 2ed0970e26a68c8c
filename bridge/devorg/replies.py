"""What a handler of the local org's REST API is given and gives back, and Salesforce's error
bodies.

Its own module so that `rest` (the router) and `composite` (which runs subrequests through the
router) both build on it without importing each other, and so that the record rules of `dml` and
`sales` share one error type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able; None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, code: str, message: str) -> Reply:
    return Reply(status, [{"message": message, "errorCode": code}])


def not_found() -> Reply:
    return error_reply(404, "NOT_FOUND", "The requested resource does not exist")


def method_not_allowed(method: str, allowed: str) -> Reply:
    return error_reply(
        405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}"
    )


@dataclass
class Request:
    method: str
    path: str  # after /services/data/vXX.X, e.g. "/sobjects/Lead/00Q..."
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


def sf_error(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {"message": message, "errorCode": code, "fields": fields or []}


class DmlError(Exception):
    """A request Salesforce would refuse: .errors is the REST error list, .status the HTTP code."""

    def __init__(self, errors: list[dict[str, Any]], status: int = 400) -> None:
        super().__init__(errors[0]["message"] if errors else "error")
        self.errors = errors
        self.status = status

    @classmethod
    def one(
        cls, code: str, message: str, fields: list[str] | None = None, status: int = 400
    ) -> DmlError:
        if status == 404:  # a missing resource is not a field error: no "fields" key
            return cls([{"message": message, "errorCode": code}], status)
        return cls([sf_error(code, message, fields)], status)
