"""The error classification table, driven by error bodies as Salesforce documents them.

Sources of the bodies:
- REST API Developer Guide, "Status Codes and Error Responses": errors are a JSON list of
  ``{"message", "errorCode", "fields"}``; 401 INVALID_SESSION_ID ("Session expired or
  invalid"); 403 with REQUEST_LIMIT_EXCEEDED when API limits are exceeded; 300 lists the
  matching records when an external id matches several.
- REST API Developer Guide, sObject Collections: per-record ``errors`` with ``statusCode``.
- Salesforce Help, OAuth endpoints / JWT bearer flow: ``{"error": "invalid_grant",
  "error_description": "expired access/refresh token" | "audience is invalid" | "user hasn't
  approved this consumer"}``, ``invalid_client_id`` / ``client identifier invalid``.
"""

from __future__ import annotations

import socket

import pytest
import requests
import responses
from simple_salesforce import Salesforce
from simple_salesforce import exceptions as sfexc

from bridge import defaults
from bridge.errors import PermanentError, TransientError, UsageError
from bridge.salesforce import connection
from bridge.salesforce.errors import (
    SalesforceError,
    SalesforcePermanentError,
    SalesforceTransientError,
    SalesforceUsageError,
    classify,
    from_response_body,
)
from tests.sf_doubles import API, INSTANCE_URL, error_body

LEAD_ID = "00Q5g00000LEAD01AAA"

