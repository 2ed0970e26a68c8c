"""REST conformance: the unmodified simple-salesforce client against a real devorg process."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from bridge.devorg import ids
from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e


def _errors(exc: Any) -> list[dict[str, Any]]:
    assert isinstance(exc.content, list), exc.content
    return exc.content


def test_crud_and_system_fields(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("sales")
    user_id = clean_devorg.user("sales")["id"]
    created = sf.Lead.create({"FirstName": "Ada", "LastName": "Lovelace", "Company": "Engines"})
    assert created["success"] is True and created["errors"] == []
    lead_id = created["id"]
    assert lead_id.startswith("00Q") and ids.normalize(lead_id[:15]) == lead_id

    lead = sf.Lead.get(lead_id)
    assert lead["attributes"] == {
        "type": "Lead",
        "url": f"/services/data/v63.0/sobjects/Lead/{lead_id}",
    }
    assert lead["Name"] == "Ada Lovelace"
    assert lead["Status"] == "Open - Not Contacted"  # the picklist default
    assert lead["OwnerId"] == lead["CreatedById"] == lead["LastModifiedById"] == user_id
    assert lead["IsDeleted"] is False and lead["IsConverted"] is False
    assert lead["CreatedDate"].endswith("+0000") and lead["SystemModstamp"] == lead["CreatedDate"]
    assert lead["Title"] is None  # every field is present, unset ones as null

    assert sf.Lead.update(lead_id, {"Title": "Analyst", "Email": ""}) == 204
    again = sf.Lead.get(lead_id)
    assert again["Title"] == "Analyst" and again["Email"] is None
    assert again["SystemModstamp"] >= lead["SystemModstamp"]

    by_15 = sf.Lead.get(lead_id[:15])  # 15-character ids work too
    assert by_15["Id"] == lead_id

    partial = sf.Lead.get(lead_id, params={"fields": "Id,Company"})
    assert set(partial) == {"attributes", "Id", "Company"}

    assert sf.Lead.delete(lead_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Lead.get(lead_id)
    assert _errors(gone.value)[0]["errorCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.update(lead_id, {"Title": "x"})


@pytest.mark.parametrize(
    ("sobject", "body", "code", "fields"),
    [
        ("Lead", {"LastName": "X"}, "REQUIRED_FIELD_MISSING", ["Company"]),
        ("Contact", {"FirstName": "X"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
        ("Account", {"Phone": "1"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ("Opportunity", {"Amount": 5}, "REQUIRED_FIELD_MISSING",
         ["Name", "StageName", "CloseDate"]),
        ("Lead", {"LastName": "X", "Company": "Y", "Nope__c": 1}, "INVALID_FIELD", []),
        ("Lead", {"LastName": "X", "Company": "Y", "IsConverted": True},
         "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsConverted"]),
        ("Lead", {"LastName": "X" * 81, "Company": "Y"}, "STRING_TOO_LONG", ["LastName"]),
        ("Lead", {"LastName": "X", "Company": "Y", "Status": "Hot"},
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status"]),
        ("Opportunity", {"Name": "O", "StageName": "Won!", "CloseDate": "2026-01-01"},
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["StageName"]),
        ("Lead", {"LastName": "X", "Company": "Y", "Email": "not-an-email"},
         "INVALID_EMAIL_ADDRESS", ["Email"]),
        ("Contact", {"LastName": "X", "AccountId": "garbage"}, "MALFORMED_ID", ["AccountId"]),
        ("Contact", {"LastName": "X", "AccountId": "0018d000000000AAAA"},
         "INVALID_CROSS_REFERENCE_KEY", ["AccountId"]),
        ("Lead", {"LastName": "X", "Company": "Y", "NumberOfEmployees": "many"},
         "JSON_PARSER_ERROR", []),
    ],
)  # fmt: skip
def test_validation_errors(
    clean_devorg: DevOrg, sobject: str, body: dict[str, Any], code: str, fields: list[str]
) -> None:
    sf = clean_devorg.sf()
    with pytest.raises(SalesforceMalformedRequest) as err:
        getattr(sf, sobject).create(body)
    first = _errors(err.value)[0]
    assert first["errorCode"] == code
    assert first["message"]
    if fields:
        assert first["fields"] == fields
    assert clean_devorg.control("stats", method="GET")["records"][sobject] == 0


def test_unknown_record_and_object(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Lead.get("00Q8d0000000001AAA")
    assert _errors(err.value)[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Widget__c.describe()
    with pytest.raises(SalesforceMalformedRequest) as bad_type:
        sf.query("SELECT Id FROM Widget__c")
    assert _errors(bad_type.value)[0]["errorCode"] == "INVALID_TYPE"


def test_bad_token_is_invalid_session(clean_devorg: DevOrg) -> None:
    from simple_salesforce import Salesforce

    sf = Salesforce(
        instance_url=clean_devorg.base_url,
        session_id="00Dbogus!token",
        session=clean_devorg.session(),
    )
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.query("SELECT Id FROM Lead")
    assert err.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_describe(devorg: DevOrg) -> None:
    sf = devorg.sf()
    names = {o["name"]: o for o in sf.describe()["sobjects"]}
    for name, prefix in [
        ("Lead", "00Q"), ("Contact", "003"), ("Account", "001"), ("Opportunity", "006"),
        ("OpportunityLineItem", "00k"), ("OpportunityContactRole", "00K"), ("Product2", "01t"),
        ("Task", "00T"), ("Event", "00U"), ("User", "005"), ("PushTopic", "0IF"),
    ]:  # fmt: skip
        assert names[name]["keyPrefix"] == prefix
    lead = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert lead["LastName"]["type"] == "string" and lead["LastName"]["length"] == 80
    assert lead["LastName"]["nillable"] is False and lead["LastName"]["createable"] is True
    assert lead["Email"]["type"] == "email"
    status = lead["Status"]
    # A real org describes Lead Status as unrestricted (recorded: tests/devorg/recorded), though
    # it refuses unknown values (test_validation_errors).
    assert status["restrictedPicklist"] is False and status["defaultedOnCreate"] is True
    assert status["defaultValue"] == "Open - Not Contacted"
    assert [v["value"] for v in status["picklistValues"] if v["defaultValue"]] == [
        "Open - Not Contacted"
    ]
    assert lead["IsConverted"]["createable"] is False
    assert lead["ConvertedAccountId"]["referenceTo"] == ["Account"]
    assert lead["ConvertedAccountId"]["relationshipName"] == "ConvertedAccount"
    assert lead["OwnerId"]["referenceTo"] == ["Group", "User"]
    opp = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    stages = [v["value"] for v in opp["StageName"]["picklistValues"]]
    assert stages[0] == "Prospecting" and "Closed Won" in stages
    task = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert task["WhoId"]["referenceTo"] == ["Contact", "Lead"]
    account = sf.Account.describe()
    children = {
        (c["childSObject"], c["field"]): c["relationshipName"]
        for c in account["childRelationships"]
    }
    assert children[("Contact", "AccountId")] == "Contacts"


def test_query_language(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    account = sf.Account.create({"Name": "Acme"})["id"]
    rows = [
        ("Ann", "O'Neil", 10, "ann@acme.com"),
        ("Bob", "Baker", 20, None),
        ("Cid", "Cole", None, "cid@other.org"),
    ]
    for first, last, count, email in rows:
        body: dict[str, Any] = {"FirstName": first, "LastName": last, "AccountId": account}
        if email:
            body["Email"] = email
        sf.Contact.create(body)
        sf.Lead.create({"LastName": last, "Company": "Acme", "NumberOfEmployees": count})

    def names(soql: str) -> list[str]:
        return [r["LastName"] for r in sf.query(soql)["records"]]

    assert names("SELECT LastName FROM Lead ORDER BY LastName") == ["Baker", "Cole", "O'Neil"]
    assert names("SELECT LastName FROM Lead ORDER BY NumberOfEmployees DESC NULLS LAST") == [
        "Baker", "O'Neil", "Cole",
    ]  # fmt: skip
    assert names("SELECT LastName FROM Lead ORDER BY NumberOfEmployees NULLS FIRST") == [
        "Cole", "O'Neil", "Baker",
    ]  # fmt: skip
    assert names("SELECT LastName FROM Lead WHERE LastName = 'O\\'Neil'") == ["O'Neil"]
    assert names(
        "SELECT LastName FROM Lead WHERE (NumberOfEmployees > 15 OR NumberOfEmployees = null) "
        "AND NOT LastName LIKE 'c%' ORDER BY LastName"
    ) == ["Baker"]
    assert names("SELECT LastName FROM Contact WHERE Email IN ('ann@acme.com', 'x@y.z')") == [
        "O'Neil"
    ]
    assert names(
        "SELECT LastName FROM Contact WHERE Email NOT IN ('ann@acme.com') AND Email != null"
    ) == ["Cole"]
    today = "SELECT LastName FROM Lead WHERE CreatedDate = TODAY ORDER BY LastName"
    assert names(today + " LIMIT 2 OFFSET 1") == [
        "Cole", "O'Neil",
    ]  # fmt: skip
    assert names("SELECT LastName FROM Lead WHERE CreatedDate < LAST_N_DAYS:3") == []
    assert names("SELECT LastName FROM Lead WHERE CreatedDate > 2020-01-01T00:00:00Z LIMIT 1")
    assert sf.query("SELECT COUNT() FROM Contact WHERE Account.Name = 'acme'")["totalSize"] == 3

    joined = sf.query(
        "SELECT Id, Name, Account.Name, Account.Owner.Name FROM Contact WHERE FirstName = 'Ann'"
    )["records"][0]
    assert joined["Name"] == "Ann O'Neil"
    assert joined["Account"]["Name"] == "Acme"
    assert joined["Account"]["Owner"]["Name"] == "Sally Sales"
    assert joined["Account"]["attributes"]["type"] == "Account"

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id, Bogus__c FROM Lead")
    assert _errors(err.value)[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Bogus__c' on entity 'Lead'" in _errors(err.value)[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Lead WHERE Name = 'a' AND Company = 'b' OR Title = 'c'")
    assert _errors(err.value)[0]["errorCode"] == "MALFORMED_QUERY"
    for bad in ("CreatedDate > '2020-01-01'", "CreatedDate > 2020-01-01",
                "ConvertedDate = 2020-01-01T00:00:00Z"):  # fmt: skip
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.query(f"SELECT Id FROM Lead WHERE {bad}")
        assert _errors(err.value)[0]["errorCode"] == "INVALID_FIELD"
        assert "value of filter criterion" in _errors(err.value)[0]["message"]


def test_query_all_sees_deleted_records(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    keep = sf.Account.create({"Name": "Keep"})["id"]
    drop = sf.Account.create({"Name": "Drop"})["id"]
    sf.Account.delete(drop)
    live = sf.query("SELECT Id FROM Account")["records"]
    assert [r["Id"] for r in live] == [keep]
    everything = sf.query("SELECT Id, IsDeleted FROM Account ORDER BY Name", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in everything["records"]] == [
        (drop, True),
        (keep, False),
    ]


def test_pagination_with_query_locator(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    for start in range(0, 450, 200):
        records = [
            {"attributes": {"type": "Account"}, "Name": f"Account {n:03d}"}
            for n in range(start, min(start + 200, 450))
        ]
        results = sf.restful("composite/sobjects", method="POST", json={"records": records})
        assert all(r["success"] for r in results)
    first = sf.query(
        "SELECT Id, Name FROM Account ORDER BY Name",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert first["totalSize"] == 450 and first["done"] is False
    assert len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v63.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    everything = sf.query_all("SELECT Id, Name FROM Account ORDER BY Name")
    assert everything["totalSize"] == 450 and len(everything["records"]) == 450
    names = [r["Name"] for r in everything["records"]]
    assert names == sorted(names) and names[0] == "Account 000"
    # default batch is 2000, so this one came in one page; walk a small-batch cursor by hand
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True,
                           headers={"Sforce-Query-Options": "batchSize=200"})  # fmt: skip
    assert [r["Name"] for r in second["records"]][0] == "Account 200"
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert third["done"] is True and len(third["records"]) == 50
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query_more("01gNOPE-200")
    assert _errors(err.value)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_collections_all_or_none(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "Good"},
        {"attributes": {"type": "Contact"}, "FirstName": "No last name"},
    ]
    rolled = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert rolled[0]["success"] is False
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert rolled[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0

    partial = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": False, "records": records}
    )
    assert partial[0]["success"] is True and partial[1]["success"] is False
    good = partial[0]["id"]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Contact"}, "Id": good, "Title": "CEO"}]},
    )
    assert updated == [{"id": good, "success": True, "errors": []}]
    assert sf.Contact.get(good)["Title"] == "CEO"
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{good},bad!id"})
    assert deleted[0] == {"id": good, "success": True, "errors": []}
    assert deleted[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    too_many = [{"attributes": {"type": "Account"}, "Name": str(n)} for n in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful("composite/sobjects", method="POST", json={"records": too_many})
    assert _errors(err.value)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_composite_takes_five_collection_or_query_subrequests_as_one_call(
    clean_devorg: DevOrg,
) -> None:
    sf = clean_devorg.sf()
    v = "/services/data/v63.0"

    def calls() -> int:
        stats = clean_devorg.control("stats", method="GET")
        return int(stats["api_calls"]["total"])

    before = calls()
    answers = sf.restful("composite", method="POST", json={"allOrNone": False, "compositeRequest": [
        {"method": "POST", "url": f"{v}/composite/sobjects", "referenceId": "leads",
         "body": {"allOrNone": False, "records": [
             {"attributes": {"type": "Lead"}, "LastName": "One", "Company": "C"},
             {"attributes": {"type": "Lead"}, "Company": "no last name"}]}},
        {"method": "PATCH", "url": f"{v}/composite/sobjects/Lead/Referral_ID__c",
         "referenceId": "upserts", "body": {"allOrNone": False, "records": [
             {"attributes": {"type": "Lead"}, "Referral_ID__c": "ref-1", "LastName": "Two",
              "Company": "C"}]}},
        {"method": "GET", "url": f"{v}/query?q=SELECT+Id+FROM+Lead", "referenceId": "q"},
    ]})["compositeResponse"]  # fmt: skip
    assert calls() - before == 1  # the composite is one call, whatever it holds
    created, upserted, query = answers
    assert created["httpStatusCode"] == 200 and created["referenceId"] == "leads"
    ok, missing = created["body"]
    assert ok["success"] and ok["id"].startswith("00Q")
    assert not missing["success"] and missing["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert upserted["body"][0]["created"] is True
    assert query["body"]["totalSize"] == 2

    six = [{"method": "GET", "url": f"{v}/query?q=SELECT+Id+FROM+Lead", "referenceId": f"q{n}"}
           for n in range(6)]  # fmt: skip
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("composite", method="POST", json={"compositeRequest": six})
    assert "INVALID_BATCH_REQUEST" in str(refused.value)
    # Composite Batch still takes no collection subrequests
    batch = sf.restful(
        "composite/batch",
        method="POST",
        json={
            "batchRequests": [
                {"method": "POST", "url": "v63.0/composite/sobjects", "richInput": {"records": []}}
            ]
        },
    )
    assert batch["results"][0]["statusCode"] == 400  # fmt: skip


def test_composite_references_and_rollback(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    v = "/services/data/v63.0"
    ok = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {"method": "POST", "url": f"{v}/sobjects/Account", "referenceId": "acct",
                 "body": {"Name": "Composite Co"}},
                {"method": "POST", "url": f"{v}/sobjects/Contact", "referenceId": "contact",
                 "body": {"LastName": "Ref", "AccountId": "@{acct.id}"}},
                {"method": "GET", "url": f"{v}/sobjects/Contact/@{{contact.id}}?fields=AccountId",
                 "referenceId": "read"},
            ],
        },
    )["compositeResponse"]  # fmt: skip
    assert [r["httpStatusCode"] for r in ok] == [201, 201, 200]
    assert ok[2]["body"]["AccountId"] == ok[0]["body"]["id"]
    assert ok[0]["httpHeaders"]["Location"].endswith(ok[0]["body"]["id"])

    failed = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {"method": "POST", "url": f"{v}/sobjects/Account", "referenceId": "a2",
                 "body": {"Name": "Rolled back"}},
                {"method": "POST", "url": f"{v}/sobjects/Contact", "referenceId": "c2",
                 "body": {"AccountId": "@{a2.id}"}},
            ],
        },
    )["compositeResponse"]  # fmt: skip
    assert failed[0]["httpStatusCode"] == 400
    assert failed[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert failed[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.query("SELECT COUNT() FROM Account WHERE Name = 'Rolled back'")["totalSize"] == 0


def test_limits_and_usage_header(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 15000
    assert limits["DailyApiRequests"]["Remaining"] < 15000
    sf.query("SELECT Id FROM Lead")
    assert sf.api_usage["api-usage"].total == 15000
    assert sf.api_usage["api-usage"].used == 15000 - limits["DailyApiRequests"]["Remaining"] + 1


def test_lead_conversion(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    lead_id = sf.Lead.create(
        {"FirstName": "Grace", "LastName": "Hopper", "Company": "Navy", "Email": "g@navy.mil"}
    )["id"]
    result = clean_devorg.control("convert-lead", {"lead_id": lead_id})
    lead = sf.Lead.get(lead_id)
    assert lead["IsConverted"] is True and lead["Status"] == "Closed - Converted"
    assert lead["ConvertedContactId"] == result["contactId"]
    contact = sf.Contact.get(result["contactId"])
    assert contact["Email"] == "g@navy.mil" and contact["AccountId"] == result["accountId"]
    assert sf.Account.get(result["accountId"])["Name"] == "Navy"
    opp = sf.Opportunity.get(result["opportunityId"])
    assert opp["AccountId"] == result["accountId"] and opp["StageName"] == "Prospecting"
    roles = sf.query(
        "SELECT ContactId, IsPrimary FROM OpportunityContactRole "
        f"WHERE OpportunityId = '{opp['Id']}'"
    )["records"]
    assert [(r["ContactId"], r["IsPrimary"]) for r in roles] == [(contact["Id"], True)]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.update(lead_id, {"Title": "Admiral"})
    assert _errors(err.value)[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_opportunity_stage_derivations(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    opp = sf.Opportunity.create(
        {"Name": "Big", "StageName": "Prospecting", "CloseDate": "2026-06-30", "Amount": 1000}
    )["id"]
    first = sf.Opportunity.get(opp)
    assert (first["Probability"], first["IsClosed"], first["IsWon"]) == (10.0, False, False)
    assert first["ExpectedRevenue"] == 100.0 and first["FiscalQuarter"] == 2
    sf.Opportunity.update(opp, {"StageName": "Closed Won"})
    won = sf.Opportunity.get(opp)
    assert (won["Probability"], won["IsClosed"], won["IsWon"]) == (100.0, True, True)
    assert won["ForecastCategoryName"] == "Closed"


def test_updated_and_deleted_windows(clean_devorg: DevOrg) -> None:
    from datetime import UTC, datetime, timedelta

    sf = clean_devorg.sf()
    kept = sf.Account.create({"Name": "Kept"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    start = datetime.now(UTC) - timedelta(minutes=5)
    end = datetime.now(UTC) + timedelta(minutes=5)
    assert sf.Account.updated(start, end)["ids"] == [kept]
    deleted = sf.Account.deleted(start, end)["deletedRecords"]
    assert [d["id"] for d in deleted] == [gone]


def test_child_subqueries_and_semi_joins(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    acme = sf.Account.create({"Name": "Acme"})["id"]
    empty = sf.Account.create({"Name": "Empty"})["id"]
    ann = sf.Contact.create({"LastName": "Ann", "AccountId": acme})["id"]
    sf.Contact.create({"LastName": "Bob", "AccountId": acme})
    opp = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-09-30", "AccountId": acme}
    )["id"]
    sf.OpportunityContactRole.create({"OpportunityId": opp, "ContactId": ann, "Role": "Evaluator"})

    rows = sf.query(
        "SELECT Name, (SELECT LastName FROM Contacts WHERE LastName != 'Zed' ORDER BY LastName "
        "DESC), (SELECT Name FROM Opportunities) FROM Account ORDER BY Name"
    )["records"]
    assert rows[0]["Name"] == "Acme"
    contacts = rows[0]["Contacts"]
    assert (contacts["totalSize"], contacts["done"]) == (2, True)
    assert [c["LastName"] for c in contacts["records"]] == ["Bob", "Ann"]
    assert contacts["records"][0]["attributes"]["type"] == "Contact"
    assert rows[0]["Opportunities"]["records"][0]["Name"] == "Deal"
    assert rows[1]["Contacts"] is None and rows[1]["Opportunities"] is None  # no children: null

    roles = sf.query(
        "SELECT Name, (SELECT Role, Contact.LastName FROM OpportunityContactRoles) FROM Opportunity"
    )["records"][0]["OpportunityContactRoles"]["records"]
    assert [(r["Role"], r["Contact"]["LastName"]) for r in roles] == [("Evaluator", "Ann")]

    with_deals = sf.query(
        "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Opportunity) ORDER BY Name"
    )["records"]
    assert [a["Name"] for a in with_deals] == ["Acme"]
    without = sf.query(
        "SELECT Name FROM Account WHERE Id NOT IN (SELECT AccountId FROM Opportunity)"
    )
    assert [a["Name"] for a in without["records"]] == ["Empty"]
    assert empty

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Name, (SELECT Id FROM Widgets) FROM Account")
    assert _errors(err.value)[0]["errorCode"] == "INVALID_TYPE"
    assert "Didn't understand relationship 'Widgets'" in _errors(err.value)[0]["message"]


def test_rolled_back_update_keeps_its_id(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    first = sf.Contact.create({"LastName": "First"})["id"]
    second = sf.Contact.create({"LastName": "Second"})["id"]
    result = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"allOrNone": True, "records": [
            {"attributes": {"type": "Contact"}, "Id": first, "Title": "Fine"},
            {"attributes": {"type": "Contact"}, "Id": second, "LastName": None},
        ]},
    )  # fmt: skip
    assert result[0]["id"] == first
    assert result[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert result[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.Contact.get(first)["Title"] is None
    versions = clean_devorg.session().get(f"{clean_devorg.base_url}/services/data/", timeout=5)
    assert {
        "version": "63.0",
        "url": "/services/data/v63.0",
        "label": "Spring '25",
    } in versions.json()


def test_count_field_and_fields_function(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    sf.Lead.create({"LastName": "A", "Company": "C", "Email": "a@c.com"})
    sf.Lead.create({"LastName": "B", "Company": "C"})
    counted = sf.query("SELECT COUNT(Id), COUNT(Email) withEmail FROM Lead")
    assert counted["records"] == [
        {"attributes": {"type": "AggregateResult"}, "expr0": 2, "withEmail": 1}
    ]
    standard = sf.query("SELECT FIELDS(STANDARD) FROM Lead ORDER BY LastName")["records"][0]
    assert standard["LastName"] == "A" and standard["Status"] == "Open - Not Contacted"
    assert "CreatedDate" in standard
    assert sf.query("SELECT FIELDS(ALL) FROM Lead LIMIT 200")["totalSize"] == 2
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT FIELDS(ALL) FROM Lead")
    assert _errors(err.value)[0]["errorCode"] == "MALFORMED_QUERY"
