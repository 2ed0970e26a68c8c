"""Related records by the relational rules, bulkified; inputs are plain dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from bridge.receiver.relational import Trigger, record_fields, related_records
from tests.factories import RELATED_FIELDS, org_config

ORG = org_config(RELATED_FIELDS)
ACC1, ACC2, ACC3 = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"
CON1, CON2, CON3 = "003000000000001AAA", "003000000000002AAA", "003000000000003AAA"
OPP1, OPP2 = "006000000000001AAA", "006000000000002AAA"
LEAD1 = "00Q000000000001AAA"


class FakeOrg:
    """An org as dicts, counting each query the way SalesforceLookup would issue them."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict[str, Any]]] = {
            "Account": {
                ACC1: {"Id": ACC1, "Name": "Acme"},
                ACC2: {"Id": ACC2, "Name": "Beta"},
                ACC3: {"Id": ACC3, "Name": "Empty"},
            },
            "Contact": {
                CON1: {"Id": CON1, "AccountId": ACC1, "Email": "a@acme.test"},
                CON2: {"Id": CON2, "AccountId": ACC2, "Email": "b@beta.test"},
                CON3: {"Id": CON3, "AccountId": ACC2, "Email": "c@beta.test"},
            },
            "Opportunity": {
                OPP1: {"Id": OPP1, "AccountId": ACC1, "StageName": "Prospecting"},
                OPP2: {"Id": OPP2, "AccountId": ACC2, "StageName": "Closed Won"},
            },
            "Lead": {},
        }
        self.roles = [
            {"OpportunityId": OPP1, "ContactId": CON1},
            {"OpportunityId": OPP2, "ContactId": CON2},
            {"OpportunityId": OPP2, "ContactId": CON3},
        ]
        self.calls: list[tuple[str, ...]] = []

    def records(self, sobject: str, ids: Sequence[str], fields: Sequence[str]) -> list[dict]:
        self.calls.append(("records", sobject, *ids))
        out = []
        for i in ids:
            if i in self.data[sobject]:
                rec = self.data[sobject][i]
                out.append({f: rec.get(f) for f in fields})
        return out

    def children(
        self, sobject: str, parent_field: str, parent_ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict]:
        self.calls.append(("children", sobject, *parent_ids))
        return [
            {**{f: r.get(f) for f in fields}, parent_field: r[parent_field]}
            for r in self.data[sobject].values()
            if r.get(parent_field) in parent_ids
        ]

    def contact_roles(self, by: str, ids: Sequence[str]) -> list[dict]:
        self.calls.append(("roles", by, *ids))
        return [r for r in self.roles if r[by] in ids]


def full(sobject: str, **values: Any) -> dict[str, Any]:
    """A record carrying every field the rules need (as a complete PushTopic event would)."""
    rec: dict[str, Any] = dict.fromkeys(record_fields(ORG, sobject))
    rec.update(values)
    return rec


def ids(records: dict[str, Any]) -> dict[str, str | None]:
    return {k: (v or {}).get("Id") for k, v in records.items()}


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        # same object only; an unconverted lead has no relations
        (
            Trigger("Lead", full("Lead", Id=LEAD1)),
            {"Lead": LEAD1, "Contact": None, "Account": None, "Opportunity": None},
        ),
        # converted lead: 1-to-1 to what it was converted into
        (
            Trigger(
                "Lead",
                full(
                    "Lead",
                    Id=LEAD1,
                    IsConverted=True,
                    ConvertedContactId=CON1,
                    ConvertedAccountId=ACC1,
                    ConvertedOpportunityId=None,
                ),
            ),
            {"Lead": LEAD1, "Contact": CON1, "Account": ACC1, "Opportunity": None},
        ),
        # contact: its account (1-1); its only opportunity by contact role (1-many, one)
        (
            Trigger("Contact", full("Contact", Id=CON1, AccountId=ACC1)),
            {"Lead": None, "Contact": CON1, "Account": ACC1, "Opportunity": OPP1},
        ),
        # contact without account
        (
            Trigger("Contact", full("Contact", Id=CON1, AccountId=None)),
            {"Lead": None, "Contact": CON1, "Account": None, "Opportunity": OPP1},
        ),
        # account with one contact and one opportunity
        (
            Trigger("Account", full("Account", Id=ACC1)),
            {"Lead": None, "Contact": CON1, "Account": ACC1, "Opportunity": OPP1},
        ),
        # account with two contacts: none picked; one opportunity
        (
            Trigger("Account", full("Account", Id=ACC2)),
            {"Lead": None, "Contact": None, "Account": ACC2, "Opportunity": OPP2},
        ),
        # account with nothing
        (
            Trigger("Account", full("Account", Id=ACC3)),
            {"Lead": None, "Contact": None, "Account": ACC3, "Opportunity": None},
        ),
        # opportunity with one contact role
        (
            Trigger("Opportunity", full("Opportunity", Id=OPP1, AccountId=ACC1)),
            {"Lead": None, "Contact": CON1, "Account": ACC1, "Opportunity": OPP1},
        ),
        # opportunity with two contact roles: contact is null
        (
            Trigger("Opportunity", full("Opportunity", Id=OPP2, AccountId=ACC2)),
            {"Lead": None, "Contact": None, "Account": ACC2, "Opportunity": OPP2},
        ),
        # deleted record: only itself
        (
            Trigger("Contact", {"Id": CON1}, deleted=True),
            {"Lead": None, "Contact": CON1, "Account": None, "Opportunity": None},
        ),
    ],
)
def test_relational_rules(trigger: Trigger, expected: dict[str, str | None]) -> None:
    out = related_records(ORG, [trigger], FakeOrg())
    assert ids(out[0]) == expected


