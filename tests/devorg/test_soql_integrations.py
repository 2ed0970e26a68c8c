"""The SOQL integrations send, through simple-salesforce against a real devorg process:
aggregates with and without GROUP BY, ROLLUP/CUBE, HAVING, date functions, toLabel(), FORMAT(),
TYPEOF, USING SCOPE, polymorphic Name fields and the Organization object."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

AGG = {"type": "AggregateResult"}


def _refused(sf: Any, query: str) -> dict[str, Any]:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query(query)
    content = err.value.content
    assert isinstance(content, list), content
    return dict(content[0])


@pytest.fixture
def leads(clean_devorg: DevOrg) -> Any:
    """Four leads: two from the web (one working), one by phone, one without a source."""
    sf = clean_devorg.sf()
    rows = [
        ("A", "Web", "Open - Not Contacted", 10, 1000.0),
        ("B", "Web", "Working - Contacted", 20, 3000.0),
        ("C", "Phone Inquiry", "Open - Not Contacted", 30, None),
        ("D", None, "Open - Not Contacted", None, 500.0),
    ]
    for name, source, status, employees, revenue in rows:
        sf.Lead.create({"LastName": name, "Company": "Co", "LeadSource": source, "Status": status,
                        "NumberOfEmployees": employees, "AnnualRevenue": revenue})  # fmt: skip
    return sf


def test_high_water_mark_and_aggregates_without_group_by(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    # No rows: one AggregateResult with null, as a sync's first high-water-mark query sees.
    empty = sf.query("SELECT MAX(SystemModstamp) FROM Lead")
    assert empty == {"totalSize": 1, "done": True, "records": [{"attributes": AGG, "expr0": None}]}
    for name in ("A", "B"):
        sf.Lead.create({"LastName": name, "Company": "Co", "NumberOfEmployees": 10})
    newest = sf.query("SELECT Id, SystemModstamp FROM Lead ORDER BY SystemModstamp DESC LIMIT 1")
    mark = sf.query("SELECT MAX(SystemModstamp) FROM Lead")["records"][0]["expr0"]
    assert mark == newest["records"][0]["SystemModstamp"]
    # expr<i> counts only the aggregates without an alias
    row = sf.query(
        "SELECT COUNT(Id), MIN(LastName) first_name, SUM(NumberOfEmployees), "
        "AVG(NumberOfEmployees), COUNT_DISTINCT(Company) FROM Lead"
    )["records"][0]
    assert row == {"attributes": AGG, "expr0": 2, "first_name": "A", "expr1": 20,
                   "expr2": 10.0, "expr3": 1}  # fmt: skip


def test_group_by_having_order_and_limit(leads: Any) -> None:
    sf = leads
    grouped = sf.query(
        "SELECT LeadSource, COUNT(Id) n, SUM(NumberOfEmployees) staff FROM Lead "
        "GROUP BY LeadSource ORDER BY COUNT(Id) DESC, LeadSource LIMIT 2"
    )
    assert grouped["totalSize"] == 2
    assert grouped["records"] == [
        {"attributes": AGG, "LeadSource": "Web", "n": 2, "staff": 30},
        {"attributes": AGG, "LeadSource": None, "n": 1, "staff": None},
    ]
    having = sf.query(
        "SELECT LeadSource, AVG(AnnualRevenue) FROM Lead GROUP BY LeadSource "
        "HAVING COUNT(Id) > 1 AND LeadSource != null"
    )["records"]
    assert having == [{"attributes": AGG, "LeadSource": "Web", "expr0": 2000.0}]
    # COUNT() with GROUP BY counts the groups
    assert sf.query("SELECT COUNT() FROM Lead GROUP BY Status")["totalSize"] == 2


def test_rollup_cube_and_grouping(leads: Any) -> None:
    rows = leads.query(
        "SELECT LeadSource, Status, COUNT(Id) n, GROUPING(LeadSource) gs FROM Lead "
        "WHERE LeadSource != null GROUP BY ROLLUP(LeadSource, Status)"
    )["records"]
    summary = [(r["LeadSource"], r["Status"], r["n"], r["gs"]) for r in rows]
    assert summary == [
        ("Phone Inquiry", "Open - Not Contacted", 1, 0),
        ("Phone Inquiry", None, 1, 0),  # the subtotal after its group
        ("Web", "Open - Not Contacted", 1, 0),
        ("Web", "Working - Contacted", 1, 0),
        ("Web", None, 2, 0),
        (None, None, 3, 1),  # the grand total last
    ]
    cube = leads.query(
        "SELECT Status, GROUPING(Status) g, COUNT(Id) FROM Lead GROUP BY CUBE(Status)"
    )["records"]
    assert [(r["Status"], r["g"], r["expr0"]) for r in cube] == [
        ("Open - Not Contacted", 0, 3),
        ("Working - Contacted", 0, 1),
        (None, 1, 4),
    ]


def test_parent_fields_and_date_functions_group(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    acme = sf.Account.create({"Name": "Acme"})["id"]
    for close, amount in (("2026-03-18", 100.0), ("2026-03-30", 50.5), ("2026-05-01", 10.0)):
        sf.Opportunity.create({"Name": close, "StageName": "Prospecting", "CloseDate": close,
                               "Amount": amount, "AccountId": acme})  # fmt: skip
    by_account = sf.query("SELECT Account.Name, COUNT(Id) FROM Opportunity GROUP BY Account.Name")[
        "records"
    ]
    assert by_account == [{"attributes": AGG, "Name": "Acme", "expr0": 3}]
    by_month = sf.query(
        "SELECT CALENDAR_YEAR(CloseDate) yr, CALENDAR_MONTH(CloseDate), SUM(Amount) FROM "
        "Opportunity GROUP BY CALENDAR_YEAR(CloseDate), CALENDAR_MONTH(CloseDate) "
        "ORDER BY CALENDAR_MONTH(CloseDate) DESC"
    )["records"]
    assert by_month == [
        {"attributes": AGG, "yr": 2026, "expr0": 5, "expr1": 10.0},
        {"attributes": AGG, "yr": 2026, "expr0": 3, "expr1": 150.5},
    ]
    today = sf.query(
        "SELECT DAY_ONLY(CreatedDate) day, COUNT(Id) FROM Opportunity GROUP BY "
        "DAY_ONLY(CreatedDate)"
    )["records"]
    created = sf.query("SELECT CreatedDate FROM Opportunity LIMIT 1")["records"][0]
    assert today == [{"attributes": AGG, "day": created["CreatedDate"][:10], "expr0": 3}]
    assert sf.query(
        "SELECT COUNT() FROM Opportunity WHERE CALENDAR_MONTH(CloseDate) = 3 "
        "AND DAY_ONLY(CreatedDate) = TODAY"
    )["totalSize"] == 2  # fmt: skip


def test_format_and_tolabel(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    sf.Opportunity.create(
        {"Name": "Big", "StageName": "Closed Won", "CloseDate": "2026-03-08", "Amount": 1234567.5}
    )
    row = sf.query(
        "SELECT FORMAT(Amount) amt, FORMAT(CloseDate), toLabel(StageName), "
        "FORMAT(Probability) FROM Opportunity"
    )["records"][0]
    assert (row["amt"], row["CloseDate"], row["StageName"]) == ("$1,234,567.50", "3/8/2026",
                                                                "Closed Won")  # fmt: skip
    assert row["Probability"] == "100%"
    agg = sf.query(
        "SELECT FORMAT(MIN(CloseDate)) first_close, FORMAT(SUM(Amount)) FROM Opportunity"
    )
    assert agg["records"][0] == {"attributes": AGG, "first_close": "3/8/2026",
                                 "expr0": "$1,234,567.50"}  # fmt: skip
    assert _refused(sf, "SELECT toLabel(Name) FROM Opportunity")["errorCode"] == "INVALID_FIELD"


def test_typeof_polymorphic_name_fields_and_type(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    acme = sf.Account.create({"Name": "Acme", "Industry": "Energy"})["id"]
    opp = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-09-30", "Amount": 5.0}
    )["id"]
    contact = sf.Contact.create({"LastName": "Con", "AccountId": acme, "Email": "c@acme.test"})
    sf.Task.create({"Subject": "1 on account", "WhatId": acme, "WhoId": contact["id"]})
    sf.Task.create({"Subject": "2 on deal", "WhatId": opp})
    sf.Task.create({"Subject": "3 on nothing"})
    rows = sf.query(
        "SELECT Subject, TYPEOF What WHEN Account THEN Name, Industry WHEN Opportunity THEN "
        "Amount END, Who.Name, Who.Email, Who.Type FROM Task ORDER BY Subject"
    )["records"]
    what = [r["What"] for r in rows]
    assert what[0]["attributes"]["type"] == "Account"  # TYPEOF answers with the real type
    assert (what[0]["Name"], what[0]["Industry"]) == ("Acme", "Energy")
    assert what[1]["attributes"]["type"] == "Opportunity" and what[1]["Amount"] == 5.0
    assert what[2] is None
    who = rows[0]["Who"]
    # Without TYPEOF a polymorphic lookup is the Name entity (its url names the real record).
    assert who["attributes"]["type"] == "Name"
    assert who["attributes"]["url"].endswith(f"/sobjects/Contact/{contact['id']}")
    assert (who["Name"], who["Email"], who["Type"]) == ("Con", "c@acme.test", "Contact")
    on_accounts = sf.query("SELECT Subject FROM Task WHERE What.Type = 'Account'")["records"]
    assert [r["Subject"] for r in on_accounts] == ["1 on account"]
    # The Name entity has no Industry; TYPEOF reaches it.
    assert "on entity 'Name'" in _refused(sf, "SELECT What.Industry FROM Task")["message"]
    problem = _refused(sf, "SELECT TYPEOF Account WHEN Account THEN Name END FROM Contact")
    assert problem["errorCode"] == "INVALID_FIELD" and "polymorphic" in problem["message"]


def test_using_scope(clean_devorg: DevOrg) -> None:
    mine = clean_devorg.sf("sales")
    theirs = clean_devorg.sf("integration")
    mine.Account.create({"Name": "Mine"})
    theirs.Account.create({"Name": "Theirs"})
    assert [r["Name"] for r in mine.query("SELECT Name FROM Account USING SCOPE Mine")[
        "records"]] == ["Mine"]  # fmt: skip
    assert mine.query("SELECT COUNT() FROM Account USING SCOPE Everything")["totalSize"] == 2
    counted = theirs.query("SELECT COUNT(Id) FROM Account USING SCOPE mine")["records"]
    assert counted[0]["expr0"] == 1
    assert _refused(mine, "SELECT Name FROM Account USING SCOPE team")["errorCode"] == (
        "MALFORMED_QUERY"
    )
    assert _refused(mine, "SELECT Name FROM Product2 USING SCOPE mine")["errorCode"] == (
        "MALFORMED_QUERY"  # no owner, so no "mine"
    )


def test_organization(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    assert sf.is_sandbox() is False  # simple-salesforce: SELECT IsSandbox FROM Organization LIMIT 1
    org = sf.query("SELECT Id, Name, OrganizationType, InstanceName FROM Organization")["records"]
    assert org[0]["Id"] == clean_devorg.info["org_id"]
    assert org[0]["OrganizationType"] == "Developer Edition"
    record = sf.Organization.get(clean_devorg.info["org_id"])
    assert record["IsSandbox"] is False and record["attributes"]["type"] == "Organization"
    with pytest.raises(SalesforceMalformedRequest):
        sf.Organization.create({"Name": "Another"})


@pytest.mark.parametrize(
    ("query", "code", "text"),
    [
        ("SELECT LastName, COUNT(Id) FROM Lead", "MALFORMED_QUERY",
         "Field must be grouped or aggregated: LastName"),
        ("SELECT LeadSource, COUNT(Id) FROM Lead GROUP BY LeadSource ORDER BY LastName",
         "MALFORMED_QUERY", "Ordered field must be grouped or aggregated: LastName"),
        ("SELECT CreatedDate, COUNT(Id) FROM Lead GROUP BY CreatedDate", "INVALID_FIELD",
         "field 'CreatedDate' can not be grouped in a query call"),
        ("SELECT AnnualRevenue FROM Lead GROUP BY AnnualRevenue", "INVALID_FIELD",
         "can not be grouped"),
        ("SELECT SUM(LastName) FROM Lead", "INVALID_FIELD",
         "field LastName does not support aggregate operator SUM"),
        ("SELECT MAX(CreatedDate) FROM Lead LIMIT 1", "MALFORMED_QUERY", "GROUP BY"),
        ("SELECT COUNT(Id) FROM Lead HAVING COUNT(Id) > 1", "MALFORMED_QUERY", "GROUP BY"),
        ("SELECT Name, (SELECT Id FROM Contacts) FROM Account GROUP BY Name", "MALFORMED_QUERY",
         "child relationship"),
        ("SELECT DAY_ONLY(ConvertedDate), COUNT(Id) FROM Lead GROUP BY DAY_ONLY(ConvertedDate)",
         "INVALID_FIELD", "DAY_ONLY() can not be used on field 'ConvertedDate' of type date"),
        ("SELECT LastName ln FROM Lead", "MALFORMED_QUERY", "unexpected token: 'ln'"),
    ],
)  # fmt: skip
def test_refused_aggregate_queries(clean_devorg: DevOrg, query: str, code: str, text: str) -> None:
    problem = _refused(clean_devorg.sf(), query)
    assert problem["errorCode"] == code
    assert text in problem["message"]


def test_aggregate_results_are_not_paged(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    records = [{"attributes": {"type": "Lead"}, "LastName": f"L{n:04}", "Company": f"C{n}"}
               for n in range(200)]  # fmt: skip
    sf.restful("composite/sobjects", method="POST", json={"records": records})
    sf.headers["Sforce-Query-Options"] = "batchSize=200"
    # 200 groups fit one batch of 200; 201 would need queryMore, which GROUP BY cannot use.
    assert sf.query("SELECT LastName, COUNT(Id) FROM Lead GROUP BY LastName")["totalSize"] == 200
    sf.Lead.create({"LastName": "One more", "Company": "C"})
    problem = _refused(sf, "SELECT LastName, COUNT(Id) FROM Lead GROUP BY LastName")
    assert problem["message"] == (
        "Aggregate query does not support queryMore(), use LIMIT to restrict the results to a "
        "single batch"
    )
    limited = sf.query("SELECT LastName, COUNT(Id) FROM Lead GROUP BY LastName LIMIT 10")
    assert (limited["totalSize"], limited["done"]) == (10, True)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT Name, (SELECT COUNT(Id) FROM Contacts) FROM Account",
        "SELECT Name FROM Account WHERE Id IN (SELECT COUNT(AccountId) FROM Contact)",
    ],
)
def test_no_aggregates_in_subqueries(clean_devorg: DevOrg, query: str) -> None:
    assert _refused(clean_devorg.sf(), query)["errorCode"] == "MALFORMED_QUERY"
