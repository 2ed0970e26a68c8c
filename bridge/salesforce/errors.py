"""Salesforce errors sorted by who can fix them, from a table of error codes and HTTP statuses.

Salesforce reports a failure in one of these shapes:

- REST API: a JSON list ``[{"message", "errorCode", "fields"}]`` with an HTTP status
  (Salesforce REST API Developer Guide, "Status Codes and Error Responses").
- sObject Collections / composite results: per record
  ``{"success": false, "errors": [{"statusCode", "message", "fields"}]}`` (HTTP 200).
- OAuth token endpoint: ``{"error", "error_description"}`` with HTTP 400
  (e.g. ``invalid_grant`` / ``expired access/refresh token``).
- Gateways and maintenance pages: a 502/503/504 with an HTML or text body.

`classify` turns any of those (or a simple-salesforce exception, or a requests network error)
into one of three `SalesforceError` classes, each also a bridge `UsageError`,
`TransientError` or `PermanentError`, so callers decide by category, not by code:

- usage: the admin must fix something (credentials, connected app, permissions, API access);
  retrying the same call cannot succeed and neither can the next one.
- transient: try again later (limits, row locks, maintenance, network).
- permanent: this record or request is wrong (bad value, missing field, deleted record);
  save it with the reason for a person to act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import requests
from simple_salesforce import exceptions as sfexc

from bridge.errors import BridgeError, PermanentError, TransientError, UsageError

Category = Literal["usage", "transient", "permanent"]

#: The code Salesforce uses for an expired or revoked access token; the connection
#: re-authenticates once when it sees it, and reports a usage error if it persists.
INVALID_SESSION_ID = "INVALID_SESSION_ID"

# Error codes by category. REST codes are upper case, OAuth codes lower case (RFC 6749 §5.2 and
# Salesforce's OAuth endpoint errors); they never collide, so one table holds both.
CODE_CATEGORY: dict[str, Category] = {
    # --- the admin must fix it ---------------------------------------------------------------
    INVALID_SESSION_ID: "usage",  # after the one re-authentication has also been rejected
    "INVALID_AUTH_HEADER": "usage",
    "INSUFFICIENT_ACCESS_OR_READONLY": "usage",
    "INSUFFICIENT_ACCESS": "usage",
    "API_DISABLED_FOR_ORG": "usage",
    "API_CURRENTLY_DISABLED": "usage",
    "FUNCTIONALITY_NOT_ENABLED": "usage",
    "INVALID_TYPE": "usage",  # sObject unknown to this user: package not deployed / no access
    "MALFORMED_QUERY": "usage",  # a query built from config names a field the org lacks
    "INVALID_QUERY_FILTER_OPERATOR": "usage",
    "INVALID_OPERATION_WITH_EXPIRED_PASSWORD": "usage",
    "STORAGE_LIMIT_EXCEEDED": "usage",
    "LICENSE_LIMIT_EXCEEDED": "usage",
    "UNSUPPORTED_API_VERSION": "usage",
    "invalid_grant": "usage",  # wrong user, app not pre-authorized, expired refresh token...
    "invalid_client": "usage",
    "invalid_client_id": "usage",
    "invalid_client_credentials": "usage",
    "unsupported_grant_type": "usage",
    "invalid_request": "usage",
    "redirect_uri_mismatch": "usage",
    "access_denied": "usage",
    "inactive_user": "usage",
    "inactive_org": "usage",
    "invalid_scope": "usage",
    "unauthorized_client": "usage",
    "ssl_error": "usage",  # certificate not trusted: set ca_bundle
    "invalid_token_response": "usage",  # the login URL is not a Salesforce token endpoint
    "org_mismatch": "usage",
    "INVALIDENTITY": "usage",  # Bulk API: the object is not available to this user
    "FEATURENOTENABLED": "usage",  # Bulk API: e.g. hardDelete without its permission
    # --- try again later --------------------------------------------------------------------
    "REQUEST_LIMIT_EXCEEDED": "transient",
    "UNABLE_TO_LOCK_ROW": "transient",
    "SERVER_UNAVAILABLE": "transient",
    "QUERY_TIMEOUT": "transient",
    "UNKNOWN_EXCEPTION": "transient",
    "TXN_SECURITY_METERING_ERROR": "transient",
    "rate_limit_exceeded": "transient",
    "server_error": "transient",
    "temporarily_unavailable": "transient",
    "network_error": "transient",
    "timeout": "transient",
    "EXCEEDEDQUOTA": "transient",  # Bulk API: the 24-hour job/batch allocation is used up
    "BULK_JOB_ABORTED": "transient",  # ours: the job was aborted before it reached the row
    "BULK_JOB_FAILED": "transient",  # ours: the job failed for a reason not in the data
    "BULK_RESULT_MISSING": "transient",  # ours: no result came back for the row
    # --- this record or request is wrong ------------------------------------------------------
    "INVALID_FIELD": "permanent",
    "INVALID_FIELD_FOR_INSERT_UPDATE": "permanent",
    "INVALID_FIELD_WHEN_USING_TEMPLATE": "permanent",
    "INVALID_TYPE_ON_FIELD_IN_RECORD": "permanent",
    "STRING_TOO_LONG": "permanent",
    "NUMBER_OUTSIDE_VALID_RANGE": "permanent",
    "REQUIRED_FIELD_MISSING": "permanent",
    "DUPLICATE_VALUE": "permanent",
    "DUPLICATES_DETECTED": "permanent",
    "DUPLICATE_EXTERNAL_ID": "permanent",
    "INVALID_EMAIL_ADDRESS": "permanent",
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": "permanent",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": "permanent",
    "FIELD_INTEGRITY_EXCEPTION": "permanent",
    "FIELD_FILTER_VALIDATION_EXCEPTION": "permanent",
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY": "permanent",  # a trigger or flow in the org threw
    "ENTITY_IS_DELETED": "permanent",
    "ENTITY_IS_LOCKED": "permanent",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": "permanent",  # one record's sharing
    "INVALID_CROSS_REFERENCE_KEY": "permanent",
    "INVALID_ID_FIELD": "permanent",
    "MALFORMED_ID": "permanent",
    "NOT_FOUND": "permanent",
    "JSON_PARSER_ERROR": "permanent",
    "METHOD_NOT_ALLOWED": "permanent",
    "MULTIPLE_RECORDS": "permanent",  # upsert by external id matched more than one (HTTP 300)
    "PROCESSING_HALTED": "permanent",  # allOrNone: another record in the request failed
    "ALL_OR_NONE_OPERATION_ROLLED_BACK": "permanent",
    "INVALIDBATCH": "permanent",  # Bulk API: the CSV cannot be processed as sent
    "INVALIDJOB": "permanent",
    "INVALIDJOBSTATE": "permanent",
    "API_ERROR": "permanent",  # Bulk API query: a SOQL feature Bulk API does not support
}

# Used when the code is missing or unknown (REST API guide, "Status Codes and Error Responses").
STATUS_CATEGORY: dict[int, Category] = {
    300: "permanent",  # external id matched several records
    400: "permanent",
    401: "usage",
    403: "usage",
    404: "permanent",
    405: "permanent",
    409: "permanent",
    410: "permanent",
    412: "permanent",
    414: "permanent",
    415: "permanent",
    428: "permanent",
    429: "transient",
    431: "permanent",
    500: "transient",
    502: "transient",
    503: "transient",
    504: "transient",
}

# What the admin should do, for the usage errors people actually meet when connecting.
HINTS: dict[str, str] = {
    INVALID_SESSION_ID: "the session was rejected again right after re-authenticating: check "
    "the connected app's session policies and that the integration user is active",
    "invalid_grant": "check the username, that the connected app is pre-authorized for the "
    "user (Admin approved users, profile or permission set), the certificate matches the "
    "private key, and that a refresh token was not revoked; then run `sfbridge org connect`",
    "invalid_client_id": "the connected app's consumer key (client_id) is wrong or the app is "
    "not yet available (new apps take a few minutes)",
    "invalid_client": "the client_id / client secret pair is wrong",
    "invalid_client_credentials": "the client secret is wrong",
    "inactive_user": "the user is inactive: activate it or connect another user",
    "inactive_org": "the org is locked, closed or suspended",
    "API_DISABLED_FOR_ORG": "the org's edition has no API access, or the user lacks the "
    "'API Enabled' permission (assign the SFBridge_Integration permission set)",
    "INSUFFICIENT_ACCESS_OR_READONLY": "assign the SFBridge_Integration permission set to the "
    "integration user",
    "INVALID_TYPE": "deploy the sfbridge package and assign the SFBridge_Integration "
    "permission set",
    "ssl_error": "the server certificate is not trusted: set ca_bundle in the org's config to "
    "the CA that signed it",
}


class SalesforceError(BridgeError):
    """A failure reported by Salesforce (or on the way to it), with its code and HTTP status."""

    category: ClassVar[Category]

    def __init__(
        self,
        message: str,
        *,
        code: str,
        fields: Iterable[str] | None = None,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message, code=code, fields=list(fields or []))
        self.status = status
        #: Every error Salesforce returned (the first one is `code` / `message`).
        self.errors = errors or [{"errorCode": code, "message": message, "fields": self.fields}]

    @property
    def hint(self) -> str | None:
        return HINTS.get(self.code)

    def __str__(self) -> str:
        where = f" [HTTP {self.status}]" if self.status else ""
        fields = f" (fields: {', '.join(self.fields)})" if self.fields else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.code}: {self.message}{fields}{where}{hint}"

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        if self.status is not None:
            body["status"] = self.status
        return body


class SalesforceUsageError(SalesforceError, UsageError):
    """Salesforce refused the call for a reason the admin must fix (credentials, access)."""

    category = "usage"


class SalesforceTransientError(SalesforceError, TransientError):
    """Salesforce or the network failed for now; the same call may succeed later."""

    category = "transient"


class SalesforcePermanentError(SalesforceError, PermanentError):
    """Salesforce rejected this record or request; retrying it unchanged will not help."""

    category = "permanent"


_CLASS_BY_CATEGORY: dict[Category, type[SalesforceError]] = {
    "usage": SalesforceUsageError,
    "transient": SalesforceTransientError,
    "permanent": SalesforcePermanentError,
}


def category_for(code: str | None, status: int | None) -> Category:
    """The category of an error code, falling back on the HTTP status."""
    if code and code in CODE_CATEGORY:
        return CODE_CATEGORY[code]
    if status is not None:
        if status in STATUS_CATEGORY:
            return STATUS_CATEGORY[status]
        if status >= 500:
            return "transient"
    return "permanent"


def make_error(
    code: str,
    message: str,
    *,
    status: int | None = None,
    fields: Iterable[str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> SalesforceError:
    """Build the right `SalesforceError` subclass for `code` (and `status`)."""
    cls = _CLASS_BY_CATEGORY[category_for(code, status)]
    return cls(message, code=code, fields=fields, status=status, errors=errors)


def _as_body(content: Any) -> Any:
    """Parse a body that may still be bytes or a JSON string."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    if isinstance(content, str):
        try:
            return json.loads(content)
        except ValueError:
            return content
    return content