def test_related_records_carry_the_fields_read() -> None:
    out = related_records(
        ORG, [Trigger("Contact", full("Contact", Id=CON1, AccountId=ACC1))], FakeOrg()
    )
    assert out[0]["Account"]["Name"] == "Acme"  # type: ignore[index]
    assert out[0]["Opportunity"]["StageName"] == "Prospecting"  # type: ignore[index]


def test_leads_carrying_every_field_cost_no_query() -> None:
    fake = FakeOrg()
    triggers = [Trigger("Lead", full("Lead", Id=f"00Q0000000000{i:02d}AAA")) for i in range(50)]
    out = related_records(ORG, triggers, fake)
    assert len(out) == 50
    assert fake.calls == []


def test_a_batch_costs_one_query_per_kind_not_per_event() -> None:
    fake = FakeOrg()
    triggers = [
        Trigger("Contact", full("Contact", Id=c, AccountId=a))
        for c, a in [(CON1, ACC1), (CON2, ACC2), (CON3, ACC2)]
    ] * 40
    triggers += [Trigger("Account", full("Account", Id=a)) for a in (ACC1, ACC2, ACC3)] * 40
    related_records(ORG, triggers, fake)
    kinds = sorted((c[0], c[1]) for c in fake.calls)
    # The accounts changed in the same batch serve as the contacts' accounts: no query.
    assert kinds == [
        ("children", "Contact"),
        ("children", "Opportunity"),
        ("records", "Opportunity"),
        ("roles", "ContactId"),
    ]
    assert [c for c in fake.calls if c[0] == "roles"][0][2:] == (CON1, CON2, CON3)


def test_only_missing_fields_are_fetched_and_event_values_win() -> None:
    fake = FakeOrg()
    # The event carries Email (as it was at the event) but not AccountId.
    trigger = Trigger("Contact", {"Id": CON1, "Email": "new@acme.test"})
    out = related_records(ORG, [trigger], fake)
    assert ("records", "Contact", CON1) in fake.calls
    assert out[0]["Contact"]["Email"] == "new@acme.test"  # type: ignore[index]
    assert out[0]["Account"]["Id"] == ACC1  # type: ignore[index]


def test_account_contacts_for_trigger_and_account_contacts_matching() -> None:
    org = org_config(
        receiver={"program": "main", "contact_matching": "trigger_and_account_contacts"}
    )
    fake = FakeOrg()
    trigger = Trigger(
        "Opportunity",
        {**dict.fromkeys(record_fields(org, "Opportunity")), "Id": OPP2, "AccountId": ACC2},
    )
    (records,) = related_records(org, [trigger], fake)
    assert sorted(c["Id"] for c in records["AccountContacts"]) == [CON2, CON3]
    assert records["Contact"] is None  # two contact roles: 1-to-many gives null
    # Without that setting, no account contacts are read.
    (plain,) = related_records(
        ORG, [Trigger("Opportunity", full("Opportunity", Id=OPP2, AccountId=ACC2))], FakeOrg()
    )
    assert "AccountContacts" not in plain


def test_fuzzy_matching_fields_are_part_of_what_a_record_needs() -> None:
    assert {"FirstName", "LastName", "Email", "Company"} <= set(record_fields(ORG, "Lead"))
    no_fuzzy = org_config(receiver={"program": "main", "target_match": {"fuzzy": False}})
    assert "Email" not in record_fields(no_fuzzy, "Lead")