# (status, documented body, expected category, expected code, expected fields)
CASES = [
    (401, error_body("INVALID_SESSION_ID", "Session expired or invalid"), "usage",
     "INVALID_SESSION_ID", []),
    (403, error_body("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), "transient",
     "REQUEST_LIMIT_EXCEEDED", []),
    (400, error_body("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"),
     "transient", "UNABLE_TO_LOCK_ROW", []),
    (503, error_body("SERVER_UNAVAILABLE", "Server temporarily unavailable"), "transient",
     "SERVER_UNAVAILABLE", []),
    (500, error_body("UNKNOWN_EXCEPTION", "An unexpected error occurred."), "transient",
     "UNKNOWN_EXCEPTION", []),
    (400, error_body("INVALID_FIELD", "No such column 'Foo__c' on sobject of type Lead"),
     "permanent", "INVALID_FIELD", []),
    (400, error_body("STRING_TOO_LONG", "Company: data value too large: xxxx (max length=255)",
                     ["Company"]), "permanent", "STRING_TOO_LONG", ["Company"]),
    (400, error_body("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]",
                     ["LastName"]), "permanent", "REQUIRED_FIELD_MISSING", ["LastName"]),
    (400, error_body("DUPLICATE_VALUE", "duplicate value found: Referral_ID__c duplicates "
                     f"value on record with id: {LEAD_ID}"), "permanent", "DUPLICATE_VALUE", []),
    (400, error_body("INVALID_EMAIL_ADDRESS", "Email: invalid email address: not-an-email",
                     ["Email"]), "permanent", "INVALID_EMAIL_ADDRESS", ["Email"]),
    (400, error_body("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                     "Status: bad value for restricted picklist field: Bogus", ["Status"]),
     "permanent", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status"]),
    (400, error_body("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Partner leads need an email"),
     "permanent", "FIELD_CUSTOM_VALIDATION_EXCEPTION", []),
    (404, error_body("ENTITY_IS_DELETED", "entity is deleted"), "permanent",
     "ENTITY_IS_DELETED", []),
    (400, error_body("MALFORMED_ID", "Lead ID: id value of incorrect type: 001000000000000AAA",
                     ["Id"]), "permanent", "MALFORMED_ID", ["Id"]),
    (404, error_body("NOT_FOUND", "The requested resource does not exist"), "permanent",
     "NOT_FOUND", []),
    (400, error_body("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object "
                     "id"), "usage", "INSUFFICIENT_ACCESS_OR_READONLY", []),
    (403, error_body("API_DISABLED_FOR_ORG", "The REST API is not enabled for this "
                     "Organization."), "usage", "API_DISABLED_FOR_ORG", []),
    (404, error_body("INVALID_TYPE", "sObject type 'Referral__c' is not supported."), "usage",
     "INVALID_TYPE", []),
    (400, {"error": "invalid_grant", "error_description": "expired access/refresh token"},
     "usage", "invalid_grant", []),
    (400, {"error": "invalid_grant", "error_description": "audience is invalid"}, "usage",
     "invalid_grant", []),
    (400, {"error": "invalid_client_id", "error_description": "client identifier invalid"},
     "usage", "invalid_client_id", []),
    (400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
     "usage", "unsupported_grant_type", []),
    # sObject Collections: one record's result carries `statusCode`, not `errorCode`.
    (200, {"id": None, "success": False, "errors": [
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]",
         "fields": ["Name"]}]}, "permanent", "REQUIRED_FIELD_MISSING", ["Name"]),
    # Upsert by external id matching several records: a list of record URLs.
    (300, [f"/services/data/v63.0/sobjects/Lead/{LEAD_ID}",
           "/services/data/v63.0/sobjects/Lead/00Q5g00000LEAD02AAA"], "permanent",
     "MULTIPLE_RECORDS", []),
    # A gateway or maintenance page: no JSON at all.
    (503, "<html><body>Service Unavailable</body></html>", "transient", "SERVER_UNAVAILABLE",
     []),
    (502, "", "transient", "SERVER_UNAVAILABLE", []),
    # Unknown code: the status decides.
    (400, error_body("SOME_NEW_CODE", "a code this table has not seen"), "permanent",
     "SOME_NEW_CODE", []),
    (504, error_body("SOME_NEW_CODE", "slow"), "transient", "SOME_NEW_CODE", []),
]  # fmt: skip

CATEGORY_CLASSES = {
    "usage": (SalesforceUsageError, UsageError),
    "transient": (SalesforceTransientError, TransientError),
    "permanent": (SalesforcePermanentError, PermanentError),
}


@pytest.mark.parametrize(("status", "body", "category", "code", "fields"), CASES)
def test_documented_error_bodies_are_classified(status, body, category, code, fields):
    err = from_response_body(status, body)
    sf_cls, bridge_cls = CATEGORY_CLASSES[category]
    assert isinstance(err, sf_cls)
    assert isinstance(err, bridge_cls)
    assert isinstance(err, SalesforceError)
    assert err.category == category
    assert (err.code, err.fields, err.status) == (code, fields, status)
    assert err.message  # never empty: the reason is saved for a person to read
    assert err.to_dict()["code"] == code


def test_the_first_of_several_errors_leads_and_all_are_kept():
    body = error_body("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]",
                      ["LastName"]) + error_body("STRING_TOO_LONG", "Company: too long",
                                                 ["Company"])  # fmt: skip
    err = from_response_body(400, body)
    assert err.code == "REQUIRED_FIELD_MISSING"
    assert [e["errorCode"] for e in err.errors] == ["REQUIRED_FIELD_MISSING", "STRING_TOO_LONG"]


def test_usage_errors_carry_an_actionable_hint():
    err = from_response_body(400, {"error": "invalid_grant", "error_description": "user hasn't "
                                   "approved this consumer"})  # fmt: skip
    assert "pre-authorized" in str(err)
    assert "user hasn't approved this consumer" in str(err)


# ---- simple-salesforce's exceptions, raised for real over HTTP --------------------------------


def _sf() -> Salesforce:
    return Salesforce(instance_url=INSTANCE_URL, session_id="token", version="63.0")


@pytest.mark.parametrize(
    ("status", "body", "sf_class", "category", "code"),
    [
        (300, [f"/services/data/v63.0/sobjects/Lead/{LEAD_ID}"],
         sfexc.SalesforceMoreThanOneRecord, "permanent", "MULTIPLE_RECORDS"),
        (400, error_body("STRING_TOO_LONG", "too long", ["Company"]),
         sfexc.SalesforceMalformedRequest, "permanent", "STRING_TOO_LONG"),
        (401, error_body("INVALID_SESSION_ID", "Session expired or invalid"),
         sfexc.SalesforceExpiredSession, "usage", "INVALID_SESSION_ID"),
        (403, error_body("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
         sfexc.SalesforceRefusedRequest, "transient", "REQUEST_LIMIT_EXCEEDED"),
        (404, error_body("NOT_FOUND", "The requested resource does not exist"),
         sfexc.SalesforceResourceNotFound, "permanent", "NOT_FOUND"),
        (500, error_body("UNKNOWN_EXCEPTION", "An unexpected error occurred."),
         sfexc.SalesforceGeneralError, "transient", "UNKNOWN_EXCEPTION"),
    ],
)  # fmt: skip
@responses.activate
def test_simple_salesforce_exceptions_are_classified(status, body, sf_class, category, code):
    responses.add(responses.GET, f"{API}/sobjects/Lead/{LEAD_ID}", json=body, status=status)
    with pytest.raises(sf_class) as raised:
        _sf().Lead.get(LEAD_ID)
    err = classify(raised.value)
    assert err is not None
    assert (err.category, err.code, err.status) == (category, code, status)


def test_authentication_failed_from_simple_salesforce_is_usage():
    err = classify(sfexc.SalesforceAuthenticationFailed("invalid_grant", "authentication failure"))
    assert isinstance(err, SalesforceUsageError)
    assert err.code == "invalid_grant"


def test_requests_http_error_is_classified_by_its_response():
    response = requests.Response()
    response.status_code = 400
    response._content = b'[{"message":"entity is deleted","errorCode":"ENTITY_IS_DELETED"}]'
    err = classify(requests.HTTPError(response=response))
    assert isinstance(err, SalesforcePermanentError)
    assert err.code == "ENTITY_IS_DELETED"


def test_a_refused_connection_is_transient(monkeypatch):
    monkeypatch.setattr(defaults, "BACKOFF_FACTOR", 0)  # no waiting between the retries
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = connection.build_session(f"https://127.0.0.1:{port}")
    with pytest.raises(requests.ConnectionError) as raised:
        session.get(f"https://127.0.0.1:{port}/services/data/v63.0/query/?q=SELECT+Email")
    err = classify(raised.value)
    assert isinstance(err, SalesforceTransientError)
    assert err.code == "network_error"
    # Where it tried and why, without the query string (it may carry data).
    where = f"cannot reach Salesforce at https://127.0.0.1:{port}/services/data/v63.0/query/: "
    assert err.message.startswith(where)
    assert err.message.endswith("Connection refused")
    assert "SELECT" not in err.message


def test_a_timeout_is_transient():
    err = classify(requests.ReadTimeout("read timed out"))
    assert isinstance(err, SalesforceTransientError)
    assert err.code == "timeout"


def test_a_certificate_failure_is_usage_with_a_hint():
    err = classify(requests.exceptions.SSLError("certificate verify failed"))
    assert isinstance(err, SalesforceUsageError)
    assert "ca_bundle" in str(err)


def test_other_exceptions_are_not_salesforce_errors():
    assert classify(KeyError("Id")) is None
