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
