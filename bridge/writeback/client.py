"""The two Salesforce calls writeback needs: a SOQL query and an sObject Collections request.

`OrgWriter` runs them on a connected org through its `call` (one re-authentication on an
expired session, Salesforce errors turned into bridge errors). Per-record errors inside a
200 response are classified here with the same table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bridge.errors import BridgeError, PermanentError, TransientError, UsageError

ErrorClass = Literal["usage", "transient", "permanent"]

COLLECTION_LIMIT = 200
"""sObject Collections take at most 200 records per request."""

LOOKUP_CHUNK = 100
"""Values per IN list: keeps the query URL well under Salesforce's request size limits."""

# Codes for which trying again later can succeed.
_TRANSIENT = {
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "QUERY_TIMEOUT",
    "REQUEST_RUNNING_TOO_LONG",
    "TXN_SECURITY_METERING_ERROR",
    "CONCURRENT_REQUESTS_LIMIT_EXCEEDED",
    "UNKNOWN_EXCEPTION",
    "API_CURRENTLY_DISABLED",
}
# Codes the admin fixes in setup (permissions, missing package fields, wrong object).
_USAGE = {
    "INVALID_FIELD",
    "INVALID_TYPE",
    "INVALID_FIELD_FOR_INSERT_UPDATE",
    "INSUFFICIENT_ACCESS",
    "INSUFFICIENT_ACCESS_OR_READONLY",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
    "API_DISABLED_FOR_ORG",
    "INVALID_SESSION_ID",
    "NOT_FOUND",
    "INVALID_CROSS_REFERENCE_KEY",
    "FUNCTIONALITY_NOT_ENABLED",
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
}


def classify_code(code: str) -> ErrorClass:
    """Who can fix a Salesforce error code: retry (transient), the admin (usage), or the data
    (permanent: STRING_TOO_LONG, REQUIRED_FIELD_MISSING, validation rules, duplicates...)."""
    if code in _TRANSIENT:
        return "transient"
    if code in _USAGE:
        return "usage"
    return "permanent"


def error_class_of(exc: BridgeError) -> ErrorClass:
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, UsageError):
        return "usage"
    return "permanent"


@dataclass(frozen=True)
class RecordError:
    """The first error of one record in an sObject Collections response."""

    code: str
    message: str
    fields: list[str]

    @property
    def error_class(self) -> ErrorClass:
        return classify_code(self.code)


def record_error(result: dict[str, Any]) -> RecordError:
    errors = result.get("errors") or [{}]
    first = errors[0]
    code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_EXCEPTION")
    message = str(first.get("message") or "Salesforce reported the record as not saved")
    if len(errors) > 1:
        message += "".join(f"; {e.get('statusCode')}: {e.get('message')}" for e in errors[1:])
    return RecordError(code, message, [str(f) for f in first.get("fields") or []])


class Writer(Protocol):
    def query(self, soql: str) -> list[dict[str, Any]]: ...

    def collection(
        self, method: str, path: str, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...


def _translate(exc: Exception) -> BridgeError:
    """A simple-salesforce or requests error as a bridge error (for clients without `call`)."""
    import requests
    from simple_salesforce.exceptions import SalesforceError as SimpleSalesforceError

    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, SimpleSalesforceError):
        content = exc.content
        first: Any = content[0] if isinstance(content, list) and content else {}
        body: dict[str, Any] = first if isinstance(first, dict) else {}
        code = str(body.get("errorCode") or f"HTTP_{exc.status}")
        message = str(body.get("message") or exc)
        fields = [str(f) for f in body.get("fields") or []]
        klass = classify_code(code)
        if exc.status >= 500 or exc.status == 429:
            klass = "transient"
        cls = {"transient": TransientError, "usage": UsageError, "permanent": PermanentError}
        return cls[klass](message, code=code, fields=fields)
    if isinstance(exc, requests.RequestException):
        return TransientError(f"Salesforce could not be reached: {exc}", code="CONNECTION_ERROR")
    return PermanentError(f"{type(exc).__name__}: {exc}", code="UNEXPECTED_ERROR")


def direct_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # translated: every failure becomes a classified bridge error
        raise _translate(exc) from exc


@dataclass
class OrgWriter:
    """Queries and sObject Collections on a simple-salesforce client."""

    sf: Any
    call: Callable[..., Any] = direct_call

    @classmethod
    def for_org(cls, org: Any) -> OrgWriter:
        """From a connected `SalesforceOrg` (its `.sf` client and error-translating `.call`)."""

        def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return org.call(fn, *args, **kwargs)
            except Exception as exc:  # network errors reach us untranslated
                raise _translate(exc) from exc

        return cls(org.sf, call)

    def query(self, soql: str) -> list[dict[str, Any]]:
        result = self.call(self.sf.query_all, soql)
        return [dict(r) for r in result.get("records", [])]

    def collection(
        self, method: str, path: str, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if len(records) > COLLECTION_LIMIT:
            raise ValueError(f"{len(records)} records: sObject Collections take {COLLECTION_LIMIT}")
        body = json.dumps({"allOrNone": False, "records": records}, default=str)
        result = self.call(self.sf.restful, path, method=method, data=body)
        if result is None:
            return []
        if not isinstance(result, list) or len(result) != len(records):
            raise TransientError(
                f"Salesforce answered {path} with {type(result).__name__} for "
                f"{len(records)} records",
                code="UNEXPECTED_RESPONSE",
            )
        return [dict(r) for r in result]


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