def _status_code_name(status: int) -> str:
    if status == 300:
        return "MULTIPLE_RECORDS"
    if status == 404:
        return "NOT_FOUND"
    if status >= 500:
        return "SERVER_UNAVAILABLE" if status in (502, 503, 504) else "UNKNOWN_EXCEPTION"
    return f"HTTP_{status}"


def from_response_body(status: int | None, content: Any) -> SalesforceError:
    """Classify an error response body of any of the shapes in this module's docstring."""
    body = _as_body(content)
    if isinstance(body, Mapping) and "error" in body:  # OAuth endpoint
        code = str(body["error"])
        message = str(body.get("error_description") or code)
        return make_error(code, message, status=status)
    items: list[Any] = []
    if isinstance(body, list):
        items = body
    elif isinstance(body, Mapping):
        if isinstance(body.get("errors"), list):  # one sObject Collections result
            items = body["errors"]
        elif "errorCode" in body or "statusCode" in body:
            items = [body]
    errors: list[dict[str, Any]] = [
        {
            "errorCode": str(item.get("errorCode") or item.get("statusCode") or ""),
            "message": str(item.get("message") or ""),
            "fields": list(item.get("fields") or []),
        }
        for item in items
        if isinstance(item, Mapping)
    ]
    if status == 300 and not errors:  # the body lists the matching record URLs, not errors
        return make_error(
            "MULTIPLE_RECORDS",
            "the external id matched more than one record",
            status=status,
        )
    if errors and errors[0]["errorCode"]:
        first = errors[0]
        code = str(first["errorCode"])
        return make_error(
            code,
            str(first["message"]) or code,
            status=status,
            fields=first["fields"],
            errors=errors,
        )
    text = body if isinstance(body, str) else json.dumps(body) if body else ""
    text = " ".join(text.split())[:300] or "no details in the response"
    code = _status_code_name(status) if status else "UNKNOWN_EXCEPTION"
    return make_error(code, text, status=status)


