"""SOQL parsing and WHERE evaluation (pure; no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.devorg import ids
from bridge.devorg.soql import SoqlError, evaluate_where, parse_query

NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)  # a Wednesday

RECORD = {
    "Id": "00Q8d000015fvjzEAA",
    "LastName": "O'Brien",
    "Company": "Acme 100%",
    "Email": "Pat@Example.com",
    "Status": "Working - Contacted",
    "NumberOfEmployees": 120,
    "AnnualRevenue": 2500000.0,
    "IsConverted": False,
    "Title": None,
    "CreatedDate": "2026-03-18T09:00:00.000+0000",
    "ConvertedDate": "2026-03-10",
    "Account": {"Name": "Acme"},
}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("LastName = 'O\\'Brien'", True),
        ("Email = 'pat@example.com'", True),  # text comparison is case-insensitive
        ("Email != 'pat@example.com'", False),
        ("NumberOfEmployees > 100 AND NumberOfEmployees <= 120", True),
        ("NumberOfEmployees < 100 OR AnnualRevenue >= 2500000", True),
        ("NOT (NumberOfEmployees < 100)", True),
        (
            "(Status = 'Open - Not Contacted' OR Status = 'Working - Contacted') "
            "AND IsConverted = false",
            True,
        ),
        ("IsConverted = true", False),
        ("Title = null", True),
        ("Title != null", False),
        ("Email != null", True),
        ("Status IN ('Open - Not Contacted', 'Working - Contacted')", True),
        ("Status NOT IN ('Working - Contacted')", False),
        ("Company LIKE 'acme%'", True),
        ("Company LIKE '%100\\%'", True),
        ("Company LIKE 'Acme _00%'", True),
        ("Company LIKE 'Acme'", False),
        ("CreatedDate = TODAY", True),
        ("CreatedDate = YESTERDAY", False),
        ("CreatedDate > YESTERDAY", True),
        ("CreatedDate < TODAY", False),
        ("ConvertedDate = LAST_N_DAYS:7", False),
        ("ConvertedDate = LAST_N_DAYS:8", True),
        ("ConvertedDate = THIS_MONTH", True),
        ("ConvertedDate = LAST_WEEK", True),
        ("ConvertedDate = 2026-03-10", True),
        ("ConvertedDate > 2026-03-10", False),
        ("CreatedDate >= 2026-03-18T08:59:59Z", True),
        ("CreatedDate > 2026-03-18T10:00:00+02:00", True),
        ("CreatedDate > 2026-03-18T09:00:00.000+0000", False),
        ("Account.Name = 'ACME'", True),
        ("Title > 'a'", False),  # comparisons with null match nothing
    ],
)
def test_where(where: str, expected: bool) -> None:
    q = parse_query(f"SELECT Id FROM Lead WHERE {where}")
    assert evaluate_where(q.where, RECORD, now=NOW) is expected


def test_query_parts() -> None:
    q = parse_query(
        "select Id, Account.Name, Owner.Name from Contact where Email != null "
        "order by LastName desc nulls last, CreatedDate limit 10 offset 5"
    )
    assert q.sobject == "Contact"
    assert q.field_paths == ["Id", "Account.Name", "Owner.Name"]
    assert [(o.field.path, o.descending, o.nulls_last) for o in q.order_by] == [
        ("LastName", True, True),
        ("CreatedDate", False, False),
    ]
    assert (q.limit, q.offset) == (10, 5)
    assert parse_query("SELECT COUNT() FROM Lead").count


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SELECT FROM Lead", "MALFORMED_QUERY"),
        ("SELECT Id Lead", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE A = 1 AND B = 2 OR C = 3", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE Name = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE Name = 'bad \\q escape'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead LIMIT x", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE"),
        ("SELECT Id, COUNT() FROM Lead", "MALFORMED_QUERY"),
    ],
)
def test_malformed(text: str, code: str) -> None:
    with pytest.raises(SoqlError) as err:
        parse_query(text)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),  # the example in Salesforce's id docs
        ("00300000003T2PG", "00300000003T2PGAA0"),
        ("00Q8d000015fvjz", "00Q8d000015fvjzEAA"),
    ],
)
def test_case_safe_ids(id15: str, id18: str) -> None:
    assert ids.normalize(id15) == id18
    assert ids.normalize(id18) == id18
    assert ids.normalize(id18.lower()) == id18  # 18-character ids are case-insensitive
    assert ids.normalize("not-an-id") is None
    assert ids.normalize(id15[:14] + "!") is None


def test_made_ids_have_prefix_and_checksum() -> None:
    made = [ids.make_id("00Q", n) for n in (1, 62, 10**9 + 7919 * 5)]
    assert len(set(made)) == 3
    for rid in made:
        assert rid.startswith("00Q") and len(rid) == 18
        assert ids.normalize(rid[:15]) == rid


def test_subqueries_and_semi_joins_parse() -> None:
    q = parse_query(
        "SELECT Id, (SELECT LastName FROM Contacts WHERE Email != null LIMIT 5) FROM Account "
        "WHERE Id IN (SELECT AccountId FROM Opportunity WHERE IsWon = true)"
    )
    assert q.field_paths == ["Id"]
    assert [(s.sobject, s.limit) for s in q.subqueries] == [("Contacts", 5)]
    assert q.where.value[0].query.sobject == "Opportunity"
    with pytest.raises(SoqlError):  # subqueries nest only one level
        parse_query("SELECT Id, (SELECT Id, (SELECT Id FROM Tasks) FROM Contacts) FROM Account")


def test_aggregate_query_parts() -> None:
    q = parse_query(
        "SELECT LeadSource src, COUNT(Id) n, MAX(SystemModstamp), FORMAT(MIN(CreatedDate)) early, "
        "toLabel(Status) FROM Lead USING SCOPE Mine WHERE CALENDAR_YEAR(CreatedDate) = 2026 "
        "GROUP BY ROLLUP(LeadSource, Status) HAVING COUNT(Id) > 1 ORDER BY COUNT(Id) DESC LIMIT 5"
    )
    assert [(f.path, f.functions, f.alias) for f in q.fields] == [
        ("LeadSource", (), "src"),
        ("Status", ("TOLABEL",), None),
    ]
    assert [(a.function, a.field.path, a.alias, a.format) for a in q.aggregates] == [
        ("COUNT", "Id", "n", False),
        ("MAX", "SystemModstamp", None, False),
        ("MIN", "CreatedDate", "early", True),
    ]
    assert [type(c).__name__ for c in q.columns] == [
        "FieldRef", "Aggregate", "Aggregate", "Aggregate", "FieldRef"
    ]  # fmt: skip
    assert [g.path for g in q.group_by] == ["LeadSource", "Status"] and q.group_kind == "ROLLUP"
    assert q.having.field.key == "COUNT(id)" and q.having.value == 1
    assert q.order_by[0].field.key == "COUNT(id)" and q.order_by[0].descending
    assert q.scope == "mine" and q.where.field.functions == ("CALENDAR_YEAR",)
    assert q.is_aggregate and not parse_query("SELECT toLabel(Status) FROM Lead").is_aggregate
    assert parse_query("SELECT CALENDAR_YEAR(CreatedDate) FROM Lead").is_aggregate


def test_typeof_parts() -> None:
    q = parse_query(
        "SELECT Id, TYPEOF What WHEN Account THEN Name, Phone WHEN Opportunity THEN Amount "
        "ELSE Name END, Subject FROM Task"
    )
    (typeof,) = q.typeofs
    assert typeof.relationship == "What"
    assert [(t, [f.path for f in fs]) for t, fs in typeof.whens] == [
        ("Account", ["Name", "Phone"]),
        ("Opportunity", ["Amount"]),
    ]
    assert [f.path for f in typeof.otherwise or []] == ["Name"]
    assert q.field_paths == ["Id", "Subject"]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT MAX(CALENDAR_YEAR(CreatedDate)) FROM Lead",  # no aggregate of a function
        "SELECT Id FROM Lead WHERE COUNT(Id) > 1",  # aggregates belong in HAVING
        "SELECT Id FROM Lead WHERE FORMAT(CreatedDate) = 'x'",  # FORMAT only formats output
        "SELECT TYPEOF What ELSE Name END FROM Task",  # TYPEOF needs a WHEN
        "SELECT TYPEOF What WHEN Account THEN Name FROM Task",  # ... and an END
        "SELECT Id FROM Lead USING SCOPE",
        "SELECT LeadSource FROM Lead GROUP BY ROLLUP(LeadSource",
        "SELECT COUNT(Id) first FROM Lead",  # FIRST is a reserved word
    ],
)
def test_malformed_aggregates_and_functions(text: str) -> None:
    with pytest.raises(SoqlError) as err:
        parse_query(text)
    assert err.value.code == "MALFORMED_QUERY"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("CALENDAR_YEAR(CreatedDate) = 2026", True),
        ("CALENDAR_MONTH(CreatedDate) = 3 AND CALENDAR_QUARTER(CreatedDate) = 1", True),
        ("DAY_IN_MONTH(CreatedDate) = 18 AND DAY_IN_YEAR(CreatedDate) = 77", True),
        ("DAY_IN_WEEK(CreatedDate) = 4", True),  # 1 = Sunday: a Wednesday is 4
        ("WEEK_IN_MONTH(CreatedDate) = 3 AND WEEK_IN_YEAR(CreatedDate) = 11", True),
        ("HOUR_IN_DAY(CreatedDate) = 9", True),
        ("HOUR_IN_DAY(convertTimezone(CreatedDate)) = 9", True),  # the org's zone is UTC
        ("FISCAL_YEAR(CreatedDate) = 2026 AND FISCAL_QUARTER(ConvertedDate) = 1", True),
        ("DAY_ONLY(CreatedDate) = 2026-03-18", True),
        ("DAY_ONLY(CreatedDate) = TODAY", True),
        ("DAY_ONLY(CreatedDate) > 2026-03-18", False),
        ("CALENDAR_YEAR(Title) = 2026", False),  # null in, null out: nothing matches
        ("toLabel(Status) = 'Working - Contacted'", True),
    ],
)
def test_where_functions(where: str, expected: bool) -> None:
    q = parse_query(f"SELECT Id FROM Lead WHERE {where}")
    assert evaluate_where(q.where, RECORD, now=NOW) is expected
