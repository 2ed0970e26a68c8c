"""Strict mode of the local org (bridge/devorg/strict.py), over HTTPS against a real devorg:
validation rules, picklist dependencies, duplicate rules, field-level security, automation
after save, row locks, persistence."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.devorg.testing import DevOrg
from tests.devorg.test_streaming_e2e import TEST_CONNECT_TIMEOUT_MS, Bayeux, create_topic
from tests.services import wait_for

pytestmark = pytest.mark.e2e

CLOSED_NEEDS_REASON = {
    "object": "Lead",
    "name": "Closed_Needs_Reason",
    "formula": "AND(ISPICKVAL(Status, 'Closed - Not Converted'), ISBLANK(Description))",
    "message": "Say in Description why the lead was closed.",
    "error_field": "Description",
}
PHONE_FORMAT = {
    "object": "Lead",
    "formula": "AND(NOT(ISBLANK(Phone)), NOT(REGEX(Phone, '[+]?[0-9 ()-]{7,20}')))",
    "message": "Phone must be a phone number.",
}


class Api:
    """REST calls as one user, answering (status, body)."""

    def __init__(self, org: DevOrg, user: str) -> None:
        self.http = org.session()
        self.base = f"{org.base_url}/services/data/v{org.info['api_version']}"
        self.headers = {"Authorization": f"Bearer {org.token(user)['access_token']}"}

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = {**self.headers, **kw.pop("headers", {})}
        r = self.http.request(
            method, f"{self.base}/{path}", json=body, headers=headers, timeout=30, **kw
        )
        return r.status_code, (r.json() if r.content else None)

    def create(self, sobject: str, body: dict[str, Any], **kw: Any) -> tuple[int, Any]:
        return self.call("POST", f"sobjects/{sobject}", body, **kw)

    def records(self, *items: dict[str, Any]) -> list[dict[str, Any]]:
        status, results = self.call("POST", "composite/sobjects", {"records": list(items)})
        assert status == 200, results
        return list(results)

    def query(self, soql: str) -> tuple[int, Any]:
        return self.call("GET", "query", params={"q": soql})


@pytest.fixture
def org(clean_devorg: DevOrg) -> Iterator[DevOrg]:
    yield clean_devorg


def strict(org: DevOrg, **config: Any) -> dict[str, Any]:
    return dict(org.control("strict", config))


def test_strict_mode_is_off_until_asked_for_and_reset_turns_it_off(org: DevOrg) -> None:
    api = Api(org, "integration")
    lead = {"LastName": "Twin", "Company": "Acme", "Email": "twin@acme.test"}
    assert api.create("Lead", lead)[0] == 201
    assert api.create("Lead", lead)[0] == 201  # no duplicate rules in the relaxed org
    assert org.control("strict", method="GET")["enabled"] is False

    # {} alone is the org as Salesforce ships it: the standard duplicate rules are active
    assert strict(org)["enabled"] is True
    status, body = api.create("Lead", lead)
    assert (status, body[0]["errorCode"]) == (400, "DUPLICATES_DETECTED")

    org.control("reset")
    assert org.control("strict", method="GET")["enabled"] is False
    assert api.create("Lead", lead)[0] == 201


def test_a_bad_configuration_is_refused_with_the_key_that_is_wrong(org: DevOrg) -> None:
    http = org.session()
    cases = [
        ({"validation_rules": [{"object": "Lead", "formula": "Status = 'x'", "message": "m"}]},
         "validation_rules[0]: Error: Field Status is a picklist field"),
        ({"validation_rules": [{"object": "Nope", "formula": "TRUE", "message": "m"}]},
         "validation_rules[0]: no such object: Nope"),
        ({"validation_rules": [{"object": "Lead", "formula": "TRUE"}]},
         "validation_rules[0]: message is required"),
        ({"field_security": {"integration": {"hidden": ["Lead.LastName"]}}},
         "cannot be changed (a required or system field)"),
        ({"field_security": {"nobody": {"hidden": ["Lead.Title"]}}}, "no such user: nobody"),
        ({"automation": [{"kind": "assign_owner", "object": "Lead", "owner": "ghost"}]},
         "automation[0]: no such user: ghost"),
        ({"picklist_dependencies": [{"object": "Lead", "controlling": "Status",
                                     "dependent": "Rating", "valid": {"Nope": ["Hot"]}}]},
         "Status has no value 'Nope'"),
        ({"automation": [{"kind": "update_field", "object": "Lead", "field": "Status",
                          "value": "Gone fishing"}]},
         "automation[0].value: Status: bad value for restricted picklist field"),
        ({"duplicate_rules": {"Opportunity": "alert"}}, "only Lead, Contact and Account"),
        ({"row_locks": {"window_ms": -1}}, "row_locks.window_ms must not be negative"),
        ({"frobnicate": True}, "unknown key(s): frobnicate"),
    ]  # fmt: skip
    for body, message in cases:
        r = http.post(f"{org.base_url}/__devorg__/strict", json=body, timeout=10)
        assert r.status_code == 400, body
        assert message in r.json()["error"], (body, r.json())
    assert org.control("strict", method="GET")["enabled"] is False  # nothing half-applied


def test_validation_rules_fail_a_save_on_rest_collections_and_composite(org: DevOrg) -> None:
    strict(org, validation_rules=[CLOSED_NEEDS_REASON, PHONE_FORMAT], duplicate_rules="off")
    api = Api(org, "integration")
    closed = {"LastName": "Gone", "Company": "Acme", "Status": "Closed - Not Converted"}

    status, body = api.create("Lead", closed)
    assert status == 400
    assert body == [
        {
            "message": "Say in Description why the lead was closed.",
            "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "fields": ["Description"],
        }
    ]
    # every rule that fails is reported; a rule without an error field has no fields
    status, body = api.create("Lead", {**closed, "Phone": "call me"})
    assert [(e["errorCode"], e["fields"]) for e in body] == [
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", ["Description"]),
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", []),
    ]
    # system validation comes first: a missing required field is all the caller hears
    status, body = api.create("Lead", {"LastName": "NoCompany", "Status": closed["Status"]})
    assert [e["errorCode"] for e in body] == ["REQUIRED_FIELD_MISSING"]
    assert api.create("Lead", {**closed, "Description": "Chose a rival"})[0] == 201

    # an update is checked against the record as it will be
    status, created = api.create("Lead", {"LastName": "Open", "Company": "Acme"})
    status, body = api.call("PATCH", f"sobjects/Lead/{created['id']}", {"Status": closed["Status"]})
    assert (status, body[0]["errorCode"]) == (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION")

    results = api.records(
        {"attributes": {"type": "Lead"}, **closed},
        {"attributes": {"type": "Lead"}, "LastName": "Fine", "Company": "Acme"},
    )
    assert results[0] == {
        "success": False,
        "errors": [
            {
                "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "message": "Say in Description why the lead was closed.",
                "fields": ["Description"],
            }
        ],
    }
    assert results[1]["success"] is True

    status, body = api.call(
        "POST",
        "composite",
        {
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": f"/services/data/v{org.info['api_version']}/sobjects/Lead",
                    "referenceId": "closed",
                    "body": closed,
                }
            ],
        },
    )
    (sub,) = body["compositeResponse"]
    assert sub["httpStatusCode"] == 400
    assert sub["body"][0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"


def test_a_picklist_dependency_shows_in_describe_and_is_enforced(org: DevOrg) -> None:
    strict(
        org,
        picklist_dependencies=[
            {
                "object": "Lead",
                "controlling": "Status",
                "dependent": "Rating",
                "valid": {
                    "Open - Not Contacted": ["Hot", "Warm"],
                    "Closed - Not Converted": ["Cold"],
                },
            }
        ],
    )
    api = Api(org, "sales")
    status, describe = api.call("GET", "sobjects/Lead/describe")
    statuses = [v["value"] for f in describe["fields"] if f["name"] == "Status"
                for v in f["picklistValues"]]  # fmt: skip
    (rating,) = [f for f in describe["fields"] if f["name"] == "Rating"]
    assert rating["dependentPicklist"] is True and rating["controllerName"] == "Status"

    def valid_for(value: str) -> set[str]:
        (entry,) = [v for v in rating["picklistValues"] if v["value"] == value]
        bits = base64.b64decode(entry["validFor"])
        return {s for i, s in enumerate(statuses) if bits[i >> 3] & (0x80 >> (i & 7))}

    assert valid_for("Hot") == {"Open - Not Contacted"}
    assert valid_for("Cold") == {"Closed - Not Converted"}

    ok = {"LastName": "P", "Company": "C", "Status": "Open - Not Contacted", "Rating": "Hot"}
    assert api.create("Lead", ok)[0] == 201
    status, body = api.create("Lead", {**ok, "Rating": "Cold"})
    assert (status, body[0]["errorCode"], body[0]["fields"]) == (
        400,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        ["Rating"],
    )


def test_duplicate_rules_block_unless_the_header_allows_the_save(org: DevOrg) -> None:
    strict(org)  # the standard rules, action "alert"
    api = Api(org, "integration")
    _, lead = api.create("Lead", {"LastName": "Ann", "Company": "Acme", "Email": "ann@acme.test"})
    _, contact = api.create("Contact", {"LastName": "Bob", "Email": "bob@acme.test"})

    # a lead duplicates leads and contacts by email (any case)
    status, body = api.create("Lead", {"LastName": "Ann", "Company": "X", "Email": "ANN@acme.test"})
    assert status == 400
    (error,) = body
    assert error["errorCode"] == "DUPLICATES_DETECTED"
    assert error["message"] == "Use one of these records?"
    result = error["duplicateResult"]
    assert (result["allowSave"], result["duplicateRule"], result["duplicateRuleEntityType"]) == (
        True,
        "Standard_Lead_Duplicate_Rule",
        "Lead",
    )
    (match,) = result["matchResults"]
    assert (match["entityType"], match["size"], match["success"]) == ("Lead", 1, True)
    assert match["matchRecords"][0]["record"]["Id"] == lead["id"]
    status, body = api.create("Lead", {"LastName": "B", "Company": "X", "Email": "bob@acme.test"})
    assert [m["entityType"] for m in body[0]["duplicateResult"]["matchResults"]] == ["Contact"]
    # ...and a contact duplicates contacts and leads
    status, body = api.create("Contact", {"LastName": "Ann", "Email": "ann@acme.test"})
    assert (
        body[0]["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"]
        == (lead["id"])
    )

    # the header saves despite an alert; edits are not checked (the rules' edit action
    # only reports)
    allow = {"Sforce-Duplicate-Rule-Header": "allowSave=true; includeRecordDetails=false"}
    bob = {"LastName": "Bob", "Email": "bob@acme.test"}
    status, twin = api.create("Contact", bob, headers=allow)
    assert status == 201
    status, other = api.create("Contact", {"LastName": "Cy", "Email": "cy@acme.test"})
    assert api.call("PATCH", f"sobjects/Contact/{other['id']}", {"Email": bob["Email"]})[0] == 204

    # in a collection the record fails on its own, without the match details
    results = api.records(
        {"attributes": {"type": "Contact"}, "LastName": "Ann", "Email": "ann@acme.test"},
        {"attributes": {"type": "Contact"}, "LastName": "Dee", "Email": "dee@acme.test"},
    )
    assert results[0]["errors"] == [
        {"statusCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "fields": []}
    ]
    assert results[1]["success"] is True

    # accounts: the same name (legal suffix and case aside) and the same website host
    api.create("Account", {"Name": "Initech Inc.", "Website": "https://www.initech.test/about"})
    status, body = api.create("Account", {"Name": "INITECH", "Website": "initech.test"})
    assert body[0]["duplicateResult"]["duplicateRule"] == "Standard_Account_Duplicate_Rule"
    assert api.create("Account", {"Name": "Initech", "Website": "initech.other"})[0] == 201

    # a block rule ignores the header
    strict(org, duplicate_rules={"Lead": "block"})
    status, body = api.create(
        "Lead", {"LastName": "Ann", "Company": "X", "Email": "ann@acme.test"}, headers=allow
    )
    assert (status, body[0]["duplicateResult"]["allowSave"]) == (400, False)
    assert contact["success"] and twin["success"]


def test_field_level_security_hides_and_protects_fields_per_user(org: DevOrg) -> None:
    strict(
        org,
        field_security={
            "integration": {
                "hidden": ["Lead.AnnualRevenue", "Account.Rating"],
                "read_only": ["Lead.Rating"],
            }
        },
    )
    api, sales = Api(org, "integration"), Api(org, "sales")
    _, account = sales.create("Account", {"Name": "Hooli", "Rating": "Hot"})
    _, lead = sales.create("Lead", {"LastName": "L", "Company": "C", "AnnualRevenue": 5,
                                    "Rating": "Warm"})  # fmt: skip
    _, contact = sales.create("Contact", {"LastName": "K", "AccountId": account["id"]})

    fields = {f["name"]: f for f in api.call("GET", "sobjects/Lead/describe")[1]["fields"]}
    assert "AnnualRevenue" not in fields
    assert (fields["Rating"]["createable"], fields["Rating"]["updateable"]) == (False, False)
    sales_fields = {f["name"] for f in sales.call("GET", "sobjects/Lead/describe")[1]["fields"]}
    assert "AnnualRevenue" in sales_fields  # the other user sees it

    for soql in (
        "SELECT Id, AnnualRevenue FROM Lead",
        "SELECT Id FROM Lead WHERE AnnualRevenue > 1",
        "SELECT Id FROM Lead ORDER BY AnnualRevenue",
        "SELECT Id, Account.Rating FROM Contact",
        "SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Rating = 'Hot'",
        "SELECT Id FROM Contact WHERE AccountId IN (SELECT Id FROM Account WHERE Rating = 'Hot')",
    ):
        status, body = api.query(soql)
        assert (status, body[0]["errorCode"]) == (400, "INVALID_FIELD"), soql
        assert "No such column" in body[0]["message"]
    assert sales.query("SELECT Id, AnnualRevenue FROM Lead")[0] == 200

    # reads leave the hidden fields out; asking for one by name is an unknown field
    status, row = api.call("GET", f"sobjects/Lead/{lead['id']}")
    assert status == 200 and "AnnualRevenue" not in row and row["Rating"] == "Warm"
    status, body = api.query("SELECT FIELDS(ALL) FROM Lead LIMIT 10")
    assert "AnnualRevenue" not in body["records"][0]
    hidden = {"fields": "AnnualRevenue"}
    status, body = api.call("GET", f"sobjects/Lead/{lead['id']}", params=hidden)
    assert (status, body[0]["errorCode"]) == (400, "INVALID_FIELD")
    status, body = api.query(f"SELECT Id, Account.Name FROM Contact WHERE Id = '{contact['id']}'")
    assert body["records"][0]["Account"]["Name"] == "Hooli"

    # writes: a hidden field does not exist, a read-only one cannot be written
    status, body = api.create("Lead", {"LastName": "N", "Company": "C", "AnnualRevenue": 1})
    assert (status, body[0]["errorCode"]) == (400, "INVALID_FIELD")
    status, body = api.call("PATCH", f"sobjects/Lead/{lead['id']}", {"Rating": "Hot"})
    assert (status, body[0]["errorCode"], body[0]["fields"]) == (
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        ["Rating"],
    )
    assert sales.call("PATCH", f"sobjects/Lead/{lead['id']}", {"Rating": "Hot"})[0] == 204


def test_automation_changes_records_after_save_and_streams_each_change(org: DevOrg) -> None:
    org.control("streaming", {"connect_timeout_ms": TEST_CONNECT_TIMEOUT_MS})
    try:
        _automation(org)
    finally:
        org.control("streaming", {"connect_timeout_ms": 110_000})


def _automation(org: DevOrg) -> None:
    described = strict(
        org,
        duplicate_rules="off",
        automation=[
            {"kind": "update_field", "object": "Lead", "field": "Rating", "value": "Hot",
             "when": "NumberOfEmployees > 1000", "on": ["create", "update"],
             "name": "Big_Is_Hot"},
            {"kind": "assign_owner", "object": "Lead", "owner": "sales",
             "when": "ISPICKVAL(LeadSource, 'Web')"},
            {"kind": "update_field", "object": "Lead", "field": "Description",
             "value": "Enriched", "when": "ISBLANK(Description)",
             "run_as": "automated_process", "delay_ms": 300},
        ],
    )  # fmt: skip
    auto_id = described["automated_process_user_id"]
    integration, sales_id = org.user("integration")["id"], org.user("sales")["id"]
    create_topic(org, "StrictLeads", "SELECT Id, OwnerId, Rating, Description FROM Lead")
    bayeux = Bayeux(org).start("/topic/StrictLeads", "/data/LeadChangeEvent")
    api = Api(org, "integration")

    _, lead = api.create(
        "Lead", {"LastName": "Big", "Company": "C", "NumberOfEmployees": 5000, "LeadSource": "Web"}
    )
    # the assignment rule and the flow ran in the save (its time, its user) ...
    status, row = api.call("GET", f"sobjects/Lead/{lead['id']}")
    assert (row["OwnerId"], row["Rating"], row["Description"]) == (sales_id, "Hot", None)
    assert (row["LastModifiedById"], row["SystemModstamp"]) == (integration, row["CreatedDate"])

    # ... each automated change is its own notification; the Automated Process user's comes
    # from a transaction of its own, a moment later
    events = bayeux.collect(lambda evs: len(evs) >= 8)
    status, row = api.call("GET", f"sobjects/Lead/{lead['id']}")
    assert (row["Description"], row["LastModifiedById"]) == ("Enriched", auto_id)
    assert row["SystemModstamp"] > row["CreatedDate"]
    topic = [e for e in events if e["channel"] == "/topic/StrictLeads"]
    assert [(e["data"]["event"]["type"], e["data"]["sobject"]["OwnerId"],
             e["data"]["sobject"].get("Rating"), e["data"]["sobject"].get("Description"))
            for e in topic] == [
        ("created", integration, None, None),
        ("updated", sales_id, None, None),
        ("updated", sales_id, "Hot", None),
        ("updated", sales_id, "Hot", "Enriched"),
    ]  # fmt: skip
    headers = [e["data"]["payload"]["ChangeEventHeader"] for e in events if "payload" in e["data"]]
    assert [(h["changeType"], h["commitUser"]) for h in headers] == [
        ("CREATE", integration),
        ("UPDATE", integration),
        ("UPDATE", integration),
        ("UPDATE", auto_id),
    ]
    assert "OwnerId" in headers[1]["changedFields"] and "Rating" in headers[2]["changedFields"]
    # the save and its automation are one transaction, at one time; the Automated Process
    # user's change is a transaction of its own
    save, later = headers[:3], headers[3]
    assert len({(h["transactionKey"], h["commitNumber"], h["commitTimestamp"]) for h in save}) == 1
    assert [h["sequenceNumber"] for h in save] == [1, 2, 3]
    assert later["transactionKey"] != save[0]["transactionKey"] and later["sequenceNumber"] == 1

    # nothing left to change: an update is one event; Sforce-Auto-Assign: FALSE skips the rule
    api.call("PATCH", f"sobjects/Lead/{lead['id']}", {"Description": "Met at a fair"})
    assert len(bayeux.collect(lambda evs: len(evs) >= 2)) == 2  # the topic's and CDC's
    _, other = api.create(
        "Lead",
        {"LastName": "Web", "Company": "C", "LeadSource": "Web", "Description": "d"},
        headers={"Sforce-Auto-Assign": "FALSE"},
    )
    assert api.call("GET", f"sobjects/Lead/{other['id']}")[1]["OwnerId"] == integration
    users = api.query("SELECT Name, UserType FROM User WHERE Id = '" + auto_id + "'")[1]
    assert users["records"][0]["Name"] == "Automated Process"
    org.control("reset")  # the org as it was: without the user strict mode added
    assert api.query("SELECT COUNT() FROM User")[1]["totalSize"] == 2


def test_two_requests_writing_children_of_one_account_at_once_collide(org: DevOrg) -> None:
    strict(org, duplicate_rules="off", row_locks={"window_ms": 1500})
    api, other = Api(org, "integration"), Api(org, "sales")
    _, account = api.create("Account", {"Name": "Parent"})
    contact = {"attributes": {"type": "Contact"}, "AccountId": account["id"]}
    first: list[Any] = []
    writer = threading.Thread(
        target=lambda: first.extend(api.records({**contact, "LastName": "First"}))
    )
    started = time.monotonic()
    writer.start()
    try:
        wait_for(
            lambda: account["id"] in org.control("strict", method="GET")["locks"],
            10,
            what="the first request to lock the account",
        )
        # another request for the same parent meanwhile: refused, per record
        second = other.records({**contact, "LastName": "Second"})
    finally:
        writer.join(30)
    assert second[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert account["id"] in second[0]["errors"][0]["message"]
    assert first[0]["success"] is True
    assert time.monotonic() - started >= 1.5  # the holder answered when its window ended
    # one request after the other never collides, and an unrelated parent is free
    assert api.records({**contact, "LastName": "Third"})[0]["success"] is True
    assert org.control("strict", method="GET")["locks"] == []
    status, rows = api.query(f"SELECT LastName FROM Contact WHERE AccountId = '{account['id']}'")
    assert sorted(r["LastName"] for r in rows["records"]) == ["First", "Third"]


def test_strict_mode_is_kept_in_the_data_dir_across_a_restart(tmp_path: Any) -> None:
    with DevOrg(tmp_path / "org") as org:
        strict(org, validation_rules=[CLOSED_NEEDS_REASON])
        assert (tmp_path / "org" / "strict.json").exists()
        org.restart()
        state = org.control("strict", method="GET")
        assert state["enabled"] is True
        assert state["validation_rules"][0]["name"] == "Closed_Needs_Reason"
        status, body = Api(org, "sales").create(
            "Lead", {"LastName": "G", "Company": "C", "Status": "Closed - Not Converted"}
        )
        assert body[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        assert org.control("strict", method="DELETE")["enabled"] is False


def test_streamed_events_leave_out_the_fields_a_subscriber_cannot_see(org: DevOrg) -> None:
    org.control("streaming", {"connect_timeout_ms": TEST_CONNECT_TIMEOUT_MS})
    try:
        create_topic(org, "FlsLeads", "SELECT Id, Email, Title FROM Lead")
        strict(org, field_security={"integration": {"hidden": ["Lead.Title"]}})
        hidden_from = Bayeux(org, "integration").start("/topic/FlsLeads", "/data/LeadChangeEvent")
        sees_all = Bayeux(org, "sales").start("/topic/FlsLeads", "/data/LeadChangeEvent")
        sales = Api(org, "sales")
        _, lead = sales.create("Lead", {"LastName": "F", "Company": "C", "Title": "CFO"})
        sales.call("PATCH", f"sobjects/Lead/{lead['id']}", {"Title": "CEO", "Email": "f@c.test"})

        def by_channel(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            for e in events:
                out.setdefault(e["channel"], []).append(e["data"])
            return out

        mine = by_channel(hidden_from.collect(lambda evs: len(evs) >= 4))
        theirs = by_channel(sees_all.collect(lambda evs: len(evs) >= 4))
        assert [d["sobject"].get("Title") for d in theirs["/topic/FlsLeads"]] == ["CFO", "CEO"]
        assert all("Title" not in d["sobject"] for d in mine["/topic/FlsLeads"])
        update = mine["/data/LeadChangeEvent"][1]["payload"]
        assert "Title" not in update and update["Email"] == "f@c.test"
        assert "Title" not in update["ChangeEventHeader"]["changedFields"]
        assert (
            "Title"
            in theirs["/data/LeadChangeEvent"][1]["payload"]["ChangeEventHeader"]["changedFields"]
        )
        # a topic cannot name a field its creator cannot see
        status, body = Api(org, "integration").create(
            "PushTopic",
            {"Name": "Blind", "Query": "SELECT Id, Title FROM Lead", "ApiVersion": 63.0},
        )
        assert (status, body[0]["errorCode"]) == (400, "INVALID_FIELD")
    finally:
        org.control("streaming", {"connect_timeout_ms": 110_000})