def from_response(response: requests.Response) -> SalesforceError:
    """Classify a failed `requests.Response` from Salesforce."""
    return from_response_body(response.status_code, response.content)


def classify(exc: BaseException) -> SalesforceError | None:
    """The `SalesforceError` for an exception raised while talking to Salesforce, or None.

    Knows simple-salesforce's exceptions (its util.exception_handler maps 300/400/401/403/404
    to classes and carries the parsed body in ``.content``), requests' HTTP and network
    errors, and passes `SalesforceError` through unchanged. Returns None for anything else
    (a bug in our code must not be mistaken for a Salesforce answer).
    """
    if isinstance(exc, SalesforceError):
        return exc
    if isinstance(exc, sfexc.SalesforceAuthenticationFailed):
        code = str(exc.code) if exc.code else "invalid_grant"
        return make_error(code, exc.auth_message or code, status=400)
    if isinstance(exc, sfexc.SalesforceError):
        return from_response_body(exc.status, exc.content)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return from_response(exc.response)
    if isinstance(exc, requests.RequestException):
        where = _where(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return make_error("ssl_error", f"TLS certificate check failed{where}: {_reason(exc)}")
        if isinstance(exc, requests.exceptions.RetryError):
            # The retrying adapter gave up on 502/503/504 (raise_on_status): still "later".
            return make_error(
                "SERVER_UNAVAILABLE", f"Salesforce kept answering with an error{where}"
            )
        if isinstance(exc, requests.Timeout):
            return make_error("timeout", f"Salesforce did not answer in time{where}")
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return make_error("network_error", f"cannot reach Salesforce{where}: {_reason(exc)}")
    return None


def _where(exc: requests.RequestException) -> str:
    """ " at https://host/path" of the failed request: no query string, which may hold data."""
    url = getattr(exc.request, "url", None) if exc.request is not None else None
    if not url:
        return ""
    parts = urlsplit(str(url))
    return f" at {parts.scheme}://{parts.netloc}{parts.path}"


def _reason(exc: BaseException) -> str:
    """The innermost useful reason of a requests/urllib3 error, without the whole chain."""
    reason: Any = exc
    while reason.args and isinstance(reason.args[0], BaseException):
        inner = reason.args[0]
        reason = getattr(inner, "reason", None) or inner
        if reason is inner:
            break
    text = " ".join(str(reason).split())
    # urllib3 prefixes the connection object ("HTTPSConnection(host=..., port=...): ").
    text = re.sub(r"^\w+Connection(?:Pool)?\([^)]*\): ", "", text)
    return text[:300]
