"""Formulas of validation rules and automation criteria (bridge/devorg/formula.py), pure."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.devorg.formula import FormulaError, compile_formula
from bridge.devorg.schema import Schema

SCHEMA = Schema()
LEAD = SCHEMA.objects["Lead"]

CLOSED = {"Status": "Closed - Not Converted", "Description": None}


@pytest.mark.parametrize(
    ("formula", "record", "old", "expected"),
    [
        # required-if
        ("AND(ISPICKVAL(Status,'Closed - Not Converted'), ISBLANK(Description))",
         CLOSED, None, True),
        ("AND(ISPICKVAL(Status,'Closed - Not Converted'), ISBLANK(Description))",
         {**CLOSED, "Description": "lost to a rival"}, None, False),
        ("AND(ISPICKVAL(Status,'Closed - Not Converted'), ISBLANK(Description))",
         {"Status": "Open - Not Contacted"}, None, False),
        # length, comparisons and arithmetic
        ("LEN(Title) > 5", {"Title": "Director"}, None, True),
        ("LEN(Title) > 5", {"Title": "CTO"}, None, False),
        ("LEN(Title) > 5", {"Title": None}, None, False),  # a blank is length 0
        ("NumberOfEmployees >= 10 && NumberOfEmployees < 100",
         {"NumberOfEmployees": 10}, None, True),
        ("AnnualRevenue * 2 > 100", {"AnnualRevenue": 60.0}, None, True),
        ("AnnualRevenue > 100", {"AnnualRevenue": None}, None, False),  # blank is not larger
        ("Company <> 'Acme'", {"Company": "acme"}, None, True),  # text compares exactly
        ("Company = \"Acme\"", {"Company": "Acme"}, None, True),
        # REGEX matches the whole text, as Java's String.matches
        ("NOT(REGEX(Phone, '[0-9]{3}-[0-9]{4}'))", {"Phone": "555-1234"}, None, False),
        ("NOT(REGEX(Phone, '[0-9]{3}-[0-9]{4}'))", {"Phone": "call 555-1234"}, None, True),
        ("AND(NOT(ISBLANK(Email)), NOT(REGEX(Email, '.+@example\\\\.com')))",
         {"Email": "a@other.org"}, None, True),
        # OR, NOT, !, ||, IF, CASE, TEXT, BEGINS, CONTAINS, LOWER, BLANKVALUE
        ("OR(ISBLANK(Email), ISBLANK(Phone))", {"Email": "a@b.c", "Phone": None}, None, True),
        ("!ISBLANK(Email) || ISBLANK(Phone)", {"Email": None, "Phone": "1"}, None, False),
        ("IF(ISBLANK(Email), TRUE, CONTAINS(Email, 'spam'))", {"Email": "spam@x.io"}, None, True),
        ("CASE(Rating, 'Hot', 1, 'Warm', 2, 0) = 2", {"Rating": "Warm"}, None, True),
        ("TEXT(Status) = 'Working - Contacted'", {"Status": "Working - Contacted"}, None, True),
        ("BEGINS(LOWER(Company), 'acme')", {"Company": "ACME Corp"}, None, True),
        ("BLANKVALUE(Title, 'none') = 'none'", {"Title": ""}, None, True),
        ("IsUnreadByOwner", {"IsUnreadByOwner": True}, None, True),
        # ISNEW, ISCHANGED and PRIORVALUE look at the stored record
        ("ISNEW()", {"Status": "x"}, None, True),
        ("ISCHANGED(Email)", {"Email": "b@x.io"}, {"Email": "a@x.io"}, True),
        ("ISCHANGED(Email)", {"Email": "a@x.io"}, {"Email": "a@x.io"}, False),
        ("AND(ISCHANGED(Status), ISPICKVAL(PRIORVALUE(Status), 'Closed - Converted'))",
         {"Status": "Open - Not Contacted"}, {"Status": "Closed - Converted"}, True),
    ],
)  # fmt: skip
def test_formulas_evaluate_as_salesforce_does(
    formula: str, record: dict[str, Any], old: dict[str, Any] | None, expected: bool
) -> None:
    assert compile_formula(formula, LEAD, SCHEMA).evaluate(record, old) is expected


def test_parent_fields_are_read_through_the_resolver() -> None:
    contact = SCHEMA.objects["Contact"]
    f = compile_formula("ISPICKVAL(Account.Rating, 'Hot')", contact, SCHEMA)
    parents = {("003A", "Account.Rating"): "Hot"}
    assert f.evaluate({"Id": "003A"}, None, lambda rec, path: parents.get((rec["Id"], path)))
    assert not f.evaluate({"Id": "003B"}, None, lambda rec, path: parents.get((rec["Id"], path)))


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("Status = 'Open'", "Field Status is a picklist field. Picklist fields are only supported "
         "in certain functions."),
        ("LEN(Rating) > 1", "Field Rating is a picklist field"),
        ("ISBLANK(Nope__c)", "Field Nope__c does not exist. Check spelling."),
        ("ISBLANK(Owner.Nope)", "Field Nope does not exist"),
        ("FROB(Email)", "Unknown function FROB"),
        ("NOT(Email, Phone)", "Incorrect number of parameters for function 'NOT()'"),
        ("AND(ISBLANK(Email)", "Syntax error"),
        ("ISBLANK(Email))", "Syntax error. Extra ')'"),
        ("Email & 'x'", "Formula result is data type (Text), incompatible with expected data "
         "type (true/false)."),
        ("ISPICKVAL(Email, 'x')", "Field Email may not be used in this type of formula"),
        ("", "Formula is empty"),
    ],
)  # fmt: skip
def test_formulas_salesforce_refuses_are_refused_with_its_message(
    formula: str, message: str
) -> None:
    with pytest.raises(FormulaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_formula(formula, LEAD, SCHEMA)
