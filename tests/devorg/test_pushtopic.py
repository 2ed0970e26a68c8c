"""PushTopic validation and matching rules, table-driven (pure: no server, no SOQL engine)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.devorg import pushtopic
from bridge.devorg.pushtopic import QueryError, analyse, compile_topic, notifies, validate_topic

LEAD_FIELDS = [
    "Id",
    "FirstName",
    "LastName",
    "Email",
    "Company",
    "Status",
    "Description",
    "LastModifiedDate",
    "Referral_ID__c",
]
OBJECTS = {
    "lead": LEAD_FIELDS,
    "contact": ["Id", "Email", "AccountId", "LastName"],
    "account": ["Id", "Name", "Industry", "NumberOfEmployees"],
    "product2": ["Id", "Name"],
}


def fields_of(sobject: str) -> tuple[str, Mapping[str, str]] | None:
    names = OBJECTS.get(sobject.lower())
    canonical = {"lead": "Lead", "contact": "Contact", "account": "Account", "product2": "Product2"}
    return None if names is None else (canonical[sobject.lower()], {n.lower(): n for n in names})


def topic_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "Name": "SFB_Lead",
        "Query": "SELECT Id, Email, Status FROM Lead",
        "ApiVersion": 63.0,
        "NotifyForFields": "Referenced",
        "NotifyForOperationCreate": True,
        "NotifyForOperationUpdate": True,
        "NotifyForOperationDelete": True,
        "NotifyForOperationUndelete": True,
        "IsActive": True,
    }
    record.update(overrides)
    return record


# ---- the documented query restrictions -------------------------------------------------------

RESTRICTED = [
    # (query, errorCode, message) — texts from "Unsupported PushTopic Queries"
    (
        "SELECT Id, Name FROM Account WHERE Id IN "
        "(SELECT AccountId FROM Contact WHERE LastName = 'CEO')",
        "INVALID_FIELD",
        "semi/anti join sub-selects are not supported",
    ),
    (
        "SELECT Id, Name FROM Account WHERE Id NOT IN (SELECT AccountId FROM Contact)",
        "INVALID_FIELD",
        "semi/anti join sub-selects are not supported",
    ),
    (
        "SELECT Id, AVG(NumberOfEmployees) FROM Account",
        "INVALID_FIELD",
        "Aggregate queries are not supported",
    ),
    (
        "SELECT Id, Industry, Count(Name) FROM Account",
        "INVALID_FIELD",
        "Aggregate queries are not supported",
    ),
    (
        "SELECT Id, AccountId FROM Contact GROUP BY AccountId",
        "INVALID_FIELD",
        "Aggregate queries are not supported",
    ),
    ("SELECT Id, Email FROM Contact LIMIT 10", "INVALID_FIELD", "'LIMIT' is not allowed"),
    ("SELECT Id, Account.Name FROM Contact", "INVALID_FIELD", "relationships are not supported"),
    (
        "SELECT Id FROM Contact WHERE Account.Name = 'Acme'",
        "INVALID_FIELD",
        "relationships are not supported",
    ),
    (
        "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
        "INVALID_FIELD",
        "relationships are not supported",
    ),
    (
        "SELECT Id, Name FROM Account ORDER BY Name",
        "INVALID_FIELD",
        "'ORDER BY' clause is not allowed",
    ),
    (
        "SELECT Id FROM Account WHERE NOT Name = 'Salesforce.com'",
        "INVALID_FIELD",
        "'NOT' is not supported",
    ),
    ("SELECT Id, Name FROM Account OFFSET 5", "INVALID_FIELD", "'OFFSET' clause is not allowed"),
    (
        "SELECT Name FROM Account",
        "INVALID_FIELD",
        "SELECT clause of a PushTopic query must include Id",
    ),
    ("UPDATE Account SET Name = 'x'", "MALFORMED_QUERY", None),
    ("SELECT Id, Name Account", "MALFORMED_QUERY", None),
    ("SELECT Id, , Name FROM Account", "MALFORMED_QUERY", None),
]


@pytest.mark.parametrize(("query", "code", "message"), RESTRICTED)
def test_restricted_queries_get_the_documented_error(
    query: str, code: str, message: str | None
) -> None:
    with pytest.raises(QueryError) as caught:
        analyse(query)
    assert caught.value.code == code
    if message is not None:
        assert caught.value.message == message


SUPPORTED = [
    (
        "SELECT Id, Name FROM Account WHERE NumberOfEmployees > 1000",
        "Account",
        ("Id", "Name"),
        ("NumberOfEmployees",),
    ),
    (
        "SELECT Id, Name FROM Account WHERE Name != 'Salesforce.com'",
        "Account",
        ("Id", "Name"),
        ("Name",),
    ),
    (
        "SELECT Id FROM Account WHERE Industry NOT IN ('Energy', 'Media')",
        "Account",
        ("Id",),
        ("Industry",),
    ),
    ("SELECT Id, Email FROM Contact;", "Contact", ("Id", "Email"), ()),
    (
        "select id, email from lead "
        "where status = 'Open' and (email like '%@x.com' or company = null)",
        "lead",
        ("id", "email"),
        ("status", "email", "company"),
    ),
    (
        "SELECT Id FROM Lead WHERE LastModifiedDate > LAST_N_DAYS:3 AND CreatedDate < TODAY",
        "Lead",
        ("Id",),
        ("LastModifiedDate", "CreatedDate"),
    ),
    (
        "SELECT Id FROM Opportunity WHERE CloseDate < 2011-06-14",
        "Opportunity",
        ("Id",),
        ("CloseDate",),
    ),
    (
        "SELECT Id FROM Account WHERE Name = 'NOT this, LIMIT 5 ORDER BY x'",
        "Account",
        ("Id",),
        ("Name",),
    ),
    ("SELECT Id, AccountId FROM Contact", "Contact", ("Id", "AccountId"), ()),
]


@pytest.mark.parametrize(("query", "sobject", "select", "where_fields"), SUPPORTED)
def test_supported_queries_are_analysed(
    query: str, sobject: str, select: tuple[str, ...], where_fields: tuple[str, ...]
) -> None:
    parts = analyse(query)
    assert (parts.sobject, parts.select, parts.where_fields) == (sobject, select, where_fields)
    assert (parts.where_text is None) == (not where_fields)


def test_where_text_is_the_clause_as_written() -> None:
    parts = analyse("SELECT Id FROM Lead WHERE Status = 'Open' AND Email LIKE '%@x.com';")
    assert parts.where_text == "Status = 'Open' AND Email LIKE '%@x.com'"


# ---- record validation -------------------------------------------------------------------

VALIDATION = [
    ({}, []),
    ({"Name": "N" * 25}, []),
    ({"Name": "N" * 26}, [("STRING_TOO_LONG", "Name")]),
    ({"Name": None}, [("REQUIRED_FIELD_MISSING", "Name")]),
    ({"Query": ""}, [("REQUIRED_FIELD_MISSING", "Query")]),
    ({"ApiVersion": None}, [("REQUIRED_FIELD_MISSING", "ApiVersion")]),
    ({"ApiVersion": 20.0}, [("FIELD_INTEGRITY_EXCEPTION", "ApiVersion")]),
    ({"ApiVersion": 99.0}, [("FIELD_INTEGRITY_EXCEPTION", "ApiVersion")]),
    (
        {"Query": "SELECT Id, Email FROM Lead WHERE Email != null " + "AND Email != 'x' " * 80},
        [("STRING_TOO_LONG", "Query")],
    ),
    ({"Query": "SELECT Id, Email FROM Lead LIMIT 1"}, [("INVALID_FIELD", "Query")]),
    ({"Query": "SELECT Id, Nope__c FROM Lead"}, [("INVALID_FIELD", "Query")]),
    ({"Query": "SELECT Id FROM Lead WHERE Nope__c = 'x'"}, [("INVALID_FIELD", "Query")]),
    ({"Query": "SELECT Id FROM Widget"}, [("INVALID_TYPE", "Query")]),
    ({"Query": "SELECT Id, Name FROM Product2"}, [("INVALID_TYPE", "Query")]),
    ({"NotifyForFields": "Some"}, [("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "NotifyForFields")]),
    (
        {"NotifyForFields": "Select", "Query": "SELECT Id FROM Lead WHERE Email != null"},
        [("FIELD_INTEGRITY_EXCEPTION", "NotifyForFields")],
    ),
    (
        {"NotifyForFields": "Where", "Query": "SELECT Id, Email FROM Lead"},
        [("FIELD_INTEGRITY_EXCEPTION", "NotifyForFields")],
    ),
    (
        {
            "NotifyForFields": "Where",
            "Query": "SELECT Id FROM Lead WHERE Id = '00Q000000000001AAA'",
        },
        [("FIELD_INTEGRITY_EXCEPTION", "NotifyForFields")],
    ),
    (
        {"NotifyForFields": "Referenced", "Query": "SELECT Id FROM Lead"},
        [("FIELD_INTEGRITY_EXCEPTION", "NotifyForFields")],
    ),
    ({"NotifyForFields": "All", "Query": "SELECT Id FROM Lead"}, []),
    ({"NotifyForFields": "Where", "Query": "SELECT Id FROM Lead WHERE Status = 'Open'"}, []),
    ({"IsActive": "yes"}, [("INVALID_TYPE_ON_FIELD_IN_RECORD", "IsActive")]),
    ({"Description": "d" * 401}, [("STRING_TOO_LONG", "Description")]),
]


@pytest.mark.parametrize(("overrides", "expected"), VALIDATION)
def test_topic_validation(overrides: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    errors = validate_topic(topic_record(**overrides), fields_of=fields_of)
    assert [(e["errorCode"], e["fields"][0]) for e in errors] == expected
    assert all(e["message"] for e in errors)


def test_topic_names_are_unique() -> None:
    errors = validate_topic(topic_record(), fields_of=fields_of, other_names=["SFB_Lead"])
    assert [e["errorCode"] for e in errors] == ["DUPLICATE_VALUE"]
    assert validate_topic(topic_record(), fields_of=fields_of, other_names=["SFB_Contact"]) == []


def test_general_soql_errors_are_reported() -> None:
    def check(query: str) -> None:
        raise QueryError("MALFORMED_QUERY", "unexpected token: 'x'")

    errors = validate_topic(topic_record(), fields_of=fields_of, check_query=check)
    assert errors == [
        {"message": "unexpected token: 'x'", "errorCode": "MALFORMED_QUERY", "fields": ["Query"]}
    ]


# ---- matching -----------------------------------------------------------------------------


def status_is(value: str):  # a stand-in WHERE evaluator for "Status = '<value>'"
    def make(query: str):
        assert query.endswith(f" WHERE Status = '{value}'")
        return lambda record: record.get("Status") == value

    return make


def topic(notify: str = "Referenced", where: bool = True, **flags: bool) -> pushtopic.Topic:
    query = "SELECT Id, Email FROM Lead" + (" WHERE Status = 'Open'" if where else "")
    return compile_topic(
        topic_record(Query=query, NotifyForFields=notify, **flags), status_is("Open")
    )


OPEN = {"Id": "00Q1", "Email": "a@x.com", "Status": "Open", "Company": "X"}
CLOSED = {**OPEN, "Status": "Closed"}

MATCHING = [
    # (topic, change type, record after, changed fields, notifies?)
    (topic(), "created", OPEN, {"Id", "Email", "Status"}, True),
    (topic(), "created", CLOSED, {"Id", "Email", "Status"}, False),
    (topic(NotifyForOperationCreate=False), "created", OPEN, {"Email"}, False),
    (topic(), "updated", OPEN, {"Email"}, True),  # SELECT field changed
    (topic(), "updated", OPEN, {"Status"}, True),  # WHERE field changed
    (topic(), "updated", OPEN, {"Company"}, False),  # unreferenced field
    (topic(), "updated", CLOSED, {"Status"}, False),  # stopped matching: no notification
    (topic(), "updated", CLOSED, {"Email"}, False),
    (topic(NotifyForOperationUpdate=False), "updated", OPEN, {"Email"}, False),
    (topic("All"), "updated", OPEN, {"Company"}, True),
    (topic("All"), "updated", CLOSED, {"Company"}, False),
    (topic("Select"), "updated", OPEN, {"Email"}, True),
    (topic("Select"), "updated", OPEN, {"Status"}, False),
    (topic("Where"), "updated", OPEN, {"Status"}, True),
    (topic("Where"), "updated", OPEN, {"Email"}, False),
    (
        topic("Referenced", where=False),
        "updated",
        CLOSED,
        {"email"},
        True,
    ),  # names are case-insensitive
    (topic(), "deleted", OPEN, set(), True),
    (topic(), "deleted", CLOSED, set(), False),
    (topic(NotifyForOperationDelete=False), "deleted", OPEN, set(), False),
    (topic(), "undeleted", OPEN, set(), True),
    (topic(NotifyForOperationUndelete=False), "undeleted", OPEN, set(), False),
]


@pytest.mark.parametrize(("the_topic", "change_type", "record", "changed", "expected"), MATCHING)
def test_notification_rules(
    the_topic: pushtopic.Topic,
    change_type: str,
    record: dict[str, Any],
    changed: set[str],
    expected: bool,
) -> None:
    assert notifies(the_topic, change_type, record, changed) is expected


NAMED = {
    **OPEN,
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Salutation": None,
    "Name": "Ada Lovelace",
}


@pytest.mark.parametrize(
    ("query", "changed", "expected"),
    [
        ("SELECT Id, Name FROM Lead", {"LastName", "Name"}, True),
        ("SELECT Id, Name FROM Lead", {"FirstName"}, True),
        ("SELECT Id, FirstName, LastName FROM Lead", {"LastName", "Name"}, False),  # "No"
        ("SELECT Id, Name, FirstName FROM Lead", {"FirstName", "Name"}, True),
        ("SELECT Id, Email FROM Lead WHERE Name != null", {"LastName", "Name"}, True),
        ("SELECT Id, Email FROM Lead", {"Email", "LastName"}, True),
    ],
)
def test_a_persons_name_is_detected_through_the_name_field(
    query: str, changed: set[str], expected: bool
) -> None:
    the_topic = compile_topic(topic_record(Query=query), lambda q: lambda r: True)
    assert notifies(the_topic, "updated", NAMED, changed) is expected


def test_a_name_in_the_select_brings_its_components() -> None:
    the_topic = compile_topic(topic_record(Query="SELECT Id, Name FROM Lead"), status_is("x"))
    assert pushtopic.sobject_payload(the_topic, "created", NAMED) == {
        "Id": "00Q1", "Name": "Ada Lovelace",
        "Salutation": None, "FirstName": "Ada", "LastName": "Lovelace",
    }  # fmt: skip


def test_payload_has_the_select_fields_and_the_event() -> None:
    at = datetime(2026, 3, 29, 16, 40, 8, 208000, tzinfo=UTC)
    message = pushtopic.topic_message(topic(), "created", OPEN, at, 13)
    assert message == {
        "channel": "/topic/SFB_Lead",
        "data": {
            "event": {"createdDate": "2026-03-29T16:40:08.208Z", "replayId": 13, "type": "created"},
            "sobject": {"Id": "00Q1", "Email": "a@x.com"},
        },
    }
    deleted = pushtopic.topic_message(topic(), "deleted", OPEN, at, 14)
    assert deleted["data"]["sobject"] == {"Id": "00Q1"}


def test_select_names_map_to_the_records_field_names() -> None:
    lower = compile_topic(topic_record(Query="select id, email from lead"), status_is("x"))
    assert pushtopic.sobject_payload(lower, "updated", OPEN) == {"Id": "00Q1", "Email": "a@x.com"}


CDC_LEAD = {
    "Id": "00Q1", "FirstName": "Ada", "LastName": "Lovelace", "Salutation": None,
    "Name": "Ada Lovelace",
    "Email": "a@x.com", "Company": "X", "Phone": None, "Street": "1 Main", "City": "Leeds",
    "State": None, "PostalCode": None, "Country": None, "IsDeleted": False,
    "LastModifiedDate": "2026-01-02T03:04:05.000+0000",
    "SystemModstamp": "2026-01-02T03:04:05.000+0000",
}  # fmt: skip
CDC = [
    # (change, changed fields, changeType, header changedFields, nulledFields, payload fields)
    ("created", set(CDC_LEAD), "CREATE", [], [],
     {"Name", "Email", "Company", "Phone", "Address", "LastModifiedDate"}),
    ("updated", {"Email", "SystemModstamp", "LastModifiedDate"}, "UPDATE",
     ["Email", "LastModifiedDate"], [], {"Email", "LastModifiedDate"}),
    ("updated", {"LastName", "Name", "City", "Phone", "LastModifiedDate"}, "UPDATE",
     ["Address.City", "LastModifiedDate", "Name.LastName", "Phone"], ["Phone"],
     {"Name", "Address", "Phone", "LastModifiedDate"}),
    ("deleted", set(), "DELETE", [], [], set()),
    ("undeleted", set(), "UNDELETE", [], [],
     {"Name", "Email", "Company", "Phone", "Address", "LastModifiedDate"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change_type", "changed", "kind", "changed_fields", "nulled", "data_fields"), CDC
)
def test_change_event_payload(
    change_type: str,
    changed: set[str],
    kind: str,
    changed_fields: list[str],
    nulled: list[str],
    data_fields: set[str],
) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    payload = pushtopic.cdc_payload(
        "Lead", change_type, CDC_LEAD, changed, user_id="005X", at=at, api_version="63.0"
    )
    header = payload.pop("ChangeEventHeader")
    assert header["changeType"] == kind
    assert header["entityName"] == "Lead"
    assert header["recordIds"] == ["00Q1"]
    assert header["changedFields"] == changed_fields
    assert header["nulledFields"] == nulled
    assert header["commitUser"] == "005X"
    assert header["commitTimestamp"] == int(at.timestamp() * 1000)
    assert header["transactionKey"] and header["sequenceNumber"] == 1
    assert set(payload) == data_fields


def test_change_events_nest_compound_fields() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    created = pushtopic.cdc_payload(
        "Lead", "created", CDC_LEAD, set(CDC_LEAD), user_id="005X", at=at, api_version="63.0"
    )
    assert created["Name"] == {"Salutation": None, "FirstName": "Ada", "LastName": "Lovelace"}
    assert created["Address"]["Street"] == "1 Main" and created["Address"]["City"] == "Leeds"
    assert created["Phone"] is None  # a new record's event carries its empty fields too
    account = {
        "Id": "001",
        "Name": "Acme",
        "BillingStreet": None,
        "BillingCity": None,
        "ShippingCity": "Oslo",
    }
    event = pushtopic.cdc_payload(
        "Account", "created", account, set(account), user_id="005X", at=at, api_version="63.0"
    )
    assert event["Name"] == "Acme" and event["BillingAddress"] is None
    assert event["ShippingAddress"] == {"City": "Oslo"}
    updated = pushtopic.cdc_payload(
        "Lead",
        "updated",
        {**CDC_LEAD, "City": "York"},
        {"City"},
        user_id="005X",
        at=at,
        api_version="63.0",
    )
    assert updated["Address"] == {"City": "York"}


def test_syntax_errors_take_the_soql_parsers_words() -> None:
    def check(query: str) -> None:
        raise QueryError("MALFORMED_QUERY", "unexpected token: 'Account'")

    record = topic_record(Query="SELECT Id, Name Account")
    (problem,) = validate_topic(record, fields_of=fields_of, check_query=check)
    assert problem["message"] == "unexpected token: 'Account'"
    # the documented PushTopic restrictions keep the guide's texts
    limited = topic_record(Query="SELECT Id, Email FROM Lead LIMIT 1")
    (problem,) = validate_topic(limited, fields_of=fields_of, check_query=check)
    assert problem["message"] == "'LIMIT' is not allowed"
