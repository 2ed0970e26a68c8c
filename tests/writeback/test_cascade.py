"""The connect-or-create cascade for a sale's Account and Contacts: every branch, in a table."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.writeback import cascade


def acct(id_: str, name: str, phone: str | None = None, city: str | None = None) -> dict[str, Any]:
    return {"Id": id_, "Name": name, "Phone": phone, "BillingCity": city}


def person(id_: str, last: str, phone: str | None = None) -> dict[str, Any]:
    return {"Id": id_, "LastName": last, "Phone": phone}


SALE = {"business_name": "Acme Plumbing", "phone": "(415) 555-0100", "city": "Oakland"}

# (what the org holds, expected action, connected id, the steps' "by" in order, reason says)
ACCOUNT_CASES: list[tuple[str, list[dict[str, Any]], str, str | None, list[str], str]] = [
    ("phone, then one by name",
     [acct("001A", "ACME Plumbing, Inc.", "+1 415 555 0100"),
      acct("001B", "Other", "415.555.0100")],
     "connect", "001A", ["phone", "name"], "one account by name"),
    ("phone, several by name, one in the city",
     [acct("001A", "Acme Plumbing", "4155550100", "Oakland"),
      acct("001B", "Acme Plumbing", "415-555-0100", "Berkeley")],
     "connect", "001A", ["phone", "name", "city"], "one account by city"),
    ("phone, several by name, several in the city",
     [acct("001A", "Acme Plumbing", "4155550100", "Oakland"),
      acct("001B", "acme plumbing", "4155550100", "OAKLAND")],
     "create", None, ["phone", "name", "city"], "2 accounts named so with this phone, several"),
    ("phone, several by name, none in the city",
     [acct("001A", "Acme Plumbing", "4155550100", "Berkeley"),
      acct("001B", "Acme Plumbing", "4155550100", "Fremont")],
     "create", None, ["phone", "name", "city"], "none of them in this city"),
    ("phone, no name among them: create (even if the name exists without the phone)",
     [acct("001A", "Bobs Pipes", "4155550100"), acct("001B", "Acme Plumbing", "2125550199")],
     "create", None, ["phone", "name"], "no account named so with this phone"),
    ("no phone, one by name",
     [acct("001A", "Acme Plumbing LLC", "2125550199"), acct("001B", "Other")],
     "connect", "001A", ["phone", "name"], "one account by name"),
    ("no phone, several by name, one in the city",
     [acct("001A", "Acme Plumbing", None, "oakland"), acct("001B", "Acme Plumbing", None, "Reno")],
     "connect", "001A", ["phone", "name", "city"], "one account by city"),
    ("no phone, several by name, several in the city",
     [acct("001A", "Acme Plumbing", None, "Oakland"),
      acct("001B", "Acme Plumbing", None, "Oakland")],
     "create", None, ["phone", "name", "city"], "(no account has this phone), several"),
    ("no phone, several by name, none in the city",
     [acct("001A", "Acme Plumbing", None, "Reno"), acct("001B", "Acme Plumbing", None, None)],
     "create", None, ["phone", "name", "city"], "none of them in this city"),
    ("no phone, no name",
     [acct("001A", "Other", "2125550199")],
     "create", None, ["phone", "name"], "no account named so (no account has this phone)"),
    ("an empty org", [], "create", None, ["phone", "name"], "no account named so"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("accounts", "action", "record_id", "steps", "reason"),
    [case[1:] for case in ACCOUNT_CASES],
    ids=[case[0] for case in ACCOUNT_CASES],
)
def test_account_cascade(
    accounts: list[dict[str, Any]], action: str, record_id: str | None, steps: list[str],
    reason: str,
) -> None:  # fmt: skip
    out = cascade.account(**SALE, candidates=accounts)
    assert (out.action, out.record_id) == (action, record_id)
    assert [s.by for s in out.steps] == steps
    assert reason in out.reason


CONTACT_CASES: list[tuple[str, list[dict[str, Any]], str, str | None, list[str]]] = [
    ("phone, then one by last name",
     [person("003A", "Doe", "+1 (415) 555-0100"), person("003B", "Doe", "2125550199")],
     "connect", "003A", ["phone", "last_name"]),
    ("phone, several by last name",
     [person("003A", "Doe", "4155550100"), person("003B", "DOE", "415 555 0100")],
     "create", None, ["phone", "last_name"]),
    ("phone, none by last name",
     [person("003A", "Stone", "4155550100"), person("003B", "Doe", "2125550199")],
     "create", None, ["phone", "last_name"]),
    ("no phone, one by last name",
     [person("003A", "Doe", "2125550199"), person("003B", "Stone")],
     "connect", "003A", ["phone", "last_name"]),
    ("no phone, several by last name",
     [person("003A", "Doe"), person("003B", "Doe")], "create", None, ["phone", "last_name"]),
    ("no phone, none by last name",
     [person("003A", "Stone")], "create", None, ["phone", "last_name"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("contacts", "action", "record_id", "steps"),
    [case[1:] for case in CONTACT_CASES],
    ids=[case[0] for case in CONTACT_CASES],
)
def test_contact_cascade(
    contacts: list[dict[str, Any]], action: str, record_id: str | None, steps: list[str]
) -> None:
    out = cascade.contact(last_name="Doe", phone="415-555-0100", candidates=contacts)
    assert (out.action, out.record_id) == (action, record_id)
    assert [s.by for s in out.steps] == steps


def test_the_steps_keep_the_candidates_they_saw() -> None:
    accounts = [
        acct("001A", "Acme Plumbing", "4155550100", "Oakland"),
        acct("001B", "Acme Plumbing", "4155550100", "Berkeley"),
        acct("001C", "Other", "4155550100"),
    ]
    out = cascade.account(**SALE, candidates=accounts).as_dict()
    assert out["steps"] == [
        {"by": "phone", "value": "(415) 555-0100", "matched": ["001A", "001B", "001C"]},
        {"by": "name", "value": "Acme Plumbing", "matched": ["001A", "001B"]},
        {"by": "city", "value": "Oakland", "matched": ["001A"]},
    ]
    assert out["action"] == "connect"


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("(415) 555-0100", "US", "+14155550100"),
        ("+1 415 555 0100", "US", "+14155550100"),
        ("415.555.0100", "US", "+14155550100"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 20 7946 0018", "US", "+442079460018"),  # an international number keeps its country
        ("ext. unknown", "US", None),
        ("", "US", None),
        (None, "US", None),
    ],
)
def test_phones_compare_as_numbers(value: str | None, region: str, expected: str | None) -> None:
    assert cascade.phone_number(value, region) == expected


def test_the_default_region_decides_a_national_number() -> None:
    us = cascade.account(
        business_name="Acme", phone="020 7946 0018", city=None,
        candidates=[acct("001A", "Acme", "+44 20 7946 0018")],
    )  # fmt: skip
    gb = cascade.account(
        business_name="Acme", phone="020 7946 0018", city=None, region="GB",
        candidates=[acct("001A", "Acme", "+44 20 7946 0018")],
    )  # fmt: skip
    assert [s.matched for s in us.steps][0] == ()
    assert [s.matched for s in gb.steps][0] == ("001A",)
